"""``diffqc retention [--dry-run]``: delete the rows and blobs past their retention (diffqc.store.retention).

Meant to run daily (the chart's CronJob runs it); a run picks up where a failed one stopped. Exit codes:
0 done, 1 the database or the blob store is unavailable (what was deleted by then stays deleted),
2 invalid settings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from diffqc.settings import RetentionSettings, SettingsError, load_settings
from diffqc.store.blobs import make_blob_store
from diffqc.store.cli import _database
from diffqc.store.retention import RetentionReport, run_retention


def retention(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what a run would delete; delete nothing")] = False,
) -> None:
    """Delete frames, inspections (with their alerts) and trial scores older than DIFFQC_RETENTION_ROW_DAYS
    and blobs older than DIFFQC_RETENTION_BLOB_DAYS, keeping labelled inspections with their images and
    heatmaps; then, on the file backend, the oldest blobs while the volume is fuller than
    DIFFQC_RETENTION_DISK_HIGH_WATER (down to _LOW_WATER). Prints what went and the bytes freed."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    with _database() as engine:  # the database or the blob store unavailable: exit 1 with its message
        try:
            report = run_retention(engine, make_blob_store(settings), settings.retention, dry_run=dry_run)
        except SettingsError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    for line in describe(report, settings.retention):
        typer.echo(line)


def describe(report: RetentionReport, settings: RetentionSettings) -> list[str]:
    """The report as the command prints it."""
    verb = "would delete" if report.dry_run else "deleted"
    lines = ["dry run: nothing was deleted"] if report.dry_run else []
    if report.row_cutoff is None:
        lines.append("rows: kept (DIFFQC_RETENTION_ROW_DAYS is 0)")
    else:
        lines.append(
            f"rows older than {_when(report.row_cutoff)}: {verb} {report.inspections} inspection(s) with "
            f"{report.alerts} alert(s), {report.frames} frame(s), {report.trial_scores} trial score(s)"
        )
    age = "kept by age (DIFFQC_RETENTION_BLOB_DAYS is 0)"
    if report.blob_cutoff is not None:
        age = f"{report.blobs_by_age} put before {_when(report.blob_cutoff)}"
    lines.append(
        f"blobs: {verb} {age}, {report.blobs_by_disk} for disk space; {report.freed_bytes} bytes "
        f"({report.freed_bytes / 1e6:.1f} MB)"
    )
    if report.volume_use_before is not None and report.volume_use_after is not None:
        lines.append(
            f"blob volume: {report.volume_use_before:.1%} in use before, {report.volume_use_after:.1%} after "
            f"(high water {settings.disk_high_water:.0%}, low water {settings.disk_low_water:.0%})"
        )
    return lines


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
