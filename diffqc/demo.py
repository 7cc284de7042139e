"""``diffqc demo`` (``make run``): the whole inspection pipeline on the embedded default.

It starts the local servers (Kafka-protocol broker, time-series store, Triton with the shipped
model repository) and the four services as separate processes, streams synthetic camera frames
of good and defective parts through ingestion, waits until each frame is one inspection row,
prints the verdicts, writes the heatmaps and a score chart, and stops everything again.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.data.synth import get_product, render_sample
from diffqc.infra.errors import InfraError
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.services import PROJECT_ROOT
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection, ProductType
from diffqc.v1 import ingestion_pb2, ingestion_pb2_grpc
from diffqc.v1.frame_pb2 import Frame

console = Console()
LINES = ("line-1", "line-2", "line-3")


def _png(image: np.ndarray) -> bytes:
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _frames(product: str, size: tuple[int, int], n_good: int, n_defect: int, seed: int):
    """(request, truth) pairs: good parts and every defect type in turn, in a shuffled order."""
    defects = list(get_product(product).defects)
    plan = [None] * n_good + [defects[i % len(defects)] for i in range(n_defect)]
    order = np.random.default_rng(seed).permutation(len(plan))
    capture = Timestamp()
    for n, i in enumerate(order):
        rendered = render_sample(product, "demo", int(i), plan[i], size=size, seed=seed)
        capture.FromDatetime(datetime.now(UTC))
        frame = Frame(frame_id=f"demo-{uuid.uuid4().hex[:8]}", plant_id="plant-1", line_id=LINES[n % len(LINES)],
                      station_id="station-1", camera_id=f"cam-{n % len(LINES) + 1}", product_type=product,
                      work_order="WO-1001", lot=f"LOT-{n // 10 + 1}", capture_time=capture,
                      process_parameters={"line_speed_m_min": 12.0})
        yield ingestion_pb2.IngestRequest(frame=frame, image_data=_png(rendered.image)), plan[i] or "good"


def _wait_for_inspections(url: str, frame_ids: list[str], timeout_s: float) -> dict[str, Inspection]:
    engine = make_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        with console.status("waiting for the inspections") as status:
            while True:
                with Session(engine) as session:
                    rows = {r.frame_id: r for r in session.scalars(
                        select(Inspection).where(Inspection.frame_id.in_(frame_ids)))}
                status.update(f"inspections: {len(rows)}/{len(frame_ids)}")
                if len(rows) == len(frame_ids) or time.monotonic() > deadline:
                    return rows
                time.sleep(0.5)
    finally:
        engine.dispose()


def _chart(rows: list[tuple[str, str, Inspection]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for truth_good, colour, label in ((True, "tab:green", "good part"), (False, "tab:red", "defective part")):
        xs = [i for i, (_, truth, _) in enumerate(rows) if (truth == "good") == truth_good]
        ax.scatter(xs, [rows[i][2].score for i in xs], c=colour, label=label)
    ax.axhline(rows[0][2].threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("frame (arrival order)")
    ax.set_ylabel("anomaly score")
    ax.set_title("diffqc demo: anomaly score per frame")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def demo(
    good: int = typer.Option(12, help="Good parts to send"),
    defective: int = typer.Option(8, help="Defective parts to send"),
    out: Path = typer.Option(Path("var/demo"), help="Where heatmaps and the score chart go"),
    repo: Path = typer.Option(PROJECT_ROOT / "model-repository", help="Triton model repository to serve"),
    seed: int = typer.Option(0, help="Seed of the synthetic parts (the shipped model was trained on seed 0)"),
    summary: Path | None = typer.Option(None, help="Also write the summary as JSON to this file"),
) -> None:
    """Run the whole inspection pipeline locally on synthetic parts and show the verdicts."""
    console.print("[bold]diffqc demo[/bold]: ingestion -> preprocessing -> inference (Triton) -> scoring, "
                  "as separate processes over Kafka, on this machine")
    root = Path(tempfile.mkdtemp(prefix="diffqc-demo-"))
    pipeline = LocalPipeline(root, repo)
    try:
        with console.status("starting the broker, the time-series store, Triton and the four services"):
            started = time.monotonic()
            products = pipeline.start()
        console.print(f"pipeline up in {time.monotonic() - started:.0f} s; serving product type(s) {products}")
        product = products[0]
        engine = make_engine(pipeline.database_url)
        with Session(engine) as session:
            spec = session.get(ProductType, product).preprocessing
        engine.dispose()
        pairs = list(_frames(product, (spec["height"], spec["width"]), good, defective, seed))
        truth = {request.frame.frame_id: label for request, label in pairs}
        lines = {request.frame.frame_id: request.frame.line_id for request, _ in pairs}
        with grpc.insecure_channel(pipeline.address("ingestion"), options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
            acks = list(ingestion_pb2_grpc.IngestionServiceStub(channel).Ingest(
                iter([r for r, _ in pairs]), timeout=120))
        accepted = [a.frame_id for a in acks if a.status == ingestion_pb2.INGEST_STATUS_ACCEPTED]
        console.print(f"ingested {len(accepted)}/{len(pairs)} frames on {len(LINES)} lines")
        inspections = _wait_for_inspections(pipeline.database_url, accepted, timeout_s=300)
        figures = _report(inspections, truth, lines, pipeline, out)
        figures["frames_in"] = len(accepted)
        if summary:
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps(figures, indent=2) + "\n")
        if len(inspections) < len(accepted):
            console.print(f"[red]only {len(inspections)} of {len(accepted)} frames were inspected[/red]")
            raise typer.Exit(1)
    except InfraError as exc:
        console.print(f"[red]could not start the pipeline:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        with console.status("stopping"):
            pipeline.stop()
        shutil.rmtree(root, ignore_errors=True)
        console.print("stopped every server and service")


def _report(inspections: dict[str, Inspection], truth: dict[str, str], lines: dict[str, str],
            pipeline: LocalPipeline, out: Path) -> dict:
    """Print the verdicts, write heatmaps and the chart; return the summary figures."""
    out.mkdir(parents=True, exist_ok=True)
    blobs = FileBlobStore(pipeline.root / "blobs")
    table = Table("frame", "line", "part", "verdict", "score", "threshold", "regions", "latency ms")
    rows = sorted(((fid, truth[fid], ins) for fid, ins in inspections.items()), key=lambda r: r[2].inspected_at)
    for frame_id, part, ins in rows:
        verdict = ins.verdict.value
        right = (verdict == "defect") == (part != "good")
        table.add_row(frame_id, lines[frame_id], part, f"[{'green' if right else 'red'}]{verdict}",
                      f"{ins.score:.2f}", f"{ins.threshold:.2f}", str(len(ins.regions)), f"{ins.latency_ms:.0f}")
        if ins.heatmap_uri:
            (out / f"{frame_id}-{part}-{verdict}.png").write_bytes(blobs.get(ins.heatmap_uri))
    console.print(table)
    caught = sum(1 for _, p, i in rows if p != "good" and i.verdict.value == "defect")
    alarms = sum(1 for _, p, i in rows if p == "good" and i.verdict.value == "defect")
    n_defective = sum(1 for _, p, _ in rows if p != "good")
    latencies = [i.latency_ms for _, _, i in rows]
    console.print(f"defective parts caught: {caught}/{n_defective}; "
                  f"false alarms: {alarms}/{len(rows) - n_defective}")
    if rows:
        _chart(rows, out / "scores.png")
        console.print(f"frame -> verdict latency: p50 {np.percentile(latencies, 50):.0f} ms, "
                      f"p95 {np.percentile(latencies, 95):.0f} ms (includes queueing behind earlier frames)")
    console.print(f"heatmaps and the score chart (scores.png) are in {out.resolve()}")
    return {
        "frames_scored": len(rows),
        "defects_found": caught + alarms,
        "recall": caught / n_defective if n_defective else None,
        "fpr": alarms / (len(rows) - n_defective) if len(rows) > n_defective else None,
        "latency_ms_p50": float(np.percentile(latencies, 50)) if rows else None,
        "latency_ms_p95": float(np.percentile(latencies, 95)) if rows else None,
    }
