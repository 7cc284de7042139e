"""``diffqc demo --serve``: after the line has run, the dashboard on what it wrote, until Ctrl-C.

The gateway runs as one more local process, like the services, on the pipeline's database, blob
store and ingestion, bound to 127.0.0.1 on a free port. A viewer API key created in that database
(audited like every key) lets the user log in; it is printed once. SIGINT or SIGTERM ends the wait
and stops the gateway; the caller then stops the pipeline.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console

from diffqc.infra.errors import InfraError
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from diffqc.infra.services import gateway_process
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.security.api_keys import Role
from diffqc.store import api_keys, db
from diffqc.store.engine import make_engine

KEY_NAME = "demo-viewer"
ACTOR = "cli:diffqc-demo"  # the audit log's actor of the key's creation
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Dashboard:
    url: str
    viewer_key: str
    gateway: ServerProcess


@dataclass
class StopRequest:
    signum: int | None = None  # the stop signal received, once one is

    def wait(self, poll_s: float = 0.2) -> int:
        """The stop signal, once it came; the handler runs between the sleeps."""
        while self.signum is None:
            time.sleep(poll_s)
        return self.signum


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Within the block SIGINT and SIGTERM only record themselves, so the caller stops everything in
    order (SIGTERM would otherwise end the CLI and leave the servers, in their own sessions, running).
    The previous handlers come back after it."""
    request = StopRequest()

    def record(signum: int, _frame: object) -> None:
        request.signum = signum  # a plain store: a signal handler must not take a lock

    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def create_viewer_key(database_url: str) -> str:
    """A new viewer key in the database (its creation audited); the key itself is returned once."""
    engine = make_engine(database_url)
    try:
        with db.session(engine, write=True) as session:
            _row, key = api_keys.create_key(session, KEY_NAME, Role.VIEWER, ACTOR)
    except DependencyUnavailable as exc:
        raise InfraError(f"could not create the dashboard's viewer key: {exc}") from exc
    finally:
        engine.dispose()
    return key


def start_dashboard(pipeline: LocalPipeline) -> Dashboard:
    """The gateway in front of ``pipeline`` (started) on 127.0.0.1, and a viewer key to log in with."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **pipeline.env,
        "DIFFQC_GATEWAY_HTTP_HOST": "127.0.0.1",  # the demo's dashboard is for this machine only
        "DIFFQC_GATEWAY_INGESTION_URL": pipeline.address("ingestion"),
        "DIFFQC_GATEWAY_PUBLIC_URL": url,
        # One gateway process: a secret of its own, so its log carries no multi-replica warning.
        "DIFFQC_GATEWAY_SESSION_SECRET": secrets.token_urlsafe(32),
    }
    gateway = gateway_process(port, env, pipeline.root / "logs" / "gateway.log").start()
    try:
        key = create_viewer_key(pipeline.db_url)  # after the start: the gateway has migrated the database
    except BaseException:
        gateway.stop()
        raise
    return Dashboard(url, key, gateway)


def serve(pipeline: LocalPipeline, console: Console, poll_s: float = 0.2) -> int:
    """Serve the dashboard on ``pipeline`` until SIGINT or SIGTERM, then stop the gateway; the signal.

    A stop signal while the gateway starts is kept: the wait then ends at once.
    """
    with stop_signals() as stop:
        with console.status("starting the gateway (REST API and dashboard)"):
            dashboard = start_dashboard(pipeline)
        try:
            console.print(f"dashboard: [bold]{dashboard.url}/[/bold] (API docs at {dashboard.url}/docs)")
            console.print("viewer API key, shown this once; paste it on the login page:")
            console.print(dashboard.viewer_key, markup=False, highlight=False, soft_wrap=True)
            console.print("the pipeline and the gateway keep running; Ctrl-C stops everything")
            received = stop.wait(poll_s)
        finally:
            with console.status("stopping the gateway"):
                dashboard.gateway.stop()
    console.print(f"{signal.Signals(received).name}: stopping")
    return received
