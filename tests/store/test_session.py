"""``db.session``: the one way into the database (outages become DependencyUnavailable, a write is one
transaction), and ``UTCDateTime``: every datetime column reads back aware UTC, on PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.store import db
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame, ProductType

T = datetime(2026, 11, 22, 6, 0, 1, 250000, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request, tmp_path):
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"


@pytest.fixture
def engine(url):
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _frame(frame_id: str, captured: datetime) -> Frame:
    return Frame(
        id=frame_id,
        plant_id="P1",
        line_id="L1",
        station_id="S1",
        camera_id="C1",
        product_type="pcb",
        captured_at=captured,
        image_uri="file:///x",
        image_sha256="0" * 64,
        height=8,
        width=8,
        channels=3,
    )


def test_a_database_that_does_not_answer_is_dependency_unavailable():
    engine = make_engine("postgresql+psycopg://127.0.0.1:1/x")
    try:
        for write in (False, True):
            with (
                pytest.raises(DependencyUnavailable, match=r"^database unavailable: OperationalError: .*127\.0\.0\.1"),
                db.session(engine, write=write) as session,
            ):
                session.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def test_database_unavailable_maps_driver_errors_only():
    with (
        pytest.raises(DependencyUnavailable, match="^database unavailable: OperationalError: "),
        db.database_unavailable(),
    ):
        make_engine("postgresql+psycopg://127.0.0.1:1/x").connect()
    with pytest.raises(KeyError), db.database_unavailable():  # anything else passes unchanged
        raise KeyError("x")


def test_a_write_commits_and_its_rows_stay_readable(engine):
    with db.session(engine, write=True) as session:
        row = ProductType(name="pcb", preprocessing={"height": 8}, nominal_ranges={})
        session.add(row)
    assert row.preprocessing == {"height": 8}  # expire_on_commit=False: no reload after the block
    with db.session(engine) as session:
        assert session.get(ProductType, "pcb").preprocessing == {"height": 8}


def test_a_write_that_raises_rolls_back(engine):
    with pytest.raises(RuntimeError, match="boom"), db.session(engine, write=True) as session:
        session.add(ProductType(name="pcb", preprocessing={}, nominal_ranges={}))
        session.flush()
        raise RuntimeError("boom")
    with db.session(engine) as session:
        assert session.scalar(select(func.count()).select_from(ProductType)) == 0


def test_an_integrity_error_is_not_an_outage_and_rolls_back(engine):
    with db.session(engine, write=True) as session:
        session.add(ProductType(name="pcb", preprocessing={}, nominal_ranges={}))
    with pytest.raises(IntegrityError), db.session(engine, write=True) as session:
        session.add(_frame("f-1", T))
        session.flush()
        session.execute(insert(ProductType).values(name="pcb", preprocessing={}, nominal_ranges={}))
    with db.session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Frame)) == 0


def test_a_read_session_writes_nothing(engine):
    with db.session(engine) as session:
        session.add(ProductType(name="pcb", preprocessing={}, nominal_ranges={}))
        session.flush()
    with db.session(engine) as session:
        assert session.get(ProductType, "pcb") is None


def test_datetime_columns_read_back_aware_utc(engine):
    with db.session(engine, write=True) as session:
        session.add(ProductType(name="pcb", preprocessing={}, nominal_ranges={}))
        session.flush()
        session.add_all(
            [
                _frame("aware", T),
                _frame("tokyo", T.astimezone(TOKYO)),
                _frame("naive", (T + timedelta(hours=1)).replace(tzinfo=None)),
            ]
        )  # naive: taken as UTC
    with db.session(engine) as session:
        times = dict(session.execute(select(Frame.id, Frame.captured_at)).all())
        latest = session.scalar(select(func.max(Frame.captured_at)))
        received = session.get(Frame, "aware").received_at  # the column default: now
        earlier = session.scalars(
            select(Frame.id).where(Frame.captured_at < T + timedelta(minutes=1)).order_by(Frame.id)
        ).all()
    assert times == {"aware": T, "tokyo": T, "naive": T + timedelta(hours=1)}
    assert all(t.tzinfo is UTC for t in [*times.values(), latest, received])
    assert latest == T + timedelta(hours=1)
    assert abs(received - datetime.now(UTC)) < timedelta(minutes=5)
    assert earlier == ["aware", "tokyo"]  # a Tokyo time is stored as the same instant, on SQLite too


def test_postgresql_times_read_back_utc_whatever_the_connection_time_zone(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    tokyo = create_engine(engine.url, connect_args={"options": "-c timezone=Asia/Tokyo"})
    try:
        with db.session(tokyo, write=True) as session:
            assert session.scalar(text("SHOW TIME ZONE")) == "Asia/Tokyo"
            session.add(ProductType(name="pcb", preprocessing={}, nominal_ranges={}))
            session.flush()
            session.add(_frame("naive", T.replace(tzinfo=None)))  # naive is UTC, not the session's zone
        with db.session(tokyo) as session:
            captured = session.scalar(select(Frame.captured_at))
            raw = session.scalar(text("SELECT captured_at FROM frames"))
        assert captured == T and captured.tzinfo is UTC
        assert raw == T and raw.utcoffset() == timedelta(hours=9)  # what the driver alone hands back
    finally:
        tokyo.dispose()
        engine.dispose()
