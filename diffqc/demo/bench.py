"""``diffqc bench pipeline``: the whole pipeline vs the bare detector, side by side in one run.

The same synthetic line (three product types) goes
1. through the bare detector, in this process, one frame at a time (decode + ``Detector.predict``):
   the model's own frames/s and per-frame time;
2. through the pipeline as fast as the camera can send (one ``Ingest`` stream), timed from the first
   frame sent to the last inspection row: the platform's sustained frames/s;
3. through the pipeline one frame at a time (``IngestOne``, then wait for its verdict), so no frame
   queues behind another: the inspection's frame -> verdict latency minus the bare model time of the
   same frame is what the platform adds (transport, storage, preprocessing, scoring, heatmap).
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlalchemy.orm import Session

from diffqc.demo.line import production_line
from diffqc.demo.stream import ingestion_channel, wait_for_inspections
from diffqc.extras import require_extra
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.services import PROJECT_ROOT
from diffqc.preprocess.normalize import decode_image
from diffqc.serving.repository import MODEL_NAME
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection
from diffqc.v1 import ingestion_pb2_grpc

console = Console()


def _bare_detector(pipeline: LocalPipeline, requests) -> dict[str, float]:
    """frame id -> seconds the in-process detector takes for it (decode + predict, batch of one)."""
    from diffqc.detector.detector import Detector  # torch: the detector extra

    artifacts = pipeline.model_repository / MODEL_NAME / pipeline.newest_version() / "artifacts"
    detectors = {}
    for artifact in sorted(artifacts.iterdir()):
        detector = Detector.load(artifact)
        detectors.update(dict.fromkeys(detector.product_names, detector))

    def run(request) -> None:
        product = request.frame.product_type
        image = decode_image(request.image_data, request.frame.frame_id)
        detectors[product].predict(image.transpose(2, 0, 1)[None], product)

    for product in detectors:  # warm-up: a model's first call allocates what later calls reuse
        run(next(r for r in requests if r.frame.product_type == product))
    seconds = {}
    for request in track(requests, description="bare detector", console=console):
        started = time.perf_counter()
        run(request)
        seconds[request.frame.frame_id] = time.perf_counter() - started
    return seconds


def _stream(pipeline: LocalPipeline, requests) -> float:
    """Seconds from the first frame sent to the last verdict stored, for one burst of frames."""
    with ingestion_channel(pipeline.address("ingestion"), pipeline.settings.grpc) as channel:
        started = time.perf_counter()
        acks = list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(iter(requests), timeout=600))
    rows = wait_for_inspections(pipeline.db_url, [a.frame_id for a in acks], 600, console, poll_s=0.05)
    if len(rows) < len(requests):
        raise RuntimeError(f"only {len(rows)} of {len(requests)} frames were inspected")
    return time.perf_counter() - started


def _one_at_a_time(pipeline: LocalPipeline, requests) -> dict[str, float]:
    """frame id -> the inspection's frame -> verdict latency (ms) with nothing queued ahead of it."""
    engine = make_engine(pipeline.db_url)
    latencies = {}
    with ingestion_channel(pipeline.address("ingestion"), pipeline.settings.grpc) as channel:
        stub = ingestion_pb2_grpc.IngestionServiceStub(channel)
        for request in track(requests, description="one frame at a time", console=console):
            stub.IngestOne(request, timeout=60)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with Session(engine) as session:
                    row = session.query(Inspection).filter_by(frame_id=request.frame.frame_id).one_or_none()
                if row is not None:
                    latencies[request.frame.frame_id] = row.latency_ms
                    break
                time.sleep(0.02)
    engine.dispose()
    return latencies


def pipeline(
    frames: Annotated[int, typer.Option(min=10, help="Frames of the sustained-throughput burst")] = 90,
    single: Annotated[int, typer.Option(min=5, help="Frames sent one at a time for the added latency")] = 30,
    repo: Annotated[Path, typer.Option(help="Triton model repository to serve")] = PROJECT_ROOT / "model-repository",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic line")] = 1,
    database_url: Annotated[
        str | None, typer.Option(help="Metadata database (default: a SQLite file, as make run)")
    ] = None,
) -> None:
    """Sustained frames/s of the whole pipeline vs the bare detector, and the latency the platform adds."""
    require_extra("detector", "diffqc bench pipeline")  # the bare detector runs in this process
    with tempfile.TemporaryDirectory(prefix="diffqc-bench-") as root:
        line = LocalPipeline(Path(root), repo, database_url=database_url)
        try:
            with console.status("starting the pipeline"):
                products = line.start()
            sizes = line.image_sizes
            run = uuid.uuid4().hex[:6]
            burst = [r for r, _ in production_line(products, sizes, frames, 0.1, seed, f"burst-{run}")]
            singles = [r for r, _ in production_line(products, sizes, single, 0.1, seed + 1, f"single-{run}")]
            model_s = _bare_detector(line, burst + singles)
            _stream(line, singles[:3])  # warm-up: Triton's first call of each model, consumer groups joined
            burst_s = _stream(line, burst)
            latency_ms = _one_at_a_time(line, singles[3:])
        finally:
            with console.status("stopping"):
                line.stop()
    bare_fps = len(burst) / sum(model_s[r.frame.frame_id] for r in burst)
    pipeline_fps = len(burst) / burst_s
    added = np.array([latency_ms[fid] - 1000 * model_s[fid] for fid in latency_ms])
    model_ms = 1000 * np.array([model_s[fid] for fid in latency_ms])
    total_ms = np.array(list(latency_ms.values()))

    store = make_engine(line.db_url).dialect.name
    table = Table(
        title=f"pipeline vs bare detector: {', '.join(products)}; {len(burst)} frames burst, "
        f"{len(latency_ms)} one at a time; metadata in {store}"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("bare detector frames/s (in-process, one at a time)", f"{bare_fps:.2f}", "")
    table.add_row("pipeline frames/s (sustained burst)", f"{pipeline_fps:.2f}", "")
    table.add_row("pipeline / bare detector", f"{pipeline_fps / bare_fps:.2f}", ">= 0.85")
    for name, values in (("model time", model_ms), ("frame -> verdict", total_ms), ("added by the platform", added)):
        table.add_row(
            f"{name} p50 / p95 ms",
            f"{np.percentile(values, 50):.0f} / {np.percentile(values, 95):.0f}",
            "<= 100 (p95)" if name.startswith("added") else "",
        )
    console.print(table)
