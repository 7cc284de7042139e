"""The ``diffqc`` command line. Each capability registers its commands from its own package."""

from __future__ import annotations

import typer

from diffqc.alerts.cli import alerts_app
from diffqc.bus.dlq_cli import dlq_app
from diffqc.data.cli import app as data_app
from diffqc.demo import demo
from diffqc.demo.bench import pipeline as bench_pipeline
from diffqc.detector.cli import detect, distill, evaluate, onboard, train
from diffqc.infra.cli import app as infra_app
from diffqc.infra.cli import triton_app
from diffqc.serving.bench import triton as bench_triton
from diffqc.serving.cli import export
from diffqc.store.cli import audit_app, keys_app
from diffqc.store.jobs_cli import jobs_app
from diffqc.store.labels_cli import labels_app
from diffqc.store.model_cli import model_app
from diffqc.store.retention_cli import retention

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.command()(demo)
app.command()(train)
app.command()(distill)
app.command()(onboard)
app.command()(evaluate)
app.command()(detect)
app.command()(export)
app.command()(retention)
app.add_typer(infra_app, name="infra", help="Start, stop and check the embedded local infrastructure.")
app.add_typer(data_app, name="data")
app.add_typer(triton_app, name="triton", help="Run the Triton inference server locally.")
app.add_typer(keys_app, name="keys", help="The gateway's API keys: create, list, revoke, hash for a Secret.")
app.add_typer(audit_app, name="audit", help="The audit log: verify its hash chain.")
app.add_typer(labels_app, name="labels", help="Inspection labels: export them as an MVTec-layout data set.")
app.add_typer(model_app, name="model", help="The model registry: list versions, promote, roll back, archive.")
app.add_typer(jobs_app, name="jobs", help="Retraining jobs: start, list, show, cancel.")
app.add_typer(dlq_app, name="dlq", help="Dead letters: list them, replay them once their cause is fixed.")
app.add_typer(alerts_app, name="alerts", help="Alerts the MES refused for good: list them, re-drive them.")
bench_app = typer.Typer(no_args_is_help=True, add_completion=False)
bench_app.command("triton")(bench_triton)
bench_app.command("pipeline")(bench_pipeline)
app.add_typer(bench_app, name="bench", help="Benchmarks that print side-by-side figures.")

if __name__ == "__main__":
    app()
