"""Build data sets in the MVTec AD layout, each with a preview contact sheet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffqc.data.preview import contact_sheet
from diffqc.data.synth import PRODUCTS, generate_product
from diffqc.data.textures import TEXTURES, build_texture_benchmark

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)

OutOpt = typer.Option(..., "--out", help="Folder to write into: one MVTec AD data set per subfolder.")
PreviewOpt = typer.Option(None, "--preview", help="Contact-sheet PNG (default: <out>/preview.png).")
SeedOpt = typer.Option(0, "--seed", help="Random seed: the same seed gives the same images.")


def _names(csv: str, known, what: str) -> list[str]:
    names = [n.strip() for n in csv.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise typer.BadParameter(f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from "
                                 f"{', '.join(known)}")
    return names


@contextmanager
def _progress() -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        def task(name: str, total: int | None) -> Callable[[int], None]:
            tid = bar.add_task(name, total=total)
            return lambda n: bar.advance(tid, n)
        yield task


@contextmanager
def _clear_errors() -> Iterator[None]:
    # Bad parameters and bad data end with one readable line, not a traceback.
    try:
        yield
    except (ValueError, ImportError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _finish(paths: list[Path], out: Path, preview: Path | None) -> None:
    sheet = contact_sheet(paths, preview or out / "preview.png")
    for p in paths:
        console.print(f"wrote {p}")
    console.print(f"preview: {sheet}")


@app.command()
def synth(
    out: Path = OutOpt,
    products: str = typer.Option(",".join(PRODUCTS), "--products", help="Comma-separated product names."),
    n_train: int = typer.Option(100, "--n-train", min=1, help="Good training images per product."),
    n_test_good: int = typer.Option(30, "--n-test-good", min=0, help="Good test images per product."),
    n_test_defect: int = typer.Option(40, "--n-test-defect", min=0,
                                      help="Defective test images per product (cycling through defect types)."),
    size: int = typer.Option(256, "--size", min=64, help="Image size in pixels (square)."),
    seed: int = SeedOpt,
    preview: Path | None = PreviewOpt,
) -> None:
    """Procedural product surfaces with defect masks."""
    names = _names(products, list(PRODUCTS), "product")
    with _clear_errors(), _progress() as task:
        paths = [generate_product(n, out, n_train, n_test_good, n_test_defect, size, seed,
                                  task(n, n_train + n_test_good + n_test_defect)) for n in names]
        _finish(paths, out, preview)


@app.command()
def textures(
    out: Path = OutOpt,
    names: str = typer.Option(",".join(TEXTURES), "--textures", help="Comma-separated photographs."),
    n_train: int = typer.Option(200, "--n-train", min=1, help="Training crops per texture."),
    n_test_good: int = typer.Option(40, "--n-test-good", min=0, help="Good test crops per texture."),
    n_test_defect: int = typer.Option(60, "--n-test-defect", min=0, help="Defective test crops per texture."),
    crop: int = typer.Option(128, "--crop", min=32, max=256, help="Crop size in pixels."),
    seed: int = SeedOpt,
    preview: Path | None = PreviewOpt,
) -> None:
    """Real texture photographs (scikit-image brick, grass, gravel) with injected defects."""
    chosen = _names(names, list(TEXTURES), "texture")
    with _clear_errors(), _progress() as task:
        paths = [build_texture_benchmark(n, out, n_train, n_test_good, n_test_defect, crop, seed,
                                         task(n, n_train + n_test_good + n_test_defect)) for n in chosen]
        _finish(paths, out, preview)


@app.command()
def elpv(
    out: Path = OutOpt,
    n_train: int | None = typer.Option(None, "--n-train", min=1,
                                       help="Good training cells (default: all not held out)."),
    test_good_fraction: float = typer.Option(0.25, "--test-good-fraction", help="Good cells held out for test."),
    seed: int = SeedOpt,
    preview: Path | None = PreviewOpt,
) -> None:
    """ELPV mono solar cells (pip install elpv-dataset); image labels only. Never commit the output."""
    from diffqc.data.elpv import build_elpv_benchmark

    with _clear_errors(), _progress() as task:
        path = build_elpv_benchmark(out, n_train, seed, test_good_fraction, progress=task("elpv", None))
        _finish([path], out, preview)
