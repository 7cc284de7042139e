"""``run_service``: the one entry point of every diffqc service process.

Start-up: JSON logs, /metrics, the gRPC server (health SERVING), one thread per consume loop.
On SIGTERM/SIGINT (or when a loop dies): health NOT_SERVING, stop accepting gRPC calls, let
in-flight calls and the message each loop holds finish (loops commit their offsets and close their
consumers), all within ``settings.service.shutdown_grace_s``, then return the exit code.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from diffqc import __version__
from diffqc.runtime.grpc_server import GrpcBindError, GrpcServer
from diffqc.runtime.logging import configure_logging
from diffqc.runtime.metrics import start_metrics_server
from diffqc.runtime.shutdown import ShutdownSignal
from diffqc.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrpcApi:
    """A service's gRPC API: its full name (for health checks and reflection), the generated
    ``add_<Service>Servicer_to_server`` and the servicer it adds."""

    name: str
    add: Callable[[Any, grpc.Server], None]
    servicer: object

    def register(self, server: grpc.Server) -> None:
        self.add(self.servicer, server)


class Loop(Protocol):
    """A streaming worker, such as diffqc.bus.consumer.ConsumeLoop."""

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, then finish the message in hand, commit and close."""


def run_service(
    name: str,
    settings: Settings,
    api: GrpcApi | None,
    loops: Sequence[Loop] = (),
    *,
    grpc_options: Sequence[tuple[str, Any]] = (),
    stream_threads: int = 0,
) -> int:
    """Run service ``name`` until SIGTERM/SIGINT; return the process exit code (0 = clean stop).

    Must be called from the main thread (signal handlers). gRPC and /metrics listen on
    ``settings.service.host``: 127.0.0.1 locally, 0.0.0.0 in a container. A worker without an API of its
    own (``api`` None) still serves the standard health service there, for its probes. ``stream_threads``:
    gRPC threads on top of ``grpc_workers`` for long-lived streams (each holds one while it lasts), so
    that streams never take the threads that unary calls and health probes need.
    """
    configure_logging(settings.log_level, name)
    shutdown = ShutdownSignal()  # first, so a signal during start-up still leads to a clean stop
    register = api.register if api is not None else _no_servicer
    try:
        names = [api.name] if api is not None else []
        return _run(name, settings, register, names, loops, grpc_options, stream_threads, shutdown)
    finally:
        shutdown.restore()


def _run(name, settings, register_grpc, service_names, loops, grpc_options, stream_threads, shutdown) -> int:
    cfg = settings.service
    host = cfg.host
    log.info("starting %s (diffqc %s)", name, __version__)
    try:
        metrics_port = start_metrics_server(cfg.metrics_port, host)
        log.info("metrics on http://%s:%d/metrics", host, metrics_port, extra={"metrics_port": metrics_port})
        server = GrpcServer(
            name,
            register_grpc,
            service_names,
            port=cfg.grpc_port,
            workers=cfg.grpc_workers + stream_threads,
            host=host,
            options=grpc_options,
            grpc_settings=settings.grpc,
        )
    except (GrpcBindError, OSError) as exc:
        log.critical("cannot start %s: %s", name, exc)
        return 1
    server.start()

    stop_loops = threading.Event()
    failed: list[str] = []
    # Daemon threads: a loop stuck past the grace period cannot keep the process alive.
    threads = [
        threading.Thread(
            target=_run_loop,
            args=(loop, stop_loops, shutdown.event, failed),
            name=f"loop-{_loop_name(loop)}",
            daemon=True,
        )
        for loop in loops
    ]
    for thread in threads:
        thread.start()
    log.info("%s ready: gRPC %s, %d consume loop(s)", name, server.address, len(threads))

    shutdown.wait()
    reason = shutdown.received.name if shutdown.received else f"consume loop failed: {', '.join(failed)}"
    log.info("shutting down (%s); grace %s s", reason, cfg.shutdown_grace_s)
    deadline = time.monotonic() + cfg.shutdown_grace_s
    # Loops and gRPC drain at the same time under one deadline, so the whole stop fits the grace
    # period the orchestrator allows (Kubernetes terminationGracePeriodSeconds) before SIGKILL.
    stop_loops.set()
    server.stop(cfg.shutdown_grace_s)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    if stuck:  # their uncommitted messages are redelivered to the group: at least once, nothing lost
        log.error("not stopped within the grace period: %s", ", ".join(stuck))
    exit_code = 1 if failed or stuck else 0
    log.info("stopped", extra={"exit_code": exit_code})
    return exit_code


def _no_servicer(_server: grpc.Server) -> None:
    """Registers nothing: the server carries health checking, reflection and metrics alone."""


def _loop_name(loop: Loop) -> str:
    return getattr(loop, "topic", None) or type(loop).__name__


def _run_loop(loop: Loop, stop: threading.Event, shutdown: threading.Event, failed: list[str]) -> None:
    """Run one loop; if it dies or returns on its own, stop the service so the orchestrator restarts it."""
    name = _loop_name(loop)
    log.info("consume loop %s started", name)
    try:
        loop.run(stop)
    except Exception:
        log.exception("consume loop %s failed; stopping the service", name)
        failed.append(name)
        shutdown.set()
        return
    if not stop.is_set():
        log.error("consume loop %s returned before shutdown; stopping the service", name)
        failed.append(name)
        shutdown.set()
        return
    log.info("consume loop %s stopped", name)
