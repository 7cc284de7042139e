"""A local server process: started in its own session, logged to a file, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import httpx

from diffqc.infra.errors import InfraError

LOCAL_EXTRA_HINT = "pip install 'diffqc[local]'"


def _psutil() -> ModuleType:
    """psutil, of the local extra: a services install runs no local servers and carries none."""
    try:
        import psutil
    except ImportError as exc:
        raise InfraError(f"the local servers need the local extra (psutil): {LOCAL_EXTRA_HINT}") from exc
    return psutil


@dataclass
class ServerProcess:
    name: str
    argv: Sequence[str]
    log_path: Path | None  # None: the server writes to this process's stdout/stderr
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    ready_timeout_s: float = 30.0
    pid: int | None = field(default=None, init=False)

    def start(self) -> ServerProcess:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") if self.log_path else nullcontext() as log:
            # A new session detaches the server from the terminal's signals (Ctrl-C in the
            # shell stops the CLI, not the broker) and lets `stop` kill its whole group.
            proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        self.pid = proc.pid
        self._wait_ready(proc)
        return self

    def _wait_ready(self, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise InfraError(
                    f"{self.name} exited with code {proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.ready():
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        self.stop()
        raise InfraError(
            f"{self.name} was not ready after {self.ready_timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.pid is not None:
            stop_pid(self.pid, timeout_s)
            self.pid = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return "(logged to the terminal)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def http_ok(url: str) -> bool:
    """True when GET ``url`` answers 200 within a second: the readiness probe of an HTTP server."""
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop_pid(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL what is left after ``timeout_s``, reap it."""
    psutil = _psutil()
    try:
        leader = psutil.Process(pid)
        members = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    except PermissionError:
        leader.terminate()
    _, alive = psutil.wait_procs(members, timeout=timeout_s)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)


def pid_alive(pid: int, expected_name: str | None = None) -> bool:
    """True when ``pid`` runs and, if given, its command line contains ``expected_name``."""
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return expected_name is None or expected_name in " ".join(proc.cmdline())
    except psutil.Error:
        return False
