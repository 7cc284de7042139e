"""The alert record of a defective verdict and the severity rule."""

from __future__ import annotations

import pytest

from diffqc.alerts import Severity, alert_id, alert_json, alert_record, severity
from tests.helpers.verdicts import verdict


@pytest.mark.parametrize(
    ("score", "threshold", "area", "frame_area", "expected"),
    [
        (1.1, 1.0, 10, 10_000, Severity.MINOR),  # just past the threshold, tiny defect
        (1.25, 1.0, 10, 10_000, Severity.MAJOR),  # 1.25 x threshold
        (1.1, 1.0, 100, 10_000, Severity.MAJOR),  # covers 1 % of the frame
        (2.0, 1.0, 10, 10_000, Severity.CRITICAL),  # 2 x threshold
        (1.1, 1.0, 500, 10_000, Severity.CRITICAL),  # covers 5 % of the frame
        (0.3, 0.0, 10, 10_000, Severity.MINOR),  # no ratio without a positive threshold: area decides
        (0.3, -1.0, 600, 10_000, Severity.CRITICAL),
        (1.1, 1.0, 10**6, 0, Severity.MINOR),  # unknown frame size: the ratio decides
    ],
)
def test_severity_rule(score, threshold, area, frame_area, expected):
    assert severity(score, threshold, area, frame_area) is expected


def test_alert_record_carries_the_verdict_and_a_deterministic_id():
    v = verdict(score=2.4, threshold=1.0)
    record = alert_record(v)
    assert record["alert_id"] == alert_id(v.inspection_id) == alert_record(v)["alert_id"]
    assert alert_id(v.inspection_id) != alert_id(v.inspection_id + "x")
    assert (record["inspection_id"], record["frame_id"], record["line_id"]) == (v.inspection_id, v.frame.frame_id, "L1")
    assert (record["plant_id"], record["station_id"], record["camera_id"], record["product_type"]) == (
        "P1",
        "S1",
        "C1",
        "pcb",
    )
    assert (record["work_order"], record["lot"], record["severity"]) == ("WO-42", "LOT-7", "CRITICAL")
    assert (record["score"], record["threshold"], record["model_version"]) == (2.4, 1.0, "1")
    assert record["image_uri"] == v.frame.image.uri and record["heatmap_uri"] == v.heatmap.uri
    body = alert_json(record)
    assert body["detected_at"] == "2026-11-03T08:15:42.123+00:00"
    assert {k: body[k] for k in body if k != "detected_at"} == {k: record[k] for k in record if k != "detected_at"}


def test_empty_optional_context_becomes_null_and_a_pass_raises_no_alert():
    record = alert_record(verdict(lot=""))
    assert record["lot"] is None
    with pytest.raises(ValueError, match="not a DEFECT verdict"):
        alert_record(verdict(defect=False))
