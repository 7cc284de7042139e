"""Scale-out curve: the local pipeline's sustained frames/s with 1, 2, 4... processes per consumer stage,
next to what Triton alone serves, in one run.

    make scaleout                                     # replicas 1 2 4, 120 frames each
    .venv/bin/python -m benchmarks.scaleout --replicas 1 2 4 --frames 120 --out var/scaleout

One LocalPipeline (broker, schema registry, time-series store, Triton serving the shipped models,
SQLite metadata as in ``make run``) starts once, its topics with a partition for every consumer of the
largest count (replicas × ``service.stream_workers``). For each replica count the consumer stages
(preprocessing, inference, scoring) are scaled to it (``LocalPipeline.scale``; ingestion and Triton
stay one each), the groups get ``--settle-s`` to rebalance, ``--warmup`` frames go through first (a
new process's first calls), then the same ``--frames`` synthetic frames, under new frame ids, in one
Ingest stream as fast as ingestion takes them. The frames are spread over ``--lines`` line ids: the
line is the partition key, so one line's frames are judged in order by one consumer at a time.

Per count: frames/s from the first to the last verdict (``inspected_at``) and from the first frame
sent to the last verdict; frame -> verdict latency p50/p95 (in a burst, mostly waiting in line); where
the CPU went in that window (the machine's CPU %, the cores Triton's process tree and the services'
processes used, the 1-minute load average); how many partitions of qc.frames.v1 the burst reached.

Then the Triton-bound ceiling, measured on the same server in the same run: ``--triton-frames`` of the
frames, prepared as preprocessing prepares them (tiles in memory), sent straight to Triton with
``TritonDetector.detect`` (all tiles of a frame at once, as inference sends them), with as many frames
in flight as each count's inference consumers hold. A pipeline curve that stays at Triton's figure is
Triton-bound (on a CPU host: bound by the cores Triton computes on). Rows go to <out>/scaleout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import psutil
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from diffqc.bus.config import consumer_config
from diffqc.contracts.topics import FRAMES
from diffqc.core import clock
from diffqc.demo.line import production_line
from diffqc.demo.stream import ingestion_channel, wait_for_inspections
from diffqc.infra.pipeline import PARTITIONS, LocalPipeline
from diffqc.infra.services import PROJECT_ROOT
from diffqc.infra.stack import TRITON
from diffqc.preprocess import Preprocessor
from diffqc.preprocess.normalize import decode_image
from diffqc.preprocess.prepare import prepare_frame
from diffqc.serving.client import TritonDetector
from diffqc.settings import KafkaSettings, Settings
from diffqc.store.blobs import get_array, make_blob_store
from diffqc.store.engine import make_engine
from diffqc.v1 import ingestion_pb2_grpc
from diffqc.v1.ingestion_pb2 import IngestRequest

console = Console()
TILE_THREADS = 16  # inference's own pool per process (services/inference/service.py)


@dataclass
class CpuUse:
    machine_percent: float  # of all cores
    triton_cores: float  # cores Triton's process tree kept busy (its python backend stubs included)
    services_cores: float  # cores the diffqc service processes kept busy
    other_cores: float  # the rest: broker, stores, this client, and whatever else runs on the machine
    load_1m: float


@dataclass
class PipelineRow:
    replicas: int
    consumers_per_stage: int
    frames: int
    partitions_reached: int
    fps_first_to_last_verdict: float
    fps_sent_to_last_verdict: float
    latency_ms_p50: float
    latency_ms_p95: float
    cpu: CpuUse


@dataclass
class TritonRow:
    frames_in_flight: int
    frames: int
    fps: float
    frame_ms_p50: float
    frame_ms_p95: float
    cpu: CpuUse


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) that process ``pid`` and its descendants used so far."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


class CpuWindow:
    """Where the CPU goes from its creation to ``close``: Triton's tree vs the service processes."""

    def __init__(self, pipeline: LocalPipeline):
        self.triton = [pipeline.stack.running()[TRITON].pid]
        self.services = [p.pid for p in pipeline.processes.values() if p.pid is not None]
        self.before = self._used()
        self.started = time.monotonic()
        psutil.cpu_percent(None)  # the machine's figure is measured from here

    def _used(self) -> tuple[float, float]:
        return sum(map(_tree_cpu_s, self.triton)), sum(map(_tree_cpu_s, self.services))

    def close(self) -> CpuUse:
        wall = time.monotonic() - self.started
        triton, services = ((after - before) / wall for after, before in zip(self._used(), self.before, strict=True))
        machine = psutil.cpu_percent(None)
        other = max(0.0, machine / 100 * (os.cpu_count() or 1) - triton - services)
        return CpuUse(machine, triton, services, other, os.getloadavg()[0])


def _copies(requests: Sequence[IngestRequest], tag: str, lines: int) -> list[IngestRequest]:
    """The same images under new frame ids, spread over ``lines`` line ids, each with its own capture time."""
    start = clock.now()
    copies = []
    for i, request in enumerate(requests):
        copy = IngestRequest()
        copy.CopyFrom(request)
        line = f"line-{i % lines + 1:02d}"
        copy.frame.frame_id, copy.frame.line_id, copy.frame.camera_id = f"{tag}-{i:05d}", line, f"{line}-cam-1"
        copy.frame.capture_time.CopyFrom(clock.to_timestamp(start + timedelta(milliseconds=i)))
        copies.append(copy)
    return copies


def _frame_offsets(kafka: KafkaSettings, partitions: int) -> np.ndarray:
    """The end offset of each partition of qc.frames.v1."""
    consumer = Consumer(consumer_config(kafka, f"scaleout-{uuid.uuid4().hex[:6]}"))
    try:
        return np.array(
            [consumer.get_watermark_offsets(TopicPartition(FRAMES, p), timeout=10)[1] for p in range(partitions)]
        )
    finally:
        consumer.close()


def _send(pipeline: LocalPipeline, requests: list[IngestRequest]) -> tuple[float, dict]:
    """One Ingest stream of ``requests``, as fast as ingestion takes them: seconds from the first frame sent
    until every verdict is stored, and the inspection rows."""
    timeout_s = 60 + 3 * len(requests)  # a pipeline slower than 1 frame per 3 s is broken, not slow
    started = time.perf_counter()
    with ingestion_channel(pipeline.address("ingestion"), pipeline.settings.grpc) as channel:
        acks = list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(iter(requests), timeout=timeout_s))
    rows = wait_for_inspections(pipeline.db_url, [a.frame_id for a in acks], timeout_s, console, poll_s=0.05)
    if len(rows) < len(requests):
        tails = "\n".join(f"--- {name}\n{tail}" for name, tail in pipeline.log_tails(5).items())
        raise RuntimeError(f"only {len(rows)} of {len(requests)} frames were inspected; logs:\n{tails}")
    return time.perf_counter() - started, rows


def _pipeline_row(
    pipeline: LocalPipeline, replicas: int, frames: list[IngestRequest], args: argparse.Namespace
) -> PipelineRow:
    with console.status(f"{replicas} replica(s) of each consumer stage"):
        pipeline.scale(replicas)
        time.sleep(args.settle_s)  # the consumer groups rebalance onto the new members
    run = f"r{replicas}-{uuid.uuid4().hex[:6]}"
    _send(pipeline, _copies(frames[: args.warmup], f"warm-{run}", args.lines))
    burst = _copies(frames, f"burst-{run}", args.lines)
    offsets = _frame_offsets(pipeline.settings.kafka, pipeline.partitions)
    window = CpuWindow(pipeline)
    seconds, rows = _send(pipeline, burst)
    cpu = window.close()
    reached = int(np.count_nonzero(_frame_offsets(pipeline.settings.kafka, pipeline.partitions) - offsets))
    verdict_times = sorted(row.inspected_at for row in rows.values())
    span = (verdict_times[-1] - verdict_times[0]).total_seconds()
    latency = np.array([row.latency_ms for row in rows.values()])
    return PipelineRow(
        replicas=replicas,
        consumers_per_stage=replicas * pipeline.settings.service.stream_workers,
        frames=len(burst),
        partitions_reached=reached,
        fps_first_to_last_verdict=(len(rows) - 1) / span,
        fps_sent_to_last_verdict=len(rows) / seconds,
        latency_ms_p50=float(np.percentile(latency, 50)),
        latency_ms_p95=float(np.percentile(latency, 95)),
        cpu=cpu,
    )


def _prepared_tiles(pipeline: LocalPipeline, requests: list[IngestRequest]) -> list[tuple[str, list[np.ndarray]]]:
    """(product, tile tensors) of each frame, as the preprocessing stage prepares it."""
    engine = make_engine(pipeline.db_url)
    blobs = make_blob_store(pipeline.settings)
    preprocessor = Preprocessor(engine, blobs)
    prepared = []
    for request in requests:
        frame = request.frame
        spec = preprocessor.spec(frame.product_type)
        image = decode_image(request.image_data, frame.frame_id)
        tiles = prepare_frame(frame, spec, blobs, image=image, reference=preprocessor.reference(spec)).tiles
        prepared.append((frame.product_type, [get_array(blobs, tile.tensor) for tile in tiles]))
    engine.dispose()
    return prepared


def _triton_row(pipeline: LocalPipeline, frames: list[tuple[str, list[np.ndarray]]], in_flight: int) -> TritonRow:
    detector = TritonDetector(pipeline.settings.triton)
    processes = max(1, in_flight // pipeline.settings.service.stream_workers)
    with ThreadPoolExecutor(TILE_THREADS * processes) as tiles, ThreadPoolExecutor(in_flight) as callers:

        def judge(frame: tuple[str, list[np.ndarray]]) -> float:
            product, tensors = frame
            started = time.perf_counter()
            for detection in [tiles.submit(detector.detect, tensor[None], product) for tensor in tensors]:
                detection.result()
            return time.perf_counter() - started

        judge(frames[0])  # the callers' first connection
        window = CpuWindow(pipeline)
        started = time.perf_counter()
        seconds = np.array(list(callers.map(judge, frames))) * 1000
        wall = time.perf_counter() - started
        cpu = window.close()
    detector.close()
    return TritonRow(
        in_flight,
        len(frames),
        len(frames) / wall,
        float(np.percentile(seconds, 50)),
        float(np.percentile(seconds, 95)),
        cpu,
    )


def _tables(pipeline_rows: list[PipelineRow], triton_rows: list[TritonRow], cores: int) -> None:
    table = Table(
        title=f"pipeline scale-out on {cores} cores (ingestion and Triton: one each)",
        caption="fps verdicts: frames/s from the first to the last verdict; fps sent→verdict: from the first frame "
        "sent; cores: CPU seconds per second of the window (Triton's tree, the services, the rest)",
    )
    for column in (
        "replicas",
        "consumers",
        "partitions used",
        "fps verdicts",
        "fps sent→verdict",
        "latency p50/p95 ms",
        "CPU %",
        "cores Triton",
        "services",
        "other",
        "load",
    ):
        table.add_column(column, justify="right")
    for row in pipeline_rows:
        table.add_row(
            str(row.replicas),
            str(row.consumers_per_stage),
            str(row.partitions_reached),
            f"{row.fps_first_to_last_verdict:.2f}",
            f"{row.fps_sent_to_last_verdict:.2f}",
            f"{row.latency_ms_p50:.0f} / {row.latency_ms_p95:.0f}",
            f"{row.cpu.machine_percent:.0f}",
            f"{row.cpu.triton_cores:.2f}",
            f"{row.cpu.services_cores:.2f}",
            f"{row.cpu.other_cores:.2f}",
            f"{row.cpu.load_1m:.1f}",
        )
    console.print(table)
    ceiling = Table(title="Triton alone (the same server, prepared tiles, no pipeline): the ceiling")
    for column in ("frames in flight", "frames", "fps", "frame p50/p95 ms", "CPU %", "cores Triton", "other"):
        ceiling.add_column(column, justify="right")
    for alone in triton_rows:
        ceiling.add_row(
            str(alone.frames_in_flight),
            str(alone.frames),
            f"{alone.fps:.2f}",
            f"{alone.frame_ms_p50:.0f} / {alone.frame_ms_p95:.0f}",
            f"{alone.cpu.machine_percent:.0f}",
            f"{alone.cpu.triton_cores:.2f}",
            f"{alone.cpu.other_cores + alone.cpu.services_cores:.2f}",
        )
    console.print(ceiling)
    best = max(alone.fps for alone in triton_rows)
    for row in pipeline_rows:
        console.print(
            f"{row.replicas} replica(s): the pipeline at {row.fps_first_to_last_verdict / best:.0%} "
            f"of Triton alone's best {best:.2f} frames/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4], help="processes per consumer stage")
    parser.add_argument("--frames", type=int, default=120, help="measured frames per replica count")
    parser.add_argument("--warmup", type=int, default=12, help="frames through the pipeline before each count")
    parser.add_argument("--lines", type=int, default=16, help="line ids the frames are spread over")
    parser.add_argument("--settle-s", type=float, default=10.0, help="for the groups to rebalance after scaling")
    parser.add_argument("--triton-frames", type=int, default=60, help="frames per Triton-alone measurement")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("var/scaleout"))
    args = parser.parse_args()
    if min(args.replicas) < 1 or args.frames < 2:
        parser.error("replicas must be at least 1 and --frames at least 2")

    workers = Settings().service.stream_workers  # consumers per service process
    partitions = max(PARTITIONS, max(args.replicas) * workers)
    with tempfile.TemporaryDirectory(prefix="diffqc-scaleout-") as root:
        pipeline = LocalPipeline(
            Path(root), PROJECT_ROOT / "model-repository", replicas=args.replicas[0], partitions=partitions
        )
        try:
            with console.status("starting the pipeline"):
                products = pipeline.start()
            line = production_line(products, pipeline.image_sizes, args.frames, 0.1, args.seed, "scaleout")
            frames = [request for request, _ in line]
            pipeline_rows = [_pipeline_row(pipeline, replicas, frames, args) for replicas in args.replicas]
            with console.status("Triton alone"):
                tiles = _prepared_tiles(pipeline, frames[: args.triton_frames])
                in_flight = sorted({replicas * workers for replicas in args.replicas})
                triton_rows = [_triton_row(pipeline, tiles, n) for n in in_flight]
        finally:
            with console.status("stopping"):
                pipeline.stop()
    cores = os.cpu_count() or 1
    _tables(pipeline_rows, triton_rows, cores)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "cores": cores,
        "partitions": partitions,
        "lines": args.lines,
        "stream_workers": workers,
        "pipeline": [asdict(row) for row in pipeline_rows],
        "triton_alone": [asdict(row) for row in triton_rows],
    }
    (args.out / "scaleout.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"rows in {args.out / 'scaleout.json'}")


if __name__ == "__main__":
    main()
