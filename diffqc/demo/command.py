"""``diffqc demo`` (``make run``): the whole inspection pipeline on the embedded default.

It starts the local servers (Kafka-protocol broker, time-series store, Triton with the shipped
model repository) and the four services as separate processes, streams a synthetic production line
(one line per product type the repository serves, about 10% defective parts) through the ingestion
gRPC API, waits until each frame is one inspection row, reports recall and false-positive rate
against the generator's ground truth, writes a score chart and an HTML report with heatmap
overlays, and stops everything again. With ``--serve`` it first keeps the pipeline up and serves the
dashboard on what the line wrote (diffqc.demo.serve) until Ctrl-C. With ``--external`` it starts no
server: the services run against the broker, schema registry, database, InfluxDB and Triton the
DIFFQC_* settings name (``diffqc infra up``, or the plant's own), and the alerts land on that broker.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from diffqc.demo.line import production_line
from diffqc.demo.mes import MesReceiver
from diffqc.demo.report import Outcome, figures, html_report, per_product, score_chart, spc_charts
from diffqc.demo.serve import serve as serve_dashboard
from diffqc.demo.stream import ingest_stream, wait_for_inspections
from diffqc.infra.errors import InfraError
from diffqc.infra.pipeline import LocalPipeline
from diffqc.infra.services import PROJECT_ROOT
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.inspections import score_history

console = Console()


def _wait_for_alerts(mes: MesReceiver, expected: int, timeout_s: float) -> None:
    """Until the bridge has delivered ``expected`` alerts to the MES (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    with console.status("waiting for the bridge to deliver the alerts to the MES"):
        while mes.received() < expected and time.monotonic() < deadline:
            time.sleep(0.2)


def _print_results(outcomes: list[Outcome], summary: dict) -> None:
    table = Table("product", "frames", "defective", "caught", "false alarms", "recall", "FPR", "p50 ms")
    for product, f in per_product(outcomes).items():
        mine = [o for o in outcomes if o.part.product_type == product]
        table.add_row(
            product,
            str(f["frames_scored"]),
            str(f["defective_parts"]),
            str(sum(o.kind == "caught" for o in mine)),
            str(sum(o.kind == "false alarm" for o in mine)),
            "n/a" if f["recall"] is None else f"{f['recall']:.1%}",
            "n/a" if f["fpr"] is None else f"{f['fpr']:.1%}",
            f"{f['latency_ms_p50']:.0f}",
        )
    console.print(table)
    for o in outcomes:
        if o.kind in ("missed", "false alarm"):
            console.print(
                f"  {o.kind}: {o.part.frame_id} ({o.part.product_type}, {o.part.truth}) "
                f"score {o.inspection.score:.2f} vs threshold {o.inspection.threshold:.2f}"
            )
    caught = sum(o.kind == "caught" for o in outcomes)
    alarms = sum(o.kind == "false alarm" for o in outcomes)
    console.print(
        f"defective parts caught: {caught}/{summary['defective_parts']}; "
        f"false alarms: {alarms}/{summary['frames_scored'] - summary['defective_parts']}"
    )
    console.print(
        f"alerts delivered to the MES: {summary['alerts_delivered']} in {summary['alert_deliveries']} "
        f"deliveries; line stops requested: {summary['line_stops']}"
    )
    console.print(
        f"frame -> verdict latency: p50 {summary['latency_ms_p50']:.0f} ms, "
        f"p95 {summary['latency_ms_p95']:.0f} ms (includes queueing behind earlier frames)"
    )


def demo(
    frames: Annotated[int, typer.Option(min=1, help="Camera frames to stream through the pipeline")] = 200,
    defect_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of defective parts")] = 0.1,
    fps: Annotated[
        float, typer.Option(min=0.0, help="Camera frame rate of the whole line (0: send as fast as possible)")
    ] = 2.0,
    out: Annotated[Path, typer.Option(help="Where the report, heatmaps and the score chart go")] = Path("var/demo"),
    repo: Annotated[Path, typer.Option(help="Triton model repository to serve")] = PROJECT_ROOT / "model-repository",
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the parts (placement, lighting, noise, defects); "
            "the designs stay those the shipped models learned"
        ),
    ] = 0,
    summary: Annotated[Path | None, typer.Option(help="Also write the summary as JSON to this file")] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="After the report, keep the pipeline up and serve the dashboard on 127.0.0.1 "
            "(its URL and a viewer API key are printed); Ctrl-C stops everything",
        ),
    ] = False,
    external: Annotated[
        bool,
        typer.Option(
            "--external",
            help="Start no server: use the Kafka, schema registry, database, InfluxDB and Triton that the "
            "DIFFQC_* settings name (the Triton serving --repo)",
        ),
    ] = False,
) -> None:
    """Run the whole inspection pipeline locally on a synthetic production line and report the verdicts."""
    console.print(
        "[bold]diffqc demo[/bold]: ingestion -> preprocessing -> inference (Triton) -> scoring, "
        "as separate processes over Kafka, on this machine"
    )
    with MesReceiver() as mes:  # the stand-in MES the bridge delivers the alerts to
        _run(mes, frames, defect_rate, fps, out, repo, seed, summary, serve, external)


def _run(
    mes: MesReceiver,
    frames: int,
    defect_rate: float,
    fps: float,
    out: Path,
    repo: Path,
    seed: int,
    summary: Path | None,
    serve: bool,
    external: bool,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="diffqc-demo-"))
    try:
        pipeline = LocalPipeline(
            root,
            repo,
            line_protocol_file=out / "scores.lp",
            mes_webhook_url=mes.url,
            line_stop_url=mes.line_stop_url,
            external=external,
        )
    except InfraError as exc:
        shutil.rmtree(root, ignore_errors=True)
        console.print(f"[red]--external:[/red] {exc}")
        raise typer.Exit(2) from None
    starting = "the five services" if external else "the broker, the time-series store, Triton and the five services"
    try:
        with console.status(f"starting {starting}"):
            started = time.monotonic()
            products = pipeline.start()
        console.print(
            f"pipeline up in {time.monotonic() - started:.0f} s; product types {', '.join(products)} "
            f"(shipped models, {repo}); scores go to {pipeline.scores_to}"
        )
        line = production_line(
            products, pipeline.image_sizes, frames, defect_rate, seed, run_id=f"demo-{uuid.uuid4().hex[:6]}"
        )
        accepted, parts = ingest_stream(
            pipeline.address("ingestion"), pipeline.settings.grpc, line, frames, console, fps
        )
        console.print(f"ingested {len(accepted)}/{frames} frames on {len(products)} lines")
        inspections = wait_for_inspections(pipeline.db_url, accepted, 120 + 2 * frames, console)
        outcomes = sorted((Outcome(parts[fid], ins) for fid, ins in inspections.items()), key=lambda o: o.part.frame_id)
        figures_ = {
            "frames_in": len(accepted),
            **figures(outcomes),
            "scores_to": pipeline.scores_to,
            "products": per_product(outcomes),
        }
        _wait_for_alerts(mes, figures_["defects_found"], timeout_s=60)
        figures_.update(
            alerts_delivered=mes.received(), alert_deliveries=mes.deliveries, line_stops=len(mes.line_stops)
        )
        if outcomes:
            _print_results(outcomes, figures_)
            out.mkdir(parents=True, exist_ok=True)
            score_chart(outcomes, out / "scores.png")
            with Session(engine := make_engine(pipeline.db_url)) as session:
                charts = spc_charts(score_history(session), out)
            engine.dispose()
            console.print("SPC signals per line: " + ", ".join(f"{line} {n}" for line, (_, n) in charts.items()))
            report = html_report(outcomes, figures_, FileBlobStore(pipeline.root / "blobs"), out, charts)
            console.print(f"report with heatmap overlays: {report.resolve()}")
        if summary:
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps(figures_, indent=2) + "\n")
        if len(inspections) < len(accepted):
            console.print(f"[red]only {len(inspections)} of {len(accepted)} frames were inspected[/red]")
            raise typer.Exit(1)
        if serve:
            serve_dashboard(pipeline, console)
    except InfraError as exc:
        console.print(f"[red]could not start the pipeline:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        with console.status("stopping"):
            pipeline.stop()
        shutil.rmtree(root, ignore_errors=True)
        console.print("stopped every server and service")
