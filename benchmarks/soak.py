"""Chaos soak: a line streams through the whole local pipeline while its parts are killed and restarted.

    make soak                                          # 300 frames at 2 fps, a kill every 20 s
    .venv/bin/python -m benchmarks.soak --frames 600 --fps 4 --kill-every 15 --out var/soak

While the shipped models judge a synthetic line (the demo's, ``diffqc.demo.line``), a chaos thread
SIGKILLs a random service of the frame flow (preprocessing, inference, scoring, the bridge) every
``--kill-every`` seconds and starts it again ``--down-s`` seconds later, and once stops Triton for
longer than the consumers' max.poll.interval (set to ``--poll-interval-s``), so the consume loops
must pause and keep their partitions instead of being evicted. Ingestion is not killed here: a camera
that re-sends what has no ack is tested in tests/e2e/test_pipeline.py.

At the end every accepted frame must have exactly one inspection (PASS, DEFECT or NOT_INSPECTED) and
every DEFECT exactly one alert id on quality.alert; the figures (lost, duplicated, verdicts, latency,
kills) print as a table and go to <out>/soak.json. Exit status 1 when a frame was lost or judged twice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.contracts.topics import QUALITY_ALERT
from diffqc.demo.line import production_line
from diffqc.demo.stream import ingest_stream, wait_for_inspections
from diffqc.infra.pipeline import BRIDGE, LocalPipeline
from diffqc.infra.process import stop_pid
from diffqc.infra.services import PROJECT_ROOT
from diffqc.infra.stack import TRITON
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection
from tests.helpers.kafka import collect

VICTIMS = ("preprocessing", "inference", "scoring", BRIDGE)
console = Console()


class Chaos(threading.Thread):
    """Kills and restarts services, and takes Triton down once, until stopped; records what it did."""

    def __init__(self, pipeline: LocalPipeline, kill_every: float, down_s: float, triton_down_s: float, seed: int):
        super().__init__(daemon=True)
        self.pipeline, self.kill_every, self.down_s, self.triton_down_s = pipeline, kill_every, down_s, triton_down_s
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.events: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.events.append((time.monotonic(), what))
        console.print(f"[magenta]chaos:[/magenta] {what}")

    def kill(self, name: str) -> None:
        process = self.pipeline.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)  # no shutdown, no commit
        self.note(f"killed {name}")
        self.stop.wait(self.down_s)
        self.pipeline.start_service(name)
        self.note(f"restarted {name}")

    def triton_outage(self) -> None:
        stack = self.pipeline.stack
        server = stack.running()[TRITON]
        stop_pid(server.pid)
        self.note(f"stopped Triton for {self.triton_down_s:.0f} s")
        self.stop.wait(self.triton_down_s)
        port = int(server.address.rsplit(":", 1)[1])
        kafka_port = int(self.pipeline.env["DIFFQC_KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
        stack.up(kafka_port, None, self.pipeline.model_repository, port)
        self.note("Triton is back")

    def run(self) -> None:
        rounds = 0
        while not self.stop.wait(self.kill_every):
            rounds += 1
            if rounds == 2:
                self.triton_outage()
            else:
                self.kill(self.random.choice(VICTIMS))


def _alert_ids(pipeline: LocalPipeline, frame_ids: set[str]) -> Counter[str]:
    found = collect(pipeline.settings.kafka, QUALITY_ALERT, frame_ids, timeout_s=30, settle_s=3)
    return Counter({frame_id: len(msgs) for frame_id, msgs in found.items()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds between two chaos events")
    parser.add_argument("--down-s", type=float, default=5.0, help="how long a killed service stays down")
    parser.add_argument("--triton-down-s", type=float, default=30.0, help="the Triton outage")
    parser.add_argument("--poll-interval-s", type=float, default=10.0, help="consumers' max.poll.interval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("var/soak"))
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="diffqc-soak-"))
    pipeline = LocalPipeline(
        root,
        PROJECT_ROOT / "model-repository",
        mes_webhook_url="http://127.0.0.1:9/unused",  # the bridge runs (and is killed); its MES is down
        service_env={
            "DIFFQC_KAFKA_MAX_POLL_INTERVAL_MS": str(int(args.poll_interval_s * 1000)),
            "DIFFQC_KAFKA_MAX_RETRIES": "3",
        },
    )
    chaos = None
    try:
        with console.status("starting the pipeline"):
            products = pipeline.start()
        chaos = Chaos(pipeline, args.kill_every, args.down_s, args.triton_down_s, args.seed)
        chaos.start()
        started = time.monotonic()
        line = production_line(
            products, pipeline.image_sizes, args.frames, 0.1, args.seed, f"soak-{uuid.uuid4().hex[:6]}"
        )
        accepted, _parts = ingest_stream(
            pipeline.address("ingestion"), pipeline.settings.grpc, line, args.frames, console, args.fps
        )
        chaos.stop.set()
        chaos.join()
        rows = wait_for_inspections(pipeline.db_url, accepted, 300 + 2 * args.frames, console)
        engine = make_engine(pipeline.db_url)
        with Session(engine) as session:
            per_frame = dict(
                session.execute(
                    select(Inspection.frame_id, func.count())
                    .where(Inspection.frame_id.in_(accepted))
                    .group_by(Inspection.frame_id)
                ).all()
            )
        engine.dispose()
        verdicts = Counter(row.verdict.value for row in rows.values())
        defects = {fid for fid, row in rows.items() if row.verdict.value == "defect"}
        alerts = _alert_ids(pipeline, defects) if defects else Counter()
        latency = np.array([row.latency_ms for row in rows.values()]) if rows else np.zeros(1)
        figures = {
            "frames_sent": args.frames,
            "frames_accepted": len(accepted),
            "inspected_once": sum(n == 1 for n in per_frame.values()),
            "lost": len(accepted) - len(per_frame),
            "judged_twice": sum(n > 1 for n in per_frame.values()),
            "verdicts": dict(verdicts),
            "defects_without_one_alert": sum(alerts.get(fid, 0) != 1 for fid in defects),
            "latency_ms_p50": float(np.percentile(latency, 50)),
            "latency_ms_p95": float(np.percentile(latency, 95)),
            "latency_ms_max": float(latency.max()),
            "chaos": [what for _, what in chaos.events],
            "wall_s": round(time.monotonic() - started, 1),
        }
    finally:
        if chaos is not None:
            chaos.stop.set()
        with console.status("stopping"):
            pipeline.stop()
    table = Table("figure", "value")
    for key, value in figures.items():
        table.add_row(key, ", ".join(value) if key == "chaos" else str(value))
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    ok = figures["lost"] == 0 and figures["judged_twice"] == 0 and figures["defects_without_one_alert"] == 0
    console.print("[green]every frame judged exactly once[/green]" if ok else "[red]frames lost or judged twice[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
