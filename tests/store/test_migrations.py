"""The Alembic migrations build the schema the models describe, on PostgreSQL and SQLite."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from diffqc.store.engine import make_engine
from diffqc.store.migrate import pending_model_changes, upgrade
from diffqc.store.models import Frame, Inspection, ProductType, Verdict


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_migrations_match_the_models_and_are_idempotent(engine):
    upgrade(engine)
    upgrade(engine)  # every service runs it at start; the second run must change nothing
    assert pending_model_changes(engine) == []


def test_an_inspection_round_trips(engine):
    upgrade(engine)
    with Session(engine) as session, session.begin():
        session.add(ProductType(name="pcb", preprocessing={"height": 256, "width": 256}, nominal_ranges={}))
        session.flush()
        session.add(
            Frame(
                id="f-1",
                plant_id="p",
                line_id="L1",
                station_id="s",
                camera_id="c",
                product_type="pcb",
                captured_at=datetime(2026, 1, 1, tzinfo=UTC),
                image_uri="file:///x",
                image_sha256="0" * 64,
                height=256,
                width=256,
                channels=3,
            )
        )
        session.flush()
        session.add(
            Inspection(
                id="i-1",
                frame_id="f-1",
                model_version="3",
                component_scores={"pixel": 0.5},
                score=1.2,
                threshold=1.0,
                verdict=Verdict.DEFECT,
                latency_ms=12.5,
                regions=[{"x": 1, "y": 2, "width": 3, "height": 4, "area_px": 9, "peak_score": 2.0}],
            )
        )
    with Session(engine) as session:
        inspection = session.get(Inspection, "i-1")
        assert inspection.verdict is Verdict.DEFECT
        assert inspection.regions[0]["area_px"] == 9


def test_replicas_that_start_together_migrate_one_after_the_other(postgres_url):
    """Four services starting at once on an empty PostgreSQL database: without the advisory lock they
    race to create the same tables and all but one fail; with it each finds the schema current."""
    engines = [make_engine(postgres_url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(engines))

    def migrate(engine) -> None:
        start.wait()
        try:
            upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert pending_model_changes(engines[0]) == []
    finally:
        for engine in engines:
            engine.dispose()
