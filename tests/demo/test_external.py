"""``diffqc demo --external``: the demo's line runs against servers it did not start (here the test's own
broker, schema registry, time-series store, PostgreSQL and Triton, standing in for a plant's), and its
verdicts and alerts land there."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.contracts.topics import QUALITY_ALERT
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.serving.repository import stage_version
from diffqc.store import db
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection, Verdict
from tests.helpers.kafka import collect

FRAMES = 6


def test_the_demo_runs_against_the_servers_the_settings_name(
    tiny_artifact, tmp_path, kafka_settings, schema_registry_url, timeseries_url, postgres_url
):
    repo = tmp_path / "repo"
    stage_version(tiny_artifact[0], repo)
    grpc_port = free_port()
    triton = triton_server(repo, free_port(), grpc_port, free_port(), tmp_path, tmp_path / "triton.log").start()
    env = {
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DIFFQC_KAFKA_GROUP_PREFIX": f"plant-{uuid.uuid4().hex[:6]}",
        "DIFFQC_REGISTRY_URL": schema_registry_url,
        "DIFFQC_DATABASE_URL": postgres_url,
        "DIFFQC_INFLUX_URL": timeseries_url,
        "DIFFQC_TRITON_GRPC_URL": f"127.0.0.1:{grpc_port}",
    }
    try:
        args = ["demo", "--external", "--repo", str(repo), "--frames", str(FRAMES), "--fps", "0"]
        done = CliRunner().invoke(app, [*args, "--defect-rate", "0.5", "--out", str(tmp_path / "out")], env=env)
    finally:
        triton.stop()
    assert done.exit_code == 0, done.output
    assert "starting the broker" not in done.output and f"InfluxDB API at {timeseries_url}" in done.output
    engine = make_engine(postgres_url)  # the plant's database holds the line's inspections
    with db.session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Inspection)) == FRAMES
        defects = session.scalars(select(Inspection.frame_id).where(Inspection.verdict == Verdict.DEFECT)).all()
    engine.dispose()
    assert defects, "the tiny model flags the half of the parts that are defective, at least one"
    assert set(collect(kafka_settings, QUALITY_ALERT, set(defects), settle_s=0)) == set(
        defects
    )  # on the plant's broker


def test_external_without_the_servers_named_says_which_settings_are_missing(monkeypatch):
    for name in ("DIFFQC_KAFKA_BOOTSTRAP_SERVERS", "DIFFQC_REGISTRY_URL", "DIFFQC_INFLUX_URL"):
        monkeypatch.delenv(name, raising=False)
    done = CliRunner().invoke(app, ["demo", "--external"], env={"DIFFQC_DATABASE_URL": "sqlite://"})
    assert done.exit_code == 2
    assert "set DIFFQC_KAFKA_BOOTSTRAP_SERVERS, DIFFQC_REGISTRY_URL, DIFFQC_INFLUX_URL, DIFFQC_TRITON_GRPC_URL" in (
        " ".join(done.output.split())
    )
