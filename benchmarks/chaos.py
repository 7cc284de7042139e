"""The soak's faults, its retention runs and its memory watch.

``Chaos`` SIGKILLs a random service process (every consumer replica, the bridge's, ingestion) and starts
it again, and at every ``outage_every``-th event takes a dependency away for ``outage_s`` (longer than the
consumers' max.poll.interval), in turn: Triton (stopped), PostgreSQL (its OutageProxy resets every
connection and refuses new ones), the time-series store (stopped), and once the blob volume, filled to
its retention high-water mark with old blobs and relieved by a ``diffqc retention`` run. Each fault is a
``Fault`` with its wall-clock start and end, so the soak can tell the frames it delayed from the others.

``RetentionCron`` runs ``diffqc retention`` periodically, as the chart's CronJob does, so the line's own
blobs stay below the high-water mark. ``MemoryWatch`` samples the resident memory of every service
process and server, to show it flat.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from rich.console import Console

from benchmarks.outage_proxy import OutageProxy
from diffqc.infra.errors import InfraError
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.process import stop_pid
from diffqc.infra.stack import TIMESERIES, TRITON
from diffqc.store.blobs import FileBlobStore

BALLAST_BYTES = 8 << 20  # one ballast blob
BALLAST_AGE_S = (
    2 * 86400
)  # older than the line's own blobs, younger than the age rule: retention's disk step takes them


@dataclass
class Fault:
    what: str
    started: float  # epoch seconds
    ended: float = 0.0
    detail: str = ""


@dataclass(eq=False)  # a thread: compared and hashed by identity
class Chaos(threading.Thread):
    pipeline: LocalPipeline
    console: Console
    kill_every: float
    down_s: float
    outage_s: float
    outage_every: int
    seed: int
    postgres: OutageProxy | None = None  # the services reach PostgreSQL through it
    fill_to: float | None = None  # share of the blob volume to fill once (the high-water mark), None: not at all
    retention: RetentionCron | None = None  # relieves the volume after the fill
    faults: list[Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(daemon=True, name="chaos")
        self.random = random.Random(self.seed)
        self.victims = self.pipeline.service_names
        self.stop = threading.Event()
        outages: list[tuple[str, Callable[[], str]]] = [("Triton", self.triton_outage)]
        if self.postgres is not None:
            outages.append(("PostgreSQL", self.postgres_outage))
        if TIMESERIES in self.pipeline.stack.running():
            outages.append(("the time-series store", self.timeseries_outage))
        self.outages = outages
        self.disk_filled = False

    def run(self) -> None:
        rounds, turn = 0, 0
        while not self.stop.wait(self.kill_every):
            rounds += 1
            if rounds % self.outage_every != 2 % self.outage_every:
                self._fault(*self.kill(self.random.choice(self.victims)))
            elif self.fill_to is not None and not self.disk_filled and turn == len(self.outages):
                self.disk_filled = True
                self._fault("blob volume filled to its high-water mark", self.fill_volume)
            else:
                name, outage = self.outages[turn % len(self.outages)]
                turn += 1
                self._fault(f"{name} down {self.outage_s:.0f} s", outage)

    def _fault(self, what: str, act: Callable[[], str]) -> None:
        fault = Fault(what, time.time())
        self.console.print(f"[magenta]chaos:[/magenta] {what}")
        fault.detail = act()
        fault.ended = time.time()
        self.faults.append(fault)
        self.console.print(f"[magenta]chaos:[/magenta] over after {fault.ended - fault.started:.0f} s: {what}")

    def kill(self, name: str) -> tuple[str, Callable[[], str]]:
        def act() -> str:
            process = self.pipeline.processes.pop(name, None)
            if process is not None and process.pid is not None:  # None: its last restart failed
                os.killpg(process.pid, signal.SIGKILL)  # no shutdown, no commit
            self.stop.wait(self.down_s)
            try:
                self.pipeline.start_service(name)
            except InfraError as exc:  # e.g. its start-up timed out waiting for a dependency: tried again later
                return f"did not start again: {str(exc).splitlines()[0]}"
            return "" if process is not None else "was not running (its last start failed); started"

        return f"{name} SIGKILLed", act

    def triton_outage(self) -> str:
        stack = self.pipeline.stack
        server = stack.running()[TRITON]
        stop_pid(server.pid)
        self.stop.wait(self.outage_s)
        port = int(server.address.rsplit(":", 1)[1])
        stack.up(self._kafka_port(), None, self.pipeline.model_repository, port)
        return ""

    def postgres_outage(self) -> str:
        assert self.postgres is not None
        self.postgres.down()
        self.stop.wait(self.outage_s)
        self.postgres.up()
        return ""

    def timeseries_outage(self) -> str:
        stack = self.pipeline.stack
        server = stack.running()[TIMESERIES]
        stop_pid(server.pid)
        self.stop.wait(self.outage_s)
        stack.up(self._kafka_port(), int(server.address.rsplit(":", 1)[1]))
        return ""

    def fill_volume(self) -> str:
        """Old ballast blobs up to ``fill_to`` of the volume, then one `diffqc retention` run."""
        assert self.fill_to is not None
        store = FileBlobStore(self.pipeline.settings.blob_root)
        used, total = store.volume_usage()
        old = time.time() - BALLAST_AGE_S
        while used < self.fill_to * total:
            ref = store.put(os.urandom(min(BALLAST_BYTES, int(self.fill_to * total) - used + 1)), "ballast")
            os.utime(store.root / "sha256" / ref.sha256[:2] / ref.sha256, (old, old))
            used, total = store.volume_usage()
        filled = used / total
        assert self.retention is not None
        return f"filled to {filled:.0%}; diffqc retention: {self.retention.run_once()}"

    def _kafka_port(self) -> int:
        return int(self.pipeline.env["DIFFQC_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])


class RetentionCron(threading.Thread):
    """Runs ``diffqc retention`` every ``every_s`` (0: only when asked), as the chart's CronJob does, one run
    at a time; keeps what each run printed last (the blob volume before and after)."""

    def __init__(self, env: dict[str, str], every_s: float):
        super().__init__(daemon=True, name="retention")
        self.env, self.every_s = env, every_s
        self.stop = threading.Event()
        self.runs: list[str] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        while self.every_s and not self.stop.wait(self.every_s):
            self.run_once()

    def run_once(self) -> str:
        with self._lock:
            done = subprocess.run(
                [str(Path(sys.executable).with_name("diffqc")), "retention"],
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=600,
            )
        said = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else [f"failed: {done.stderr[-300:]}"]
        self.runs.extend(said)
        return said[0] if said else "(nothing printed)"


class MemoryWatch(threading.Thread):
    """Resident memory (process and children) of every service process and server, every ``every_s``."""

    def __init__(self, pipeline: LocalPipeline, every_s: float = 5.0):
        super().__init__(daemon=True, name="memory-watch")
        self.pipeline, self.every_s = pipeline, every_s
        self.stop = threading.Event()
        self.samples: dict[str, list[tuple[float, int]]] = {}

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            pids = {name: p.pid for name, p in list(self.pipeline.processes.items())}
            pids |= {name: server.pid for name, server in self.pipeline.stack.running().items()}
            now = time.time()
            for name, pid in pids.items():
                rss = _rss(pid)
                if rss:
                    self.samples.setdefault(name, []).append((now, rss))

    def figures(self) -> dict[str, dict[str, float]]:
        """Per process: peak MB, and the median MB of the first and of the last quarter of its samples."""

        def median_mb(values: list[int]) -> float:
            return round(sorted(values)[len(values) // 2] / 2**20, 1)

        out = {}
        for name, samples in sorted(self.samples.items()):
            rss = [r for _, r in samples]
            quarter = max(1, len(rss) // 4)
            out[name] = {
                "peak_mb": round(max(rss) / 2**20, 1),
                "first_quarter_mb": median_mb(rss[:quarter]),
                "last_quarter_mb": median_mb(rss[-quarter:]),
            }
        return out


def _rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:  # gone meanwhile (killed, restarting)
        return 0


def mount_volume(path: Path, size_mb: int) -> bool:
    """A tmpfs of ``size_mb`` at ``path``, the blob volume the soak fills; False when this user cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, text=True
    )
    return done.returncode == 0


def unmount_volume(path: Path) -> None:
    subprocess.run(["umount", "--lazy", str(path)], capture_output=True)
