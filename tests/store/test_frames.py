"""Frame rows, equipment and product types on PostgreSQL and SQLite: idempotent by key, round trips."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.store.engine import make_engine
from diffqc.store.frames import ensure_equipment, frame_from_row, get_frame, record_frame
from diffqc.store.migrate import upgrade
from diffqc.store.models import Camera, Line, Plant, ProductType, Station
from diffqc.store.models import Frame as FrameRow
from diffqc.store.products import ProductSpecError, find_product_type, list_products, register_product
from diffqc.v1.common_pb2 import PRIORITY_HIGH, BlobRef, Shape
from diffqc.v1.frame_pb2 import Frame

SPEC = {"height": 64, "width": 64, "channels": 3}


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, "pcb", SPEC, {"oven_temp_c": [230, 250]})
    yield engine
    engine.dispose()


def _frame(frame_id="f-1", **fields) -> Frame:
    values = dict(
        plant_id="P1",
        line_id="L1",
        station_id="S1",
        camera_id="C1",
        product_type="pcb",
        work_order="WO-7",
        lot="LOT-3",
        process_parameters={"oven_temp_c": 241.5},
        priority=PRIORITY_HIGH,
        image=BlobRef(
            uri="file:///blobs/sha256/ab/" + "ab" * 32, sha256="ab" * 32, media_type="image/png", size_bytes=1234
        ),
        shape=Shape(height=48, width=64, channels=3),
    )
    frame = Frame(frame_id=frame_id, **{**values, **fields})
    frame.capture_time.FromDatetime(datetime(2026, 11, 22, 6, 0, 1, 250000, tzinfo=UTC))
    frame.ingest_time.FromDatetime(datetime(2026, 11, 22, 6, 0, 2, tzinfo=UTC))
    return frame


def test_a_frame_is_recorded_once_and_round_trips(engine):
    frame = _frame()
    with Session(engine) as session, session.begin():
        assert record_frame(session, frame) is True
    changed = _frame(line_id="L2", camera_id="C9")  # a re-send must not overwrite what was stored
    with Session(engine) as session, session.begin():
        assert record_frame(session, changed) is False
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(FrameRow)) == 1
        back = frame_from_row(get_frame(session, "f-1"))
    expected = Frame()
    expected.CopyFrom(frame)
    # The schema keeps the image's uri and sha256, not its media type and size.
    expected.image.ClearField("media_type")
    expected.image.ClearField("size_bytes")
    assert back == expected


def test_the_image_reference_argument_wins_and_missing_fields_are_refused(engine):
    ref = BlobRef(uri="file:///elsewhere", sha256="cd" * 32)
    with Session(engine) as session, session.begin():
        assert record_frame(session, _frame("f-2"), ref)
        assert get_frame(session, "f-2").image_uri == "file:///elsewhere"
        no_time = _frame("f-3")
        no_time.ClearField("capture_time")
        with pytest.raises(ValueError, match="has no capture_time"):
            record_frame(session, no_time)
        with pytest.raises(ValueError, match="no stored image"):
            record_frame(session, _frame("f-4"), BlobRef())


def test_on_postgresql_a_concurrent_insert_of_the_same_id_waits_and_reports_the_duplicate(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, "pcb", SPEC, {})
    results: list[bool] = []
    first = Session(engine)
    first.begin()
    assert record_frame(first, _frame("race")) is True  # uncommitted: the row is locked

    def second() -> None:
        with Session(engine) as session, session.begin():
            results.append(record_frame(session, _frame("race")))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)
    assert thread.is_alive(), "the second insert should wait for the first transaction"
    first.commit()
    first.close()
    thread.join(10)
    assert results == [False]
    engine.dispose()


def test_equipment_is_registered_once_and_keeps_its_first_parent(engine):
    with Session(engine) as session, session.begin():
        ensure_equipment(session, "P1", "L1", "S1", "C1")
        ensure_equipment(session, "P1", "L1", "S1", "C1")
        ensure_equipment(session, "P1", "L1", "S2", "C2")
    with Session(engine) as session, session.begin():
        ensure_equipment(session, "P2", "L1", "S1", "C1")  # a contradicting frame changes nothing
    with Session(engine) as session:
        assert [p.id for p in session.scalars(select(Plant).order_by(Plant.id))] == ["P1", "P2"]
        assert session.get(Line, "L1").plant_id == "P1"
        assert {s.id: s.line_id for s in session.scalars(select(Station))} == {"S1": "L1", "S2": "L1"}
        assert {c.id: c.station_id for c in session.scalars(select(Camera))} == {"C1": "S1", "C2": "S2"}


def test_register_product_upserts_and_find_product_type_reads_it(engine):
    with Session(engine) as session:
        product = find_product_type(session, "pcb")
        assert product.preprocessing == SPEC
        assert product.nominal_ranges == {"oven_temp_c": [230.0, 250.0]}
        assert find_product_type(session, "bolts") is None
    tiled = {"height": 512, "width": 512, "channels": 1, "tile": 256, "overlap": 32, "align": "file:///ref.npy"}
    with Session(engine) as session, session.begin():
        updated = register_product(session, "pcb", tiled, {"line_speed": {"min": 1, "max": 2}})
        assert updated.preprocessing == tiled
        register_product(session, "fabric", SPEC)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(ProductType)) == 2
        assert find_product_type(session, "pcb").nominal_ranges == {"line_speed": [1.0, 2.0]}
        assert [p.name for p in list_products(session)] == ["fabric", "pcb"]


@pytest.mark.parametrize(
    ("name", "spec", "ranges", "message"),
    [
        ("", SPEC, {}, "product type name: must not be blank"),
        ("x" * 65, SPEC, {}, "at most 64"),
        ("pcb", {}, {}, "needs at least height, width and channels"),
        ("pcb", [1, 2], {}, "preprocessing spec: must be a mapping"),
        (
            "pcb",
            {**SPEC, "widht": 3},
            {},
            "product type 'pcb': preprocessing spec: widht: Extra inputs are not permitted",
        ),
        ("pcb", {**SPEC, "channels": 2}, {}, "channels: must be 1 .* or 3"),
        ("pcb", {**SPEC, "tile": 64, "overlap": 64}, {}, r"overlap \(64\) must be smaller than tile"),
        ("pcb", {**SPEC, "align": True}, {}, "align: needs a reference image"),
        ("pcb", SPEC, {"t": [5, 1]}, "nominal_ranges: t: must satisfy lo < hi"),
        ("pcb", SPEC, {"t": [1, float("nan")]}, "nominal_ranges: t: must satisfy lo < hi"),
        ("pcb", SPEC, {"t": "hot"}, r"nominal_ranges: t: must be \[lo, hi\]"),
        ("pcb", SPEC, [1, 2], "nominal_ranges: Input should be a valid dictionary"),
    ],
)
def test_a_malformed_product_is_refused_with_the_reason(engine, name, spec, ranges, message):
    with Session(engine) as session, pytest.raises(ProductSpecError, match=message):
        register_product(session, name, spec, ranges)
