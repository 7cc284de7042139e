"""Retention (``diffqc retention``): old rows and blobs are deleted in bounded batches; what matters is kept.

Rows (``DIFFQC_RETENTION_ROW_DAYS``; 0 keeps them): inspections inspected before the cut-off go with
their alerts, frames received before it once no remaining inspection references them, trial scores
scored before it. Kept whatever their age: labelled inspections and their frames (training data and
evidence), and an inspection whose alert the bridge is still delivering (delivery or line stop pending).

Blobs (``DIFFQC_RETENTION_BLOB_DAYS``; 0 keeps them): a blob last put before the cut-off goes unless a
labelled inspection references it (its frame's image, its heatmap) or a row newer than both cut-offs
does (content addressing lets a new frame reuse an old image; a put of it again restarts its age too).
So images and heatmaps outlive their rows by at most blob_days, and live no longer than blob_days
unless labelled. Tiles and anomaly maps are referenced only by Kafka messages, never by a row: they
go at blob_days too, which must therefore exceed the longest a message can wait in its topic (Kafka's
retention, an outage of a stage).

Disk (the file backend): when the blob volume is still fuller than ``DISK_HIGH_WATER`` after that, the
oldest blobs no labelled inspection references go, whatever their age, until it is below
``DISK_LOW_WATER``. A first pass sums their bytes by minute of last put, which gives the cut-off time
that frees enough; a second deletes what was put before it. Memory stays bounded by a batch and the
minutes, however many blobs the store holds.

Each batch of rows is one transaction of at most ``batch`` rows; blobs are decided ``batch`` at a time
(one query for their references). A dry run reads the same and deletes nothing: its counts are what a
run would delete now (its disk step takes the age step's bytes as freed). A blob put again in the
moment between its check and its deletion is deleted all the same; the frame that needs it then fails
as a missing blob.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Engine, Select, and_, delete, exists, func, or_, select, true, tuple_
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.settings import RetentionSettings, SettingsError
from diffqc.store import db
from diffqc.store.alerts import delivered_before, prune_delivered
from diffqc.store.blobs import BlobStore, FileBlobStore, StoredBlob
from diffqc.store.models import Alert, DeliveryState, Frame, Inspection, Label, LineStop, TrialScore

log = logging.getLogger(__name__)
BATCH = 1000


@dataclass
class RetentionReport:
    """What a run deleted (a dry run: would delete), and the blob volume's use around it (file backend)."""

    dry_run: bool
    row_cutoff: datetime | None = None
    blob_cutoff: datetime | None = None
    inspections: int = 0
    alerts: int = 0
    frames: int = 0
    trial_scores: int = 0
    blobs_by_age: int = 0
    blobs_by_disk: int = 0
    freed_bytes: int = 0
    volume_use_before: float | None = None
    volume_use_after: float | None = None  # a dry run's is what the deletions would leave


@dataclass(frozen=True)
class _Use:
    """How rows reference one blob: the newest referencing row's time, and whether a labelled one does."""

    newest: datetime
    labelled: bool


@dataclass(frozen=True)
class _AgeRule:
    older_than: datetime
    unless_used_since: datetime

    def expires(self, blob: StoredBlob, use: _Use | None) -> bool:
        if blob.stored_at >= self.older_than:
            return False
        return use is None or (not use.labelled and use.newest < self.unless_used_since)


def run_retention(
    engine: Engine,
    blobs: BlobStore,
    settings: RetentionSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch: int = BATCH,
) -> RetentionReport:
    """Apply the retention settings (module doc) as of ``now``. Raises DependencyUnavailable when the
    database or the blob store fails (what was deleted by then stays deleted), SettingsError for a low
    water mark above the high one."""
    if settings.disk_low_water > settings.disk_high_water:
        raise SettingsError(
            f"DIFFQC_RETENTION_DISK_LOW_WATER ({settings.disk_low_water:g}) is above "
            f"DIFFQC_RETENTION_DISK_HIGH_WATER ({settings.disk_high_water:g})"
        )
    now = now or clock.now()
    report = RetentionReport(dry_run, _cutoff(now, settings.row_days), _cutoff(now, settings.blob_days))
    volume = blobs if isinstance(blobs, FileBlobStore) else None
    if volume is not None:
        used, total = volume.volume_usage()
        report.volume_use_before = used / total
    if report.row_cutoff is not None:
        _expire_rows(engine, report.row_cutoff, report, batch)
    rule = None
    if report.blob_cutoff is not None:
        since = max(report.blob_cutoff, report.row_cutoff or report.blob_cutoff)  # the rows that stay
        rule = _AgeRule(report.blob_cutoff, since)
        _expire_blobs_by_age(engine, blobs, rule, report, batch)
    if volume is not None:
        if dry_run:
            used -= report.freed_bytes
        else:
            used, total = volume.volume_usage()
        if used / total > settings.disk_high_water:
            freed = _relieve_disk(engine, volume, used - int(settings.disk_low_water * total), rule, report, batch)
            used = used - freed if dry_run else volume.volume_usage()[0]
        report.volume_use_after = used / total
    log.info(
        "retention%s: %d inspection(s), %d alert(s), %d frame(s), %d trial score(s), %d blob(s) by age and %d by "
        "disk use, %d bytes",
        " (dry run, nothing deleted)" if dry_run else "",
        report.inspections,
        report.alerts,
        report.frames,
        report.trial_scores,
        report.blobs_by_age,
        report.blobs_by_disk,
        report.freed_bytes,
    )
    return report


def _cutoff(now: datetime, days: float) -> datetime | None:
    return now - timedelta(days=days) if days > 0 else None


# ---- rows ---------------------------------------------------------------------------------------


def _expire_rows(engine: Engine, cutoff: datetime, report: RetentionReport, batch: int) -> None:
    labelled = exists().where(Label.inspection_id == Inspection.id)
    delivering = exists().where(
        Alert.inspection_id == Inspection.id,
        or_(Alert.delivery_state == DeliveryState.PENDING, Alert.line_stop_state == LineStop.PENDING.value),
    )
    expired = and_(Inspection.inspected_at < cutoff, ~labelled, ~delivering)
    # A run deletes every expired inspection first, so then a frame may go once no inspection is left;
    # a dry run, which deletes none, asks for no inspection that would stay.
    staying = exists().where(Inspection.frame_id == Frame.id, ~expired if report.dry_run else true())
    old_frame = and_(Frame.received_at < cutoff, ~staying)
    old_trial = TrialScore.scored_at < cutoff
    trial_key = tuple_(TrialScore.frame_id, TrialScore.candidate_version)
    if report.dry_run:
        report.inspections = _count(engine, select(Inspection.id).where(expired))
        with_inspection = Alert.inspection_id.in_(select(Inspection.id).where(expired))
        report.alerts = _count(
            engine,
            select(Alert.id).where(or_(with_inspection, Alert.id.in_(delivered_before(cutoff).scalar_subquery()))),
        )
        report.frames = _count(engine, select(Frame.id).where(old_frame))
        report.trial_scores = _count(engine, select(TrialScore.frame_id).where(old_trial))
        return

    def inspections(session: Session, ids: list) -> None:
        report.alerts += _deleted(session, delete(Alert).where(Alert.inspection_id.in_(ids)))
        report.inspections += _deleted(session, delete(Inspection).where(Inspection.id.in_(ids), expired))

    def frames(session: Session, ids: list) -> None:
        report.frames += _deleted(session, delete(Frame).where(Frame.id.in_(ids), old_frame))

    def trials(session: Session, keys: list) -> None:
        report.trial_scores += _deleted(session, delete(TrialScore).where(trial_key.in_(keys), old_trial))

    _delete_in_batches(engine, select(Inspection.id).where(expired), batch, inspections)
    _delete_in_batches(engine, select(Frame.id).where(old_frame), batch, frames)
    _delete_in_batches(
        engine, select(TrialScore.frame_id, TrialScore.candidate_version).where(old_trial), batch, trials
    )
    while True:  # delivered alerts whose inspection stays (labelled) or was replaced (a replayed NOT_INSPECTED)
        with db.session(engine, write=True) as session:
            pruned = prune_delivered(session, cutoff, batch)
        report.alerts += pruned
        if pruned < batch:
            return


def _delete_in_batches(engine: Engine, query: Select, batch: int, delete_keys: Callable[[Session, list], None]) -> None:
    """Give ``delete_keys`` the keys ``query`` selects, ``batch`` at a time, each batch in a transaction of its
    own, until the query selects none (the deletions move it on; they repeat its conditions, so a row that
    changed in between stays)."""
    while True:
        with db.session(engine, write=True) as session:
            rows = session.execute(query.limit(batch)).all()
            if not rows:
                return
            delete_keys(session, [row[0] if len(row) == 1 else tuple(row) for row in rows])


def _count(engine: Engine, query: Select) -> int:
    with db.session(engine) as session:
        return session.scalar(select(func.count()).select_from(query.subquery())) or 0


def _deleted(session: Session, statement: Delete) -> int:
    return cast(CursorResult[Any], session.execute(statement)).rowcount


# ---- blobs --------------------------------------------------------------------------------------


def _expire_blobs_by_age(engine: Engine, blobs: BlobStore, rule: _AgeRule, report: RetentionReport, batch: int) -> None:
    old = (blob for blob in blobs.blobs() if blob.stored_at < rule.older_than)
    for chunk in _chunks(old, batch):
        uses = _uses(engine, blobs, chunk)
        for blob in chunk:
            if rule.expires(blob, uses.get(blob.sha256)):
                if not report.dry_run:
                    blobs.delete(blob.sha256)
                report.blobs_by_age += 1
                report.freed_bytes += blob.size_bytes


def _relieve_disk(
    engine: Engine, blobs: FileBlobStore, excess: int, rule: _AgeRule | None, report: RetentionReport, batch: int
) -> int:
    """Delete the oldest blobs no labelled inspection references until ``excess`` bytes are freed (or none
    is left); return the bytes freed."""

    def deletable(chunk: list[StoredBlob]) -> Iterator[StoredBlob]:
        uses = _uses(engine, blobs, chunk)
        for blob in chunk:
            use = uses.get(blob.sha256)
            counted = report.dry_run and rule is not None and rule.expires(blob, use)  # the age step's already
            if not (use is not None and use.labelled) and not counted:
                yield blob

    by_minute: Counter[int] = Counter()
    for chunk in _chunks(blobs.blobs(), batch):
        for blob in deletable(chunk):
            by_minute[_minute(blob.stored_at)] += blob.size_bytes
    cutoff = _oldest_minutes_holding(by_minute, excess)
    if cutoff is None:
        return 0
    freed = 0
    for chunk in _chunks((blob for blob in blobs.blobs() if blob.stored_at < cutoff), batch):
        for blob in deletable(chunk):
            if not report.dry_run:
                blobs.delete(blob.sha256)
            report.blobs_by_disk += 1
            freed += blob.size_bytes
    report.freed_bytes += freed
    return freed


def _minute(moment: datetime) -> int:
    return int(moment.timestamp() // 60)


def _oldest_minutes_holding(by_minute: Counter[int], excess: int) -> datetime | None:
    """The end of the oldest minutes whose blobs hold ``excess`` bytes (of all of them when they hold less)."""
    if not by_minute:
        return None
    held = 0
    for minute in sorted(by_minute):
        held += by_minute[minute]
        if held >= excess:
            break
    return datetime.fromtimestamp((minute + 1) * 60, UTC)


def _uses(engine: Engine, blobs: BlobStore, chunk: list[StoredBlob]) -> dict[str, _Use]:
    """How rows reference each blob of ``chunk`` (frames by image digest, inspections by heatmap URI)."""
    digests = [blob.sha256 for blob in chunk]
    by_uri = {blobs.uri_of(digest): digest for digest in digests}
    labels = func.count(Label.inspection_id)
    images = (
        select(Frame.image_sha256, func.max(Frame.received_at), labels)
        .outerjoin(Inspection, Inspection.frame_id == Frame.id)
        .outerjoin(Label, Label.inspection_id == Inspection.id)
        .where(Frame.image_sha256.in_(digests))
        .group_by(Frame.image_sha256)
    )
    heatmaps = (
        select(Inspection.heatmap_uri, func.max(Inspection.inspected_at), labels)
        .outerjoin(Label, Label.inspection_id == Inspection.id)
        .where(Inspection.heatmap_uri.in_(list(by_uri)))
        .group_by(Inspection.heatmap_uri)
    )
    uses: dict[str, _Use] = {}
    with db.session(engine) as session:
        found = [(digest, newest, n) for digest, newest, n in session.execute(images)]
        found += [(by_uri[str(uri)], newest, n) for uri, newest, n in session.execute(heatmaps)]
    for digest, newest, n in found:
        use = _Use(clock.utc(newest) or datetime.min.replace(tzinfo=UTC), n > 0)
        if (known := uses.get(digest)) is not None:
            use = _Use(max(use.newest, known.newest), use.labelled or known.labelled)
        uses[digest] = use
    return uses


def _chunks(items: Iterable[StoredBlob], size: int) -> Iterator[list[StoredBlob]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
