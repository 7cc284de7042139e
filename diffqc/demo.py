"""``diffqc demo``: the main job on the embedded default (``make run``)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import typer
from rich.console import Console

from diffqc.infra.checks import database_roundtrip, kafka_roundtrip, timeseries_roundtrip
from diffqc.infra.errors import InfraError
from diffqc.infra.ports import free_port
from diffqc.infra.stack import KAFKA, TIMESERIES, LocalStack

console = Console()


def demo() -> None:
    """Bring the embedded infrastructure up, prove each part works, and stop it again."""
    console.print(
        "[bold]diffqc demo[/bold] — the inspection pipeline is not built yet, so this demo only "
        "brings the embedded infrastructure up, checks each server with a real round trip, and stops it."
    )
    root = Path(tempfile.mkdtemp(prefix="diffqc-demo-"))
    stack = LocalStack(root)
    failures = 0
    try:
        try:
            servers = stack.up(kafka_port=free_port(), timeseries_port=free_port())
        except InfraError as exc:
            console.print(f"[red]could not start the embedded infrastructure:[/red] {exc}")
            raise typer.Exit(1) from None
        checks = [
            ("kafka broker (tansu)", servers[KAFKA].address, lambda: kafka_roundtrip(servers[KAFKA].address)),
            ("time-series store (victoria-metrics)", servers[TIMESERIES].address,
             lambda: timeseries_roundtrip(servers[TIMESERIES].address)),
            ("metadata database (SQLite file)", str(root / "diffqc.db"),
             lambda: database_roundtrip(f"sqlite:///{root / 'diffqc.db'}")),
        ]
        for name, address, check in checks:
            try:
                seconds = check()
                console.print(f"  [green]ok[/green]   {name} at {address}: round trip in {seconds * 1000:.0f} ms")
            except Exception as exc:
                failures += 1
                console.print(f"  [red]FAIL[/red] {name} at {address}: {exc}")
    finally:
        console.print(f"stopped: {', '.join(stack.down()) or 'nothing'}")
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        raise typer.Exit(1)
