"""What the bridge trusts of an alert: only what the stored inspection (real PostgreSQL) bears out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from diffqc.alerts import AlertLinks, Severity, alert_record
from diffqc.alerts.verify import AlertRefused, verified_severity
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from tests.helpers.verdicts import LINKS, store_inspections, verdict


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def check(engine, record: dict, links: AlertLinks = LINKS) -> Severity:
    with Session(engine) as session:
        return verified_severity(session, record, links)


def test_a_genuine_alert_has_the_severity_recomputed_from_the_stored_rows(engine):
    minor, critical, wide = verdict(score=1.1), verdict(score=2.5), verdict(score=1.1, area_px=600)
    store_inspections(engine, [minor, critical, wide])
    assert check(engine, alert_record(minor, LINKS)) is Severity.MINOR
    assert check(engine, alert_record(critical, LINKS)) is Severity.CRITICAL
    assert check(engine, alert_record(wide, LINKS)) is Severity.CRITICAL  # 6 % of the 100x100 frame
    # Plain links (a gateway without a link secret) are the same gateway's links.
    assert check(engine, alert_record(minor, AlertLinks(LINKS.public_url))) is Severity.MINOR


def test_alerts_of_no_stored_defect_are_refused(engine):
    good = verdict(score=0.5, defect=False)
    store_inspections(engine, [good])
    forged = verdict(score=3.0)
    forged.inspection_id, forged.frame.frame_id = good.inspection_id, good.frame.frame_id
    with pytest.raises(AlertRefused, match=f"stored inspection '{good.inspection_id}' is a pass verdict") as refused:
        check(engine, alert_record(forged, LINKS))
    assert refused.value.reason == "not_defect"
    unknown = verdict(score=3.0)
    with pytest.raises(AlertRefused, match=f"inspection '{unknown.inspection_id}' is not in the metadata database"):
        check(engine, alert_record(unknown, LINKS))


ELSEWHERE = AlertLinks("http://evil.example:8080", b"test-link-secret")


@pytest.mark.parametrize(
    ("field", "tamper"),
    [
        ("severity", lambda r: {**r, "severity": "CRITICAL"}),
        ("score", lambda r: {**r, "score": r["threshold"] * 3}),
        ("threshold", lambda r: {**r, "threshold": 0.1}),
        ("line_id", lambda r: {**r, "line_id": "L-other"}),
        ("product_type", lambda r: {**r, "product_type": "bolts"}),
        ("frame_id", lambda r: {**r, "frame_id": "f-other"}),
        ("alert_id", lambda r: {**r, "alert_id": "a-other"}),
        ("model_version", lambda r: {**r, "model_version": "99"}),
        ("lot", lambda r: {**r, "lot": None}),
        ("regions", lambda r: {**r, "regions": []}),
        ("detected_at", lambda r: {**r, "detected_at": r["detected_at"] + timedelta(seconds=1)}),
        ("image_uri", lambda r: {**r, "image_uri": ELSEWHERE.image(r["inspection_id"])}),
        ("image_uri", lambda r: {**r, "image_uri": "file:///var/lib/diffqc/blobs/../../etc/passwd"}),
        ("image_uri", lambda r: {**r, "image_uri": LINKS.heatmap(r["inspection_id"])}),
        ("image_uri", lambda r: {**r, "image_uri": r["image_uri"] + "&next=http://evil.example"}),
        ("heatmap_uri", lambda r: {**r, "heatmap_uri": None}),
    ],
)
def test_an_alert_that_disagrees_with_its_inspection_is_refused_naming_the_field(engine, field, tamper):
    v = verdict(score=1.1)
    store_inspections(engine, [v])
    with pytest.raises(AlertRefused, match=f"its {field} disagree with the stored inspection") as refused:
        check(engine, tamper(alert_record(v, LINKS)))
    assert refused.value.reason == "mismatch"
