"""``diffqc retention`` on a real PostgreSQL database and both blob stores (a folder; moto's S3 server):
old unlabelled rows and their blobs go, labelled and young ones stay, a dry run changes nothing, and
a blob volume above its high-water mark loses its oldest blobs first."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.core import clock
from diffqc.settings import RetentionSettings, SettingsError
from diffqc.store import db
from diffqc.store.blobs import BlobStore, FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import (
    Alert,
    DeliveryState,
    Frame,
    Inspection,
    Label,
    LabelKind,
    ProductType,
    TrialScore,
    Verdict,
)
from diffqc.store.retention import run_retention
from diffqc.store.s3_blobs import S3BlobStore
from diffqc.v1.common_pb2 import BlobRef

# Everything was put a moment ago; the runs take place this much later, so every blob is old by then.
LATER = timedelta(days=400)
SETTINGS = RetentionSettings(row_days=365, blob_days=30)


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    with db.session(engine, write=True) as session:
        session.add(ProductType(name="pcb", preprocessing={}, nominal_ranges={}))
    yield engine
    engine.dispose()


@pytest.fixture(params=["file", "s3"])
def blobs(request, tmp_path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    store = S3BlobStore(
        f"retention-{uuid.uuid4().hex[:12]}",
        endpoint_url=request.getfixturevalue("s3_endpoint"),
        access_key_id="test",
        secret_access_key="test",
    )
    store.ensure_bucket()
    return store


def add_verdict(
    engine,
    blobs: BlobStore,
    name: str,
    at: datetime,
    *,
    labelled: bool = False,
    alert: DeliveryState | None = None,
) -> tuple[BlobRef, BlobRef]:
    """A frame received at ``at``, its inspection (with a heatmap) and trial score, optionally labelled and
    alerted; returns the image's and the heatmap's references."""
    image, heatmap = blobs.put(f"image {name}".encode(), "image/png"), blobs.put(f"map {name}".encode(), "image/png")
    with db.session(engine, write=True) as session:
        session.add(
            Frame(
                id=f"frame-{name}",
                plant_id="P1",
                line_id="L1",
                station_id="S1",
                camera_id="C1",
                product_type="pcb",
                captured_at=at,
                received_at=at,
                image_uri=image.uri,
                image_sha256=image.sha256,
                height=4,
                width=4,
                channels=3,
            )
        )
        session.flush()
        session.add(
            Inspection(
                id=name,
                frame_id=f"frame-{name}",
                model_version="1",
                score=0.9,
                threshold=0.5,
                verdict=Verdict.DEFECT,
                heatmap_uri=heatmap.uri,
                latency_ms=5.0,
                inspected_at=at,
            )
        )
        session.add(
            TrialScore(
                frame_id=f"frame-{name}",
                candidate_version="2",
                product_type="pcb",
                line_id="L1",
                production_version="1",
                production_score=0.9,
                production_defect=True,
                candidate_score=0.8,
                candidate_defect=True,
                canary=False,
                scored_at=at,
            )
        )
        session.flush()
        if labelled:
            session.add(Label(inspection_id=name, kind=LabelKind.CONFIRMED_DEFECT, labelled_by="inspector"))
        if alert is not None:
            session.add(
                Alert(id=f"alert-{name}", inspection_id=name, line_id="L1", severity="major", delivery_state=alert)
            )
    return image, heatmap


def rows(engine) -> dict[str, set]:
    with db.session(engine) as session:
        return {
            "frames": set(session.scalars(select(Frame.id))),
            "inspections": set(session.scalars(select(Inspection.id))),
            "alerts": set(session.scalars(select(Alert.id))),
            "trial_scores": set(session.scalars(select(TrialScore.frame_id))),
        }


def held(blobs: BlobStore) -> set[str]:
    return {blob.sha256 for blob in blobs.blobs()}


def test_old_unlabelled_rows_and_blobs_go_labelled_and_young_ones_stay(engine, blobs):
    now = clock.now() + LATER
    old = [
        add_verdict(engine, blobs, f"old-{i}", now - timedelta(days=400), alert=DeliveryState.DELIVERED)
        for i in range(3)
    ]
    labelled = add_verdict(engine, blobs, "labelled", now - timedelta(days=400), labelled=True)
    delivering = add_verdict(engine, blobs, "delivering", now - timedelta(days=400), alert=DeliveryState.PENDING)
    recent = add_verdict(engine, blobs, "recent", now - timedelta(days=10))  # its blobs were put long before
    middle = add_verdict(engine, blobs, "middle", now - timedelta(days=100))  # a row to keep, images to drop
    tile = blobs.put(b"a tile: only a Kafka message refers to it", "application/x-npy")
    before_rows, before_blobs = rows(engine), held(blobs)

    dry = run_retention(engine, blobs, SETTINGS, dry_run=True, now=now, batch=2)
    assert (rows(engine), held(blobs)) == (before_rows, before_blobs)  # a dry run deletes nothing
    report = run_retention(engine, blobs, SETTINGS, now=now, batch=2)

    expected = (3, 3, 3, 5)  # inspections, alerts, frames, trial scores (which no label or alert keeps)
    for counted in (dry, report):
        assert (counted.inspections, counted.alerts, counted.frames, counted.trial_scores) == expected
        assert counted.blobs_by_age == 3 * 2 + 2 + 2 + 1  # old, middle, delivering (image, map), the tile
    assert dry.freed_bytes == report.freed_bytes > 0
    after = rows(engine)
    assert after["inspections"] == {"labelled", "delivering", "recent", "middle"}
    assert after["frames"] == {f"frame-{name}" for name in after["inspections"]}
    assert after["alerts"] == {"alert-delivering"}
    assert after["trial_scores"] == {"frame-recent", "frame-middle"}
    kept = {ref.sha256 for ref in (*labelled, *recent)}
    assert held(blobs) == kept
    for ref in (*labelled, *recent):
        assert blobs.get(ref) == blobs.get(ref.uri)
    assert tile.sha256 not in held(blobs) and not {ref.sha256 for pair in (*old, middle) for ref in pair} & held(blobs)
    assert delivering[0].sha256 not in held(blobs)

    again = run_retention(engine, blobs, SETTINGS, now=now)  # nothing left to do
    assert (again.inspections, again.frames, again.blobs_by_age, again.freed_bytes) == (0, 0, 0, 0)


def test_young_blobs_stay_whoever_refers_to_them(engine, blobs):
    add_verdict(engine, blobs, "today", clock.now() - timedelta(days=400))  # rows to go, blobs put just now
    blobs.put(b"a young tile", "application/x-npy")
    before = held(blobs)
    report = run_retention(engine, blobs, SETTINGS)
    assert report.inspections == report.frames == 1
    assert report.blobs_by_age == 0 and held(blobs) == before


def test_zero_days_keep_everything(engine, blobs):
    now = clock.now() + LATER
    add_verdict(engine, blobs, "old", now - timedelta(days=4000))
    before_rows, before_blobs = rows(engine), held(blobs)
    report = run_retention(engine, blobs, RetentionSettings(row_days=0, blob_days=0), now=now)
    assert (report.row_cutoff, report.blob_cutoff) == (None, None)
    assert (rows(engine), held(blobs)) == (before_rows, before_blobs)


def test_a_low_water_mark_above_the_high_one_is_refused(engine, tmp_path):
    with pytest.raises(SettingsError, match=r"DIFFQC_RETENTION_DISK_LOW_WATER \(0.9\) is above .*HIGH_WATER \(0.8\)"):
        run_retention(engine, FileBlobStore(tmp_path), RetentionSettings(disk_high_water=0.8, disk_low_water=0.9))


@pytest.fixture
def disk_of(monkeypatch):
    """shutil.disk_usage of a 1000-byte volume holding 300 bytes of other files and the store's blobs."""

    def attach(store: FileBlobStore) -> None:
        def usage(path):
            used = 300 + sum(blob.stat().st_size for blob in store.root.rglob("*") if blob.is_file())
            return shutil._ntuple_diskusage(1000, used, 1000 - used)

        monkeypatch.setattr(shutil, "disk_usage", usage)

    return attach


def test_above_the_high_water_mark_the_oldest_unlabelled_blobs_go_until_below_the_low_one(engine, tmp_path, disk_of):
    store = FileBlobStore(tmp_path / "blobs")
    disk_of(store)
    refs = [store.put(bytes([i]) * 100, "image/png") for i in range(6)]  # 900 of 1000 bytes in use
    for age, ref in zip(range(6, 0, -1), refs, strict=True):  # refs[0] oldest
        stamp = (clock.now() - timedelta(days=age)).timestamp()
        os.utime(store.root / "sha256" / ref.sha256[:2] / ref.sha256, (stamp, stamp))
    add_verdict(engine, store, "labelled", clock.now(), labelled=True)  # 2 x 100-byte-ish blobs, put now
    for blob in store.blobs():
        if blob.sha256 not in {ref.sha256 for ref in refs}:  # make the labelled one's the oldest of all
            stamp = (clock.now() - timedelta(days=30)).timestamp()
            os.utime(store.root / "sha256" / blob.sha256[:2] / blob.sha256, (stamp, stamp))
    settings = RetentionSettings(row_days=0, blob_days=0, disk_high_water=0.85, disk_low_water=0.75)
    used = 300 + sum(blob.size_bytes for blob in store.blobs())
    assert used / 1000 > 0.85

    dry = run_retention(engine, store, settings, dry_run=True)
    assert len(list(store.blobs())) == 8
    report = run_retention(engine, store, settings)

    for counted in (dry, report):
        assert counted.blobs_by_disk == 2 and counted.freed_bytes == 200
        assert counted.volume_use_before == pytest.approx(used / 1000)
        assert counted.volume_use_after == pytest.approx((used - 200) / 1000)
    assert report.volume_use_after <= 0.75
    remaining = held(store)
    assert {ref.sha256 for ref in refs[:2]} & remaining == set()  # the two oldest went
    assert {ref.sha256 for ref in refs[2:]} <= remaining and len(remaining) == 6  # the labelled ones stayed


def test_the_command_prints_what_it_deleted_and_a_dry_run_deletes_nothing(engine, postgres_url, tmp_path, disk_of):
    store = FileBlobStore(tmp_path / "blobs")
    disk_of(store)
    add_verdict(engine, store, "old", clock.now() - timedelta(days=400))
    env = {"DIFFQC_DATABASE_URL": postgres_url, "DIFFQC_BLOB_ROOT": str(store.root)}
    dry = CliRunner().invoke(app, ["retention", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    lines = dry.output.splitlines()
    assert lines[0] == "dry run: nothing was deleted"
    assert lines[1].startswith("rows older than ") and lines[1].endswith(
        ": would delete 1 inspection(s) with 0 alert(s), 1 frame(s), 1 trial score(s)"
    )
    assert lines[2].startswith("blobs: would delete 0 put before ")
    assert lines[3].startswith("blob volume: ") and "(high water 85%, low water 75%)" in lines[3]
    assert rows(engine)["inspections"] == {"old"}

    done = CliRunner().invoke(app, ["retention"], env=env)
    assert done.exit_code == 0, done.output
    assert "deleted 1 inspection(s)" in done.output and rows(engine)["inspections"] == set()

    refused = CliRunner().invoke(app, ["retention"], env={**env, "DIFFQC_RETENTION_DISK_LOW_WATER": "0.9"})
    assert refused.exit_code == 2 and "DIFFQC_RETENTION_DISK_LOW_WATER (0.9) is above" in refused.output


def test_delivered_alerts_go_by_age_even_when_their_inspection_stays_or_is_gone(engine, tmp_path):
    """A delivered alert detached from its inspection (a replayed NOT_INSPECTED frame) or of a labelled
    inspection is an outbox row the MES acknowledged long ago: it goes; one still being delivered stays."""
    long_ago = clock.now() - LATER
    with db.session(engine, write=True) as session:
        for alert_id, state in (("detached", DeliveryState.DELIVERED), ("pending", DeliveryState.PENDING)):
            session.add(
                Alert(
                    id=alert_id,
                    inspection_id=None,
                    line_id="L1",
                    severity="MAJOR",
                    payload={},
                    delivery_state=state,
                    created_at=long_ago,
                    delivered_at=long_ago if state is DeliveryState.DELIVERED else None,
                )
            )
    (tmp_path / "blobs").mkdir()
    dry = run_retention(engine, FileBlobStore(tmp_path / "blobs"), SETTINGS, dry_run=True)
    report = run_retention(engine, FileBlobStore(tmp_path / "blobs"), SETTINGS)
    assert dry.alerts == report.alerts == 1
    with db.session(engine) as session:
        assert session.scalars(select(Alert.id)).all() == ["pending"]
