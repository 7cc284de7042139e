"""Scoring: process deviation, fusion, regions in frame pixels, the idempotent inspection row and
the score point, against real PostgreSQL/SQLite and a real InfluxDB-protocol store."""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.core.artifact import artifact_registration
from diffqc.core.components import fuse_components
from diffqc.core.process import process_deviation, with_process
from diffqc.infra.timeseries import export_series
from diffqc.preprocess import Letterbox
from diffqc.scoring import (
    LineProtocolFileSink,
    Scorer,
    ScoringError,
    content_regions,
    map_geometry,
    to_original,
)
from diffqc.scoring.points import point_of
from diffqc.scoring.sink import InfluxScoreSink
from diffqc.settings import InfluxSettings, ScoringSettings
from diffqc.store.blobs import FileBlobStore, put_array
from diffqc.store.engine import make_engine
from diffqc.store.inspections import active_model_version, record_inspection, register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame, Inspection, ModelVersion, ProductType, Verdict
from diffqc.v1.common_pb2 import ModelRef, Shape
from diffqc.v1.frame_pb2 import Frame as FrameMessage
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_PASS
from tests.helpers.models import TINY_PRODUCT

RANGES = {"oven_temp_c": [230.0, 250.0], "line_speed_m_min": [1.0, 2.0]}


# -- process deviation and fusion ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"oven_temp_c": 240.0}, 0.0),  # inside
        ({"oven_temp_c": 250.0, "line_speed_m_min": 1.0}, 0.0),  # on the bounds
        ({"oven_temp_c": 260.0}, 0.5),  # 10 above a 20-wide range
        ({"oven_temp_c": 200.0}, 1.5),  # 30 below
        ({"oven_temp_c": 255.0, "line_speed_m_min": 4.0}, 2.0),  # the largest: 2 widths above
        ({"oven_temp_c": 240.0, "humidity_pct": 99.0}, 0.0),  # unknown parameter ignored
    ],
)
def test_process_deviation_in_range_widths(params, expected):
    deviation = process_deviation(params, RANGES, "pcb")
    assert deviation.value == pytest.approx(expected)
    assert deviation.ignored == (("humidity_pct",) if "humidity_pct" in params else ())


def test_process_deviation_without_known_parameters_is_not_measured(caplog):
    assert process_deviation({}, RANGES).value is None
    bad = process_deviation({"pressure": 3.0, "oven_temp_c": float("nan")}, {"pressure": [5, 5], **RANGES}, "pcb")
    assert bad.value is None and bad.ignored == ("oven_temp_c", "pressure")
    assert "malformed nominal range" in caplog.text


def test_fusion_is_the_detectors_weighted_mean_on_the_scale_its_threshold_was_calibrated_on():
    weights = {"pixel": 0.4, "structural": 0.3, "concentration": 0.2, "process": 0.1}
    z = np.array([[1.7, 0.4, -0.3, 2.5]])
    _, image_only = fuse_components(z.copy(), np.zeros(4), np.ones(4), weights)
    all_four = 0.4 * 1.7 + 0.3 * 0.4 + 0.2 * -0.3 + 0.1 * 2.5  # the weighted mean over all four components
    assert with_process(image_only[0], 2.5) == pytest.approx(all_four / 0.9)
    assert with_process(image_only[0], 2.5) == pytest.approx(image_only[0] + 2.5 / 9)
    assert with_process(1.25, 0.0) == with_process(1.25, None) == 1.25  # in range or unmeasured: unchanged


# -- regions ----------------------------------------------------------------------------------


def test_regions_are_found_in_the_content_area_and_reported_in_original_pixels():
    # A 300x200 frame normalized to 128x128: scale 128/300, content 128x85 from row 21.
    box = map_geometry((128, 128), (200, 300))
    assert (box.new_w, box.new_h, box.pad_left, box.pad_top) == (128, 85, 0, 21)
    amap = np.zeros((128, 128), dtype=np.float32)
    amap[21 + 10 : 21 + 20, 40:60] = 5.0  # a 20x10 region above the level 3
    amap[21 + 15, 50] = 7.0
    amap[21 + 60 : 21 + 63, 100:103] = 4.0  # a weaker 3x3 one
    amap[21 + 70, 10:12] = 3.5  # a 2-px speck just above the level: map noise, not a region
    amap[0:21, :] = 9.0  # padding: never a region
    regions = to_original(content_regions(amap, box, level=3.0), box)
    assert len(regions) == 2
    big, small = regions
    sx, sy = 128 / 300, 85 / 200
    assert (big["x"], big["y"]) == (int(40 / sx), int(10 / sy))  # floor(93.75), floor(23.5)
    assert (big["x"] + big["width"], big["y"] + big["height"]) == (141, 48)  # ceil(140.6), ceil(47.1)
    assert big["area_px"] == round(200 / (sx * sy)) and big["peak_score"] == 7.0
    assert small["peak_score"] == 4.0 and small["area_px"] == round(9 / (sx * sy))


def test_a_map_of_unknown_frame_shape_is_taken_as_the_frame():
    assert map_geometry((64, 80), None) == Letterbox.fit(64, 80, 64, 80)


# -- the inspection row and model versions -------------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _seed(engine, nominal=RANGES, threshold=0.5, metrics=None):
    with Session(engine) as session, session.begin():
        session.add(
            ProductType(name="pcb", preprocessing={"height": 128, "width": 128, "channels": 3}, nominal_ranges=nominal)
        )
        session.flush()
        register_model_version(
            session,
            "pcb",
            "1",
            "file:///models/pcb/1",
            threshold,
            metrics if metrics is not None else {"region_level": 3.0},
        )


def _add_frame(engine, frame_id):
    with Session(engine) as session, session.begin():
        session.add(
            Frame(
                id=frame_id,
                plant_id="P",
                line_id="L1",
                station_id="S",
                camera_id="C",
                product_type="pcb",
                captured_at=datetime.now(UTC),
                image_uri="file:///x",
                image_sha256="0" * 64,
                height=8,
                width=8,
                channels=3,
            )
        )


def test_the_same_frame_recorded_twice_leaves_one_row_and_reports_the_first(engine):
    _seed(engine)
    _add_frame(engine, "f-1")
    values = dict(
        id="i-1",
        frame_id="f-1",
        model_version="1",
        component_scores={"pixel": 1.0},
        score=0.9,
        threshold=0.5,
        verdict=Verdict.DEFECT,
        latency_ms=12.0,
        regions=[{"x": 1, "y": 2, "width": 3, "height": 4, "area_px": 9, "peak_score": 4.5}],
    )
    with Session(engine) as session, session.begin():
        first, created = record_inspection(session, **values)
    assert created
    with Session(engine) as session, session.begin():  # a redelivery, scored differently meanwhile
        again, created_again = record_inspection(
            session, **{**values, "id": "i-2", "score": 0.1, "verdict": Verdict.PASS}
        )
        assert not created_again
        assert (again.id, again.score, again.verdict) == ("i-1", 0.9, Verdict.DEFECT)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Inspection)) == 1


def test_registering_a_version_activates_it_alone(engine):
    _seed(engine)
    with Session(engine) as session, session.begin():
        register_model_version(session, "pcb", "2", "file:///models/pcb/2", 0.7, {"region_level": 2.5})
    with Session(engine) as session:
        assert active_model_version(session, "pcb").version == "2"
        assert session.scalar(select(func.count()).where(ModelVersion.active.is_(True))) == 1
    with Session(engine) as session, session.begin():  # roll back to 1
        register_model_version(session, "pcb", "1", "file:///models/pcb/1", 0.5, {"region_level": 3.0})
    with Session(engine) as session:
        active = active_model_version(session, "pcb")
        assert (active.version, active.threshold) == ("1", 0.5)
        assert active_model_version(session, "bolts") is None


def test_an_artifacts_threshold_and_region_level_register_directly(tiny_artifact, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/qc.db")
    upgrade(engine)
    registration = artifact_registration(tiny_artifact[0], TINY_PRODUCT)
    with Session(engine) as session, session.begin():
        session.add(ProductType(name=TINY_PRODUCT))
        session.flush()
        register_model_version(session, TINY_PRODUCT, "1", tiny_artifact[0].as_uri(), **registration)
    with Session(engine) as session:
        row = active_model_version(session, TINY_PRODUCT)
        assert row.metrics["region_level"] > 0 and row.threshold == registration["threshold"]
    with pytest.raises(ValueError, match="no calibration of product 'bolts'"):
        artifact_registration(tiny_artifact[0], "bolts")


# -- the whole scoring path ---------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _result(blobs, line, params, score, amap=None, product="pcb") -> InferenceResult:
    capture = Timestamp()
    capture.FromDatetime(datetime(2026, 3, 1, tzinfo=UTC) + timedelta(milliseconds=int(uuid.uuid4().int % 10**9)))
    ingest = Timestamp()
    ingest.FromDatetime(datetime.now(UTC) - timedelta(milliseconds=40))
    image = np.full((200, 300, 3), 90, dtype=np.uint8)
    frame = FrameMessage(
        frame_id=f"f-{uuid.uuid4().hex[:8]}",
        plant_id="P1",
        line_id=line,
        station_id="S1",
        camera_id="C1",
        product_type=product,
        capture_time=capture,
        ingest_time=ingest,
        process_parameters=params,
        image=blobs.put(_png(image), "image/png"),
        shape=Shape(height=200, width=300, channels=3),
    )
    if amap is None:
        amap = np.zeros((128, 128), dtype=np.float32)
    result = InferenceResult(
        frame=frame,
        score=score,
        anomaly_map=put_array(blobs, amap),
        component_scores={"pixel": 1.5, "structural": 0.5, "concentration": 0.25, "process": 0},
        model=ModelRef(name="diffqc_detector", version="1"),
    )
    result.latency.FromMilliseconds(20)
    return result


def _series(url, field, line, count=1, timeout_s=10.0):
    deadline, series = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        series = [s for s in export_series(url, "anomaly_score", field) if s["metric"].get("line") == line]
        if len(series) >= count:
            break
        time.sleep(0.1)
    return series


@pytest.fixture
def scorer(postgres_url, timeseries_url, tmp_path):
    engine = make_engine(postgres_url)
    upgrade(engine)
    _seed(engine)
    yield Scorer(ScoringSettings(), engine, FileBlobStore(tmp_path / "blobs"))
    engine.dispose()


@pytest.fixture
def sink(timeseries_url):
    sink = InfluxScoreSink(InfluxSettings(url=timeseries_url, token="test"))
    yield sink
    sink.close()


def test_a_defect_is_recorded_once_with_regions_heatmap_and_a_score_point(scorer, sink, timeseries_url):
    line = f"L-{uuid.uuid4().hex[:6]}"
    amap = np.zeros((128, 128), dtype=np.float32)
    amap[21 + 10 : 21 + 20, 40:60] = 5.0
    result = _result(scorer.blobs, line, {"oven_temp_c": 260.0, "humidity_pct": 40.0}, 0.48, amap)
    verdict = scorer.score(result)
    sink.write(point_of(verdict))

    assert verdict.verdict == VERDICT_DEFECT  # 0.48 + 0.5 / 9 = 0.536 > 0.5: the oven tipped it
    assert verdict.score == pytest.approx(0.48 + 0.5 / 9)
    assert verdict.threshold == 0.5 and verdict.model.version == "1"
    assert dict(verdict.component_scores) == pytest.approx(
        {"pixel": 1.5, "structural": 0.5, "concentration": 0.25, "process": 0.5}
    )
    [region] = verdict.regions
    assert (region.bbox.x, region.bbox.y, region.bbox.width, region.bbox.height) == (93, 23, 48, 25)
    assert region.peak_score == 5.0
    assert 0 < verdict.latency.ToMilliseconds() < 10_000
    heatmap = Image.open(io.BytesIO(scorer.blobs.get(verdict.heatmap)))
    assert heatmap.size == (128, 85) and verdict.heatmap.media_type == "image/png"

    again = scorer.score(result)  # redelivered
    sink.write(point_of(again))
    assert again == verdict
    with Session(scorer.engine) as session:
        rows = session.scalars(select(Inspection).where(Inspection.frame_id == result.frame.frame_id)).all()
        assert len(rows) == 1 and rows[0].id == verdict.inspection_id and rows[0].verdict is Verdict.DEFECT
        assert rows[0].regions[0]["area_px"] == region.area_px

    capture_ms = result.frame.capture_time.ToMilliseconds()
    [score] = _series(timeseries_url, "score", line)
    assert {k: score["metric"][k] for k in ("plant", "line", "station", "camera", "product_type", "model_version")} == {
        "plant": "P1",
        "line": line,
        "station": "S1",
        "camera": "C1",
        "product_type": "pcb",
        "model_version": "1",
    }
    assert set(score["timestamps"]) == {capture_ms}  # the redelivery wrote the same point
    assert score["values"][0] == pytest.approx(verdict.score)
    for field, expected in [
        ("verdict", 1),
        ("threshold", 0.5),
        ("pixel", 1.5),
        ("process", 0.5),
        ("latency_ms", verdict.latency.ToNanoseconds() / 1e6),
    ]:
        [series] = _series(timeseries_url, field, line)
        assert series["timestamps"][0] == capture_ms
        assert series["values"][0] == pytest.approx(expected, abs=1e-3), field


def test_in_range_parameters_leave_the_detectors_verdict_and_a_pass_has_no_regions(scorer):
    amap = np.zeros((128, 128), dtype=np.float32)
    amap[40:50, 40:50] = 5.0  # above the region level, but the part passes
    result = _result(scorer.blobs, "L-pass", {"oven_temp_c": 240.0}, 0.4999, amap)
    verdict = scorer.score(result)
    assert verdict.verdict == VERDICT_PASS and verdict.score == pytest.approx(0.4999)
    assert list(verdict.regions) == []


def test_results_that_cannot_be_scored_say_why(scorer):
    with pytest.raises(ScoringError, match="unknown product type 'bolts'"):
        scorer.score(_result(scorer.blobs, "L1", {}, 0.1, product="bolts"))
    missing = _result(scorer.blobs, "L1", {}, 0.1)
    missing.anomaly_map.uri = missing.anomaly_map.uri[:-6] + "000000"
    with pytest.raises(ScoringError, match="anomaly map missing"):
        scorer.score(missing)
    with pytest.raises(ScoringError, match="the detector's score is nan"):
        scorer.score(_result(scorer.blobs, "L1", {}, float("nan")))
    with Session(scorer.engine) as session, session.begin():
        session.add(ProductType(name="new", nominal_ranges={}))
    with pytest.raises(ScoringError, match="no model version is registered for product type 'new'"):
        scorer.score(_result(scorer.blobs, "L1", {}, 0.1, product="new"))


def test_the_embedded_default_scores_into_sqlite_and_a_line_protocol_file(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/qc.db")
    upgrade(engine)
    _seed(engine)
    path = tmp_path / "scores" / "anomaly_score.lp"
    scorer = Scorer(ScoringSettings(), engine, FileBlobStore(tmp_path / "blobs"))
    sink = LineProtocolFileSink(path)
    result = _result(scorer.blobs, "L-file", {}, 0.2)
    verdict = scorer.score(result)
    again = scorer.score(result)
    assert again == verdict  # the stored row read back from SQLite reports the same
    for each in (verdict, again):
        sink.write(point_of(each))
    assert verdict.decided_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC) - timedelta(minutes=1)
    first, again = path.read_text().splitlines()
    assert first == again  # the same point, written twice
    line = first
    assert line.startswith("anomaly_score,camera=C1,line=L-file,model_version=1,plant=P1,product_type=pcb,station=S1 ")
    assert "verdict=0i" in line and line.endswith(str(result.frame.capture_time.ToNanoseconds()))
    engine.dispose()
