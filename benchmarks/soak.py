"""Chaos soak: lines stream through the whole local pipeline while its parts are killed and its
dependencies taken away.

    make soak                                          # 500 frames at 2 fps on 3 lines, a fault every 10 s
    .venv/bin/python -m benchmarks.soak --frames 10000 --fps 3 --kill-every 30 --outage-every 6

``--lines`` cameras stream at once (one thread each, ``--fps`` shared among them), each one line of
one product type: the demo's synthetic line (``diffqc.demo.line``) under the line's own id. The
pipeline runs ``--replicas`` processes of each consumer stage (preprocessing, inference, scoring, the
bridge) over topics of ``--partitions`` partitions, against a fresh PostgreSQL database reached through
an OutageProxy and a stand-in MES that counts deliveries per alert. ``benchmarks.chaos`` SIGKILLs a
random process (ingestion included) every ``--kill-every`` seconds and starts it again ``--down-s``
later; every ``--outage-every``-th fault instead takes a dependency away for ``--outage-s`` (longer than
the consumers' max.poll.interval, ``--poll-interval-s``): Triton, PostgreSQL, the time-series store in
turn, and once the blob volume (a ``--blob-volume-mb`` tmpfs, when this user may mount one) is filled
to its retention high-water mark and relieved by ``diffqc retention``. A camera whose ingestion died
re-sends what it has no ack for (``diffqc.demo.stream``).

At the end every accepted frame must have exactly one inspection (PASS, DEFECT or NOT_INSPECTED), every
DEFECT an alert on quality.alert under one alert id (published again after a crash, never under a second
id), and the MES every alert once. The figures (lost, duplicated, verdicts, p95 latency outside the faults,
recovery after each fault, peak memory per process) print as tables and go to <out>/soak.json, the
timeline that ``benchmarks.soak_figure`` draws to <out>/timeline.json.
Exit status 1 when a frame was lost or judged twice or an alert is missing or was delivered twice.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session

from benchmarks.chaos import Chaos, Fault, MemoryWatch, RetentionCron, mount_volume, unmount_volume
from benchmarks.outage_proxy import OutageProxy
from diffqc.contracts.topics import QUALITY_ALERT
from diffqc.demo.line import Part, line_of, production_line
from diffqc.demo.mes import MesReceiver
from diffqc.demo.stream import resend_note, send_frames, wait_for_inspections
from diffqc.infra.errors import InfraError
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.services import PROJECT_ROOT
from diffqc.store.engine import make_engine
from diffqc.store.models import Frame, Inspection
from diffqc.v1.ingestion_pb2 import IngestRequest
from tests.helpers.kafka import collect

console = Console()


def _on_line(line: Iterable[tuple[IngestRequest, Part]], line_id: str) -> Iterator[tuple[IngestRequest, Part]]:
    """The frames of ``line`` as the camera of line ``line_id`` takes them."""
    for request, part in line:
        request.frame.line_id, request.frame.camera_id = line_id, f"{line_id}-cam-1"
        yield request, dataclasses.replace(part, line_id=line_id)


def _stream_lines(pipeline: LocalPipeline, products: list[str], args: argparse.Namespace) -> tuple[list[str], int]:
    """``args.lines`` cameras at once, each its share of the frames and of the frame rate: the accepted
    frame ids and how many times a camera re-sent after losing ingestion."""
    run = uuid.uuid4().hex[:6]
    resends = Counter[str]()
    per_line_fps = args.fps / args.lines
    with Progress(console=console) as progress, ThreadPoolExecutor(args.lines) as pool:

        def camera(k: int) -> list[str]:
            product, frames = products[k % len(products)], len(range(k, args.frames, args.lines))
            line_id = f"{line_of(product)}-{k + 1}"
            task = progress.add_task(f"{line_id} streaming", total=frames)

            def resent(error, unacked: int, delay_s: float) -> None:
                resends[line_id] += 1
                progress.console.print(f"{line_id}: {resend_note(error, unacked, delay_s)}")

            line = production_line([product], pipeline.image_sizes, frames, 0.1, args.seed + k, f"soak-{run}-{k + 1}")
            accepted, _ = send_frames(
                pipeline.address("ingestion"),
                pipeline.settings.grpc,
                _on_line(line, line_id),
                per_line_fps,
                on_ack=lambda ack, ok: progress.advance(task),
                on_resend=resent,
                call_timeout_s=600 + 2 * frames / per_line_fps,  # one stream for the whole run
            )
            return accepted

        accepted = [fid for line in pool.map(camera, range(args.lines)) for fid in line]
    return accepted, sum(resends.values())


@dataclasses.dataclass
class Judged:
    received: float  # epoch seconds, ingestion
    inspected: float  # epoch seconds, the verdict
    verdict: str
    reason: str | None  # why not inspected


def _judged(db_url: str, frame_ids: list[str]) -> tuple[dict[str, Judged], int]:
    """Each judged frame's times and verdict, and how many frames have more than one inspection."""
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(
                    Inspection.frame_id,
                    Frame.received_at,
                    Inspection.inspected_at,
                    Inspection.verdict,
                    Inspection.not_inspected_reason,
                )
                .join(Frame, Frame.id == Inspection.frame_id)
                .where(Inspection.frame_id.in_(frame_ids))
            ).all()
            twice = session.scalar(
                select(func.count()).select_from(
                    select(Inspection.frame_id)
                    .where(Inspection.frame_id.in_(frame_ids))
                    .group_by(Inspection.frame_id)
                    .having(func.count() > 1)
                    .subquery()
                )
            )
    finally:
        engine.dispose()
    judged = {fid: Judged(_epoch(rx), _epoch(at), verdict.value, why) for fid, rx, at, verdict, why in rows}
    return judged, int(twice or 0)


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()  # SQLite's are naive UTC


def recovery_s(fault: Fault, judged: Iterable[Judged]) -> float:
    """How long after ``fault`` ended the last frame that arrived before its end was judged (normal latency
    included): the time the pipeline needed to catch up."""
    backlog = [j.inspected for j in judged if j.received <= fault.ended]
    return max(0.0, max(backlog, default=fault.ended) - fault.ended)


def latency_outside(faults: list[Fault], recoveries: list[float], judged: Iterable[Judged]) -> np.ndarray:
    """Ingestion-to-verdict seconds of the frames that arrived outside every fault and its catching up."""
    windows = [(f.started, f.ended + r) for f, r in zip(faults, recoveries, strict=True)]
    return np.array([j.inspected - j.received for j in judged if not any(a <= j.received <= b for a, b in windows)])


def _alert_ids(pipeline: LocalPipeline, frame_ids: set[str]) -> dict[str, list[str]]:
    """The alert id of every message on quality.alert about ``frame_ids``, per frame."""
    found = collect(pipeline.settings.kafka, QUALITY_ALERT, frame_ids, timeout_s=30, settle_s=3)
    return {fid: [dict(m.headers())["alert_id"].decode() for m in msgs] for fid, msgs in found.items()}


def _wait_for_mes(mes: MesReceiver, frame_ids: set[str], timeout_s: float) -> set[str]:
    """The frames among ``frame_ids`` whose alert reached the MES, once all did or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the bridge to deliver the alerts to the MES"):
        while True:
            delivered = mes.frame_ids() & frame_ids
            if delivered == frame_ids or time.monotonic() > deadline:
                return delivered
            time.sleep(1)


def _percentile_s(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values.size else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second of all lines together")
    parser.add_argument("--lines", type=int, default=3, help="cameras streaming at once, one line each")
    parser.add_argument("--replicas", type=int, default=2, help="processes of each consumer stage")
    parser.add_argument("--partitions", type=int, default=6, help="of every topic")
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between two faults")
    parser.add_argument("--down-s", type=float, default=5.0, help="how long a killed service stays down")
    parser.add_argument("--outage-every", type=int, default=2, help="every n-th fault takes a dependency away")
    parser.add_argument("--outage-s", type=float, default=20.0, help="how long a dependency stays away")
    parser.add_argument("--poll-interval-s", type=float, default=10.0, help="consumers' max.poll.interval")
    parser.add_argument("--blob-volume-mb", type=int, default=1024, help="tmpfs blob volume; 0: no volume fill")
    parser.add_argument(
        "--retention-every-s", type=float, default=60.0, help="diffqc retention runs (the CronJob); 0: never"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("var/soak"))
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        return _soak(args, stack)


def _soak(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    root = Path(tempfile.mkdtemp(prefix="diffqc-soak-"))
    blob_root = root / "blobs"
    volume = args.blob_volume_mb > 0 and mount_volume(blob_root, args.blob_volume_mb)
    if volume:
        stack.callback(unmount_volume, blob_root)
    elif args.blob_volume_mb:
        console.print("[yellow]cannot mount a tmpfs (needs root): the blob volume is not filled[/yellow]")
    try:
        db_url: str = stack.enter_context(throwaway_database())
    except InfraError as exc:
        console.print(f"[yellow]{exc}: SQLite, and PostgreSQL is not taken away[/yellow]")
        db_url, proxy = "", None
    else:
        target = make_url(db_url)
        proxy = stack.enter_context(OutageProxy((target.host or "127.0.0.1", target.port or 5432)))
    mes = stack.enter_context(MesReceiver())
    high_water = 0.85
    pipeline = LocalPipeline(
        root,
        PROJECT_ROOT / "model-repository",
        database_url=make_url(db_url).set(port=proxy.port).render_as_string(False) if db_url and proxy else None,
        mes_webhook_url=mes.url,
        line_stop_url=mes.line_stop_url,
        service_env={
            "DIFFQC_KAFKA_MAX_POLL_INTERVAL_MS": str(int(args.poll_interval_s * 1000)),
            "DIFFQC_KAFKA_MAX_RETRIES": "3",
            "DIFFQC_RETENTION_DISK_HIGH_WATER": str(high_water),
        },
        replicas=args.replicas,
        partitions=args.partitions,
    )
    db_url = db_url or pipeline.db_url  # the soak's own queries bypass the proxy
    stack.callback(pipeline.stop)
    with console.status("starting the pipeline"):
        products = pipeline.start()
    retention = RetentionCron({**pipeline.env, "DIFFQC_DATABASE_URL": db_url}, args.retention_every_s)
    chaos = Chaos(
        pipeline,
        console,
        args.kill_every,
        args.down_s,
        args.outage_s,
        args.outage_every,
        args.seed,
        postgres=proxy,
        fill_to=high_water + 0.02 if volume else None,
        retention=retention,
    )
    memory = MemoryWatch(pipeline)
    for thread in (chaos, memory, retention):
        thread.start()
    started = time.monotonic()
    accepted, resends = _stream_lines(pipeline, products, args)
    chaos.stop.set()
    chaos.join()
    rows = wait_for_inspections(db_url, accepted, 600 + 2 * args.frames, console, poll_s=3)
    memory.stop.set()
    retention.stop.set()
    judged, judged_twice = _judged(db_url, accepted)
    verdicts = Counter(j.verdict for j in judged.values())
    defects = {fid for fid, j in judged.items() if j.verdict == "defect"}
    alerted = {fid for fid, j in judged.items() if j.verdict != "pass"}  # the MES hears of these
    alerts = _alert_ids(pipeline, defects) if defects else {}
    at_mes = _wait_for_mes(mes, alerted, 300)
    recoveries = [recovery_s(f, judged.values()) for f in chaos.faults]
    calm = latency_outside(chaos.faults, recoveries, judged.values())
    figures = {
        "lines": args.lines,
        "replicas": args.replicas,
        "partitions": args.partitions,
        "max_poll_interval_s": args.poll_interval_s,
        "frames_sent": args.frames,
        "frames_accepted": len(accepted),
        "inspected_once": len(judged) - judged_twice,
        "lost": len(set(accepted) - set(rows)),
        "judged_twice": judged_twice,
        "verdicts": dict(verdicts),
        "not_inspected_because": dict(Counter(j.reason for j in judged.values() if j.verdict == "not_inspected")),
        "defects_without_alert": len(defects - set(alerts)),
        # A crash between publishing and committing the input publishes the alert again under its id
        # (docs/architecture.md, No verdict without its alert): the bridge delivers it once.
        "defect_alerts_published_again": sum(len(ids) > 1 for ids in alerts.values()),
        "defects_alerted_under_two_ids": sum(len(set(ids)) > 1 for ids in alerts.values()),
        "alerts_not_at_mes": len(alerted - at_mes),
        "mes_duplicate_deliveries": mes.delivered_more_than_once(),
        "latency_s_p50_outside_faults": _percentile_s(calm, 50),
        "latency_s_p95_outside_faults": _percentile_s(calm, 95),
        "frames_outside_faults": int(calm.size),
        "faults": [
            {"what": f.what, "lasted_s": round(f.ended - f.started, 1), "recovery_s": round(r, 1), "detail": f.detail}
            for f, r in zip(chaos.faults, recoveries, strict=True)
        ],
        "memory": memory.figures(),
        "retention_runs": retention.runs,
        "camera_resends": resends,
        "wall_s": round(time.monotonic() - started, 1),
    }
    _print(figures)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    timeline = {  # for benchmarks.soak_figure
        "frames": [[j.received, j.inspected, j.verdict] for j in judged.values()],
        "faults": [{"what": f.what, "started": f.started, "ended": f.ended} for f in chaos.faults],
        "memory": memory.samples,
    }
    (args.out / "timeline.json").write_text(json.dumps(timeline) + "\n")
    console.print(
        f"figures in {args.out}; draw them: python -m benchmarks.soak_figure {args.out}/timeline.json soak.png"
    )
    ok = not (
        figures["lost"]
        or figures["judged_twice"]
        or figures["defects_without_alert"]
        or figures["defects_alerted_under_two_ids"]
        or figures["alerts_not_at_mes"]
        or figures["mes_duplicate_deliveries"]
    )
    console.print(
        "[green]every frame judged exactly once, every alert at the MES once[/green]"
        if ok
        else "[red]a frame lost or judged twice, or an alert missing or delivered twice: see the figures[/red]"
    )
    return 0 if ok else 1


def _print(figures: dict) -> None:
    table = Table("figure", "value")
    for key, value in figures.items():
        if key not in ("faults", "memory", "retention_runs"):
            table.add_row(key, str(value))
    console.print(table)
    faults = Table("fault", "lasted s", "recovery s", "detail")
    for f in figures["faults"]:
        faults.add_row(f["what"], str(f["lasted_s"]), str(f["recovery_s"]), f["detail"])
    console.print(faults)
    memory = Table("process", "peak MB", "first quarter MB", "last quarter MB")
    for name, m in figures["memory"].items():
        memory.add_row(name, str(m["peak_mb"]), str(m["first_quarter_mb"]), str(m["last_quarter_mb"]))
    console.print(memory)


if __name__ == "__main__":
    raise SystemExit(main())
