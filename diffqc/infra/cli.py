"""``diffqc infra up|down|status``: the embedded local servers, on the ports the settings name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import typer
from rich.console import Console
from rich.table import Table

from diffqc.infra.errors import InfraError
from diffqc.infra.stack import LocalStack
from diffqc.infra.triton import triton_server
from diffqc.runtime.shutdown import ShutdownSignal
from diffqc.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()


def _stack(settings: Settings) -> LocalStack:
    return LocalStack(settings.data_dir)


def _ports(settings: Settings) -> tuple[int, int]:
    first_broker = settings.kafka.bootstrap_servers.split(",")[0]
    return int(first_broker.rsplit(":", 1)[1]), urlparse(settings.influx.url).port or 8086


@app.command()
def up(
    repo: Annotated[Path, typer.Option(help="Triton model repository (started if it has models)")] = Path(
        "model-repository"
    ),
) -> None:
    """Start the Kafka broker, time-series store, schema registry and Triton (if not running); wait until ready."""
    settings = get_settings()
    kafka_port, timeseries_port = _ports(settings)
    triton_repo = repo if any(p.is_dir() for p in repo.glob("*/[0-9]*")) else None
    try:
        servers = _stack(settings).up(
            kafka_port,
            timeseries_port,
            triton_repo,
            int(settings.triton.grpc_url.rsplit(":", 1)[1]),
            registry_port=urlparse(settings.registry.url).port or 8081,
        )
    except InfraError as exc:
        console.print(f"[red]infra up failed:[/red] {exc}")
        raise typer.Exit(1) from None
    for server in servers.values():
        console.print(f"{server.name}: {server.address} (pid {server.pid}, log {server.log})")
    if triton_repo is None:
        console.print(f"triton: not started ({repo} holds no model version; diffqc export stages one)")
    console.print(f"database: {settings.database.url}")


@app.command()
def down() -> None:
    """Stop the servers that `infra up` started (by PID) and wait for them to exit."""
    stopped = _stack(get_settings()).down()
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@app.command()
def status() -> None:
    """Report each server's health; exits 1 when one is down."""
    statuses = _stack(get_settings()).status()
    table = Table("server", "address", "pid", "health")
    for s in statuses:
        table.add_row(s.name, s.address, str(s.pid or "-"), f"[green]{s.detail}" if s.healthy else f"[red]{s.detail}")
    console.print(table if statuses else "no local infrastructure is running (diffqc infra up)")
    if not statuses or not all(s.healthy for s in statuses):
        raise typer.Exit(1)


triton_app = typer.Typer(no_args_is_help=True, add_completion=False)


@triton_app.command()
def serve(
    repo: Annotated[Path, typer.Option(help="Triton model repository")] = Path("model-repository"),
    http_port: Annotated[int, typer.Option(help="HTTP port (/v2/health/ready)")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port (tritonclient)")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port")] = 8002,
) -> None:
    """Run tritonserver on 127.0.0.1 in the foreground until SIGINT/SIGTERM, then stop it and its stubs."""
    settings = get_settings()
    stop = ShutdownSignal()
    try:
        server = triton_server(
            repo, http_port, grpc_port, metrics_port, settings.data_dir / "triton", log_path=None
        ).start()
    except InfraError as exc:
        console.print(f"[red]triton did not start:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"triton ready: http 127.0.0.1:{http_port}, grpc 127.0.0.1:{grpc_port} (Ctrl-C stops it)")
    try:
        stop.wait()
    finally:
        server.stop()
        console.print("triton stopped")
