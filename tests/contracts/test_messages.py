"""Messages of the flow survive the wire (binary and JSON); topics name their messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import json_format

from diffqc.contracts import topics
from diffqc.settings import KafkaSettings
from diffqc.v1 import common_pb2, frame_pb2, inference_pb2, preprocessing_pb2, scoring_pb2


def _frame() -> frame_pb2.Frame:
    frame = frame_pb2.Frame(
        frame_id="5f0c7a52-9d1e-4c55-8a7e-0c2b1f0e9a11",
        plant_id="plant-7",
        line_id="line-3",
        station_id="st-2",
        camera_id="cam-1",
        product_type="solar-cell-mono",
        work_order="WO-2026-0042",
        lot="L-118",
        process_parameters={"oven_temp_c": 241.5, "line_speed_m_min": 12.25},
        image=common_pb2.BlobRef(
            uri="file:///var/diffqc/blobs/sha256/ab/abcd",
            sha256="ab" * 32,
            media_type="image/png",
            size_bytes=1_234_567,
        ),
        shape=common_pb2.Shape(height=3000, width=4096, channels=1),
        priority=common_pb2.PRIORITY_HIGH,
    )
    frame.capture_time.FromDatetime(datetime(2026, 11, 22, 6, 30, 1, 123456, tzinfo=UTC))
    frame.ingest_time.FromDatetime(datetime(2026, 11, 22, 6, 30, 1, 523456, tzinfo=UTC))
    return frame


def test_a_frame_round_trips_through_bytes_and_json():
    frame = _frame()
    decoded = frame_pb2.Frame.FromString(frame.SerializeToString())
    assert decoded == frame
    assert decoded.capture_time.ToDatetime(tzinfo=UTC) == datetime(2026, 11, 22, 6, 30, 1, 123456, tzinfo=UTC)
    assert decoded.ingest_time.ToDatetime() - decoded.capture_time.ToDatetime() == timedelta(milliseconds=400)
    assert dict(decoded.process_parameters) == {"oven_temp_c": 241.5, "line_speed_m_min": 12.25}
    assert (decoded.shape.width, decoded.shape.height, decoded.image.media_type) == (4096, 3000, "image/png")
    assert decoded.priority == common_pb2.PRIORITY_HIGH

    # The REST gateway speaks JSON: RFC 3339 times, lowerCamelCase names, enum names.
    as_json = json_format.MessageToDict(frame)
    assert as_json["captureTime"] == "2026-11-22T06:30:01.123456Z" and as_json["priority"] == "PRIORITY_HIGH"
    assert json_format.ParseDict(as_json, frame_pb2.Frame()) == frame


def test_the_frame_rides_along_every_stage_and_topics_decode_their_message():
    frame = _frame()
    tile = preprocessing_pb2.Tile(index=0, width=256, height=256)
    prepared = preprocessing_pb2.PreparedFrame(frame=frame, tiles=[tile])
    result = inference_pb2.InferenceResult(frame=frame, component_scores={"pixel": 0.4, "structural": 0.2})
    verdict = scoring_pb2.InspectionVerdict(
        inspection_id="i-1",
        frame=frame,
        verdict=scoring_pb2.VERDICT_DEFECT,
        score=0.81,
        threshold=0.5,
        regions=[
            scoring_pb2.DefectRegion(
                bbox=common_pb2.BoundingBox(x=10, y=20, width=30, height=40), area_px=900, peak_score=3.2
            )
        ],
    )
    for topic, message in [
        (topics.FRAMES, frame),
        (topics.PREPARED_FRAMES, prepared),
        (topics.INFERENCE_RESULTS, result),
        (topics.INSPECTIONS, verdict),
    ]:
        decoded = topic.decode(message.SerializeToString())
        assert decoded == message
        assert topic.key(decoded) == b"line-3" and topic.headers(decoded) == [("frame_id", frame.frame_id.encode())]


def test_topic_names_and_dead_letter_names():
    assert topics.ALL_TOPICS == (
        "qc.frames.v1",
        "qc.frames.prepared.v1",
        "qc.inference.v1",
        "qc.inspections.v1",
        "quality.alert",
        "quality.spc",
        "quality.drift",
    )
    assert topics.QUALITY_ALERT not in topics.PROTOBUF_TOPICS  # Avro, for the MES
    assert topics.QUALITY_SPC not in topics.PROTOBUF_TOPICS  # Avro, for SPC consumers
    assert topics.QUALITY_DRIFT not in topics.PROTOBUF_TOPICS  # Avro, for SPC consumers
    assert topics.dead_letter_topic(topics.FRAMES, KafkaSettings()) == "qc.frames.v1.dlq"
    kafka = KafkaSettings(dead_letter_suffix=".poison")
    assert topics.dead_letter_topic(topics.INSPECTIONS, kafka) == "qc.inspections.v1.poison"
