"""``diffqc labels export``: the labelled inspections as an MVTec-layout data set (diffqc.data.label_export).

Exit codes: 0 exported (frames whose image is gone are listed on stderr), 1 the database is unavailable
or nothing could be exported, 2 invalid settings or arguments (several product types without --product).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffqc.data.label_export import ExportError, SeveralProducts, export_labels
from diffqc.data.mvtec import DatasetError
from diffqc.settings import load_settings
from diffqc.store.blobs import make_blob_store
from diffqc.store.cli import _database

labels_app = typer.Typer(no_args_is_help=True, add_completion=False)


@labels_app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="The data set folder (replaced if an earlier export made it)")],
    product: Annotated[
        str | None, typer.Option(help="Only this product type (needed when several are labelled)")
    ] = None,
    line: Annotated[str | None, typer.Option(help="Only this line")] = None,
) -> None:
    """Write test/good (confirmed good parts and false alarms), test/<defect class> (confirmed and missed
    defects) and labels.csv / labels.json; images come from the blob store (DIFFQC_BLOBS_BACKEND)."""
    with _database() as engine:
        blobs = make_blob_store(load_settings())
        try:
            report = export_labels(engine, blobs, out, product, line)
        except (SeveralProducts, DatasetError) as exc:  # DatasetError: --out holds what no export made
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        except ExportError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # --out cannot be written (the blob store's failures end in _database)
            typer.echo(f"export failed: {exc}", err=True)
            raise typer.Exit(1) from None
    for missing in report.missing:
        typer.echo(f"left out inspection {missing['inspection_id']}: {missing['problem']}", err=True)
    folders = ", ".join(f"{folder} {n}" for folder, n in sorted(report.exported.items()))
    typer.echo(f"exported {sum(report.exported.values())} labelled frames of {report.product_type} to {out}: {folders}")
