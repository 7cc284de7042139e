"""The alert record of a defective verdict, its gateway links and the severity rule."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from diffqc.alerts import AlertLinks, Severity, alert_id, alert_json, alert_record, severity
from diffqc.security.links import LinkRefused, verify_link
from tests.helpers.verdicts import LINKS, verdict


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
    record = alert_record(v, LINKS)
    assert record["alert_id"] == alert_id(v.inspection_id) == alert_record(v, LINKS)["alert_id"]
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
    assert (record["status"], record["not_inspected_reason"]) == ("DEFECT", None)
    gateway = f"http://gateway.test:8080/api/inspection/{v.inspection_id}"
    assert record["image_uri"].startswith(f"{gateway}/image?") and record["heatmap_uri"].startswith(
        f"{gateway}/heatmap.png?"
    )
    body = alert_json(record)
    assert body["detected_at"] == "2026-11-03T08:15:42.123+00:00"
    assert {k: body[k] for k in body if k != "detected_at"} == {k: record[k] for k in record if k != "detected_at"}


def test_empty_optional_context_becomes_null_and_a_pass_raises_no_alert():
    record = alert_record(verdict(lot=""), LINKS)
    assert record["lot"] is None
    with pytest.raises(ValueError, match="neither DEFECT nor NOT_INSPECTED; it raises no alert"):
        alert_record(verdict(defect=False), LINKS)


def _verify(url: str, now: float | None = None) -> None:
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    verify_link(parts.path, query["expires"], query["signature"], b"test-link-secret", now)


def test_the_links_are_signed_gateway_urls_that_expire_and_break_when_altered():
    v = verdict(score=2.4)
    before = time.time()
    record = alert_record(v, LINKS)
    for url in (record["image_uri"], record["heatmap_uri"]):
        _verify(url)
        assert int(before) + 3600 <= int(parse_qs(urlsplit(url).query)["expires"][0]) <= time.time() + 3600
        with pytest.raises(LinkRefused, match="expired"):
            _verify(url, now=time.time() + 3601)
    image = record["image_uri"]
    altered = {
        "another inspection": image.replace(v.inspection_id, alert_id(v.inspection_id)),
        "the heatmap route": image.replace("/image?", "/heatmap.png?"),
        "a later expiry": image.replace("expires=", "expires=9"),
        "another signature": image[:-4] + ("0000" if not image.endswith("0000") else "1111"),
    }
    for what, url in altered.items():
        with pytest.raises(LinkRefused, match="signature does not match"):
            _verify(url)
        assert url != image, what


def test_without_a_secret_the_links_are_plain_and_a_verdict_without_heatmap_has_none():
    plain = AlertLinks("https://qc.plant.example/", None)
    v = verdict()
    v.heatmap.Clear()
    record = alert_record(v, plain)
    assert record["image_uri"] == f"https://qc.plant.example/api/inspection/{v.inspection_id}/image"
    assert record["heatmap_uri"] is None
    assert not any("file:" in str(value) for value in record.values())
