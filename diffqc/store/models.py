"""The metadata schema: the plant's equipment, products, model versions, frames, inspections, alerts.

Identifiers that come from the plant (line, camera, frame ids) are its own strings; a frame id
is the idempotency key of the whole flow, so every write keyed by it can be repeated safely.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from diffqc.core import clock
from diffqc.security.api_keys import Role


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` (the same DDL) that holds aware UTC datetimes both ways.

    Every stored time is UTC: a naive datetime written is taken to be UTC, an aware one is converted
    (SQLite would otherwise store its wall-clock time), and what is read is aware UTC (SQLite hands
    back naive datetimes, PostgreSQL ones in the connection's time zone).
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:  # the argument only keeps repr() a valid constructor call
        if not timezone:
            raise ValueError("UTCDateTime is always DateTime(timezone=True)")
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return clock.utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return clock.utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict: JSON, list: JSON}


class Plant(Base):
    __tablename__ = "plants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lines: Mapped[list[Line]] = relationship(back_populates="plant")


class Line(Base):
    __tablename__ = "lines"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plant_id: Mapped[str] = mapped_column(ForeignKey("plants.id"))
    name: Mapped[str] = mapped_column(String(200))
    plant: Mapped[Plant] = relationship(back_populates="lines")
    stations: Mapped[list[Station]] = relationship(back_populates="line")


class Station(Base):
    __tablename__ = "stations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    line_id: Mapped[str] = mapped_column(ForeignKey("lines.id"))
    name: Mapped[str] = mapped_column(String(200))
    line: Mapped[Line] = relationship(back_populates="stations")
    cameras: Mapped[list[Camera]] = relationship(back_populates="station")


class Camera(Base):
    __tablename__ = "cameras"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    model: Mapped[str | None] = mapped_column(String(200))
    station: Mapped[Station] = relationship(back_populates="cameras")


class ProductType(Base):
    __tablename__ = "product_types"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # How preprocessing normalizes a frame: {"height", "width", "channels", "tile", "overlap", "align"}.
    preprocessing: Mapped[dict] = mapped_column(default=dict)
    # Nominal process windows: {"temperature_c": [180.0, 200.0], ...}; scoring measures deviation from them.
    nominal_ranges: Mapped[dict] = mapped_column(default=dict)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("product_type", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_type: Mapped[str] = mapped_column(ForeignKey("product_types.name"))
    version: Mapped[str] = mapped_column(String(64))
    artifact_uri: Mapped[str] = mapped_column(String(1000))
    threshold: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict] = mapped_column(default=dict)
    # active mirrors stage == "production" (diffqc.store.model_registry keeps them in step).
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # candidate | shadow | production | archived (diffqc.store.model_registry.Stage); one production per product.
    stage: Mapped[str] = mapped_column(String(16), default="candidate", server_default="candidate")
    stage_changed_at: Mapped[datetime | None]
    # Lineage: the production version when this one was registered, the training data, who trained it.
    parent_version: Mapped[str | None] = mapped_column(String(64))
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))
    trained_by: Mapped[str | None] = mapped_column(String(200))
    # The production version this one replaced when promoted: what a rollback restores.
    replaced_version: Mapped[str | None] = mapped_column(String(64))


class Frame(Base):
    __tablename__ = "frames"
    __table_args__ = (Index("ix_frames_line_captured", "line_id", "captured_at"),)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    plant_id: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str] = mapped_column(String(64))
    station_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    product_type: Mapped[str] = mapped_column(ForeignKey("product_types.name"))
    work_order: Mapped[str | None] = mapped_column(String(64))
    lot: Mapped[str | None] = mapped_column(String(64), index=True)
    captured_at: Mapped[datetime]
    process_parameters: Mapped[dict] = mapped_column(default=dict)
    image_uri: Mapped[str] = mapped_column(String(1000))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)  # retention: is a blob still referenced
    height: Mapped[int]
    width: Mapped[int]
    channels: Mapped[int]
    priority: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[datetime] = mapped_column(default=clock.now)


class Verdict(enum.StrEnum):
    PASS = "pass"
    DEFECT = "defect"
    NOT_INSPECTED = "not_inspected"  # the frame was dead-lettered: the part must be checked another way


class Inspection(Base):
    __tablename__ = "inspections"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # One inspection per frame: the unique key makes a redelivered frame's write a no-op.
    frame_id: Mapped[str] = mapped_column(ForeignKey("frames.id"), unique=True)
    model_version: Mapped[str] = mapped_column(String(64))
    component_scores: Mapped[dict] = mapped_column(default=dict)
    score: Mapped[float]
    threshold: Mapped[float]
    verdict: Mapped[Verdict] = mapped_column(Enum(Verdict, native_enum=False, length=16))
    heatmap_uri: Mapped[str | None] = mapped_column(String(1000), index=True)  # retention, as above
    # [{"x", "y", "width", "height", "area_px", "peak_score"}, ...]
    regions: Mapped[list] = mapped_column(default=list)
    latency_ms: Mapped[float]
    inspected_at: Mapped[datetime] = mapped_column(default=clock.now, index=True)
    # Why a NOT_INSPECTED verdict was given (dead-lettered at which stage, and the stage's reason).
    not_inspected_reason: Mapped[str | None] = mapped_column(String(500))


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Alert(Base):
    """An alert for the MES, kept as a transactional outbox row until the MES acknowledged it."""

    __tablename__ = "alerts"
    # The bridge claims the oldest row with work left: the index holds only those, so it stays small.
    __table_args__ = (
        Index(
            "ix_alerts_work_left",
            "created_at",
            "id",
            postgresql_where=text("delivery_state = 'PENDING' OR line_stop_state = 'pending'"),
            sqlite_where=text("delivery_state = 'PENDING' OR line_stop_state = 'pending'"),
        ),
    )
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    inspection_id: Mapped[str | None] = mapped_column(ForeignKey("inspections.id"), unique=True)
    line_id: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict] = mapped_column(default=dict)
    delivery_state: Mapped[DeliveryState] = mapped_column(
        Enum(DeliveryState, native_enum=False, length=16), default=DeliveryState.PENDING, index=True
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    delivered_at: Mapped[datetime | None] = mapped_column(index=True)  # pruning takes the oldest delivered
    # When the next delivery attempt is due (exponential backoff); None = due now.
    next_attempt_at: Mapped[datetime | None]
    # Line-stop request of an alert whose severity asks for one: None = not asked, else a LineStop value.
    line_stop_state: Mapped[str | None] = mapped_column(String(16))
    line_stop_at: Mapped[datetime | None]


class LineStop(enum.StrEnum):
    PENDING = "pending"
    REQUESTED = "requested"
    FAILED = "failed"


class PoisonAttempt(Base):
    """How often a consumer group began handling one Kafka message; kept outside the consuming process
    so a message that kills it (OOM, SIGKILL) is dead-lettered after a restart instead of crash-looping."""

    __tablename__ = "poison_attempts"
    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempts: Mapped[int]
    last_attempt_at: Mapped[datetime]


class ApiKey(Base):
    """A gateway API key: only its lookup prefix and a salted hash are stored (diffqc.security.api_keys)."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False, length=16))
    prefix: Mapped[str] = mapped_column(String(8), unique=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One row of the append-only, hash-chained audit log (diffqc.store.audit); ids run 1, 2, 3 ..."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class SpcAcknowledgement(Base):
    """A person's answer to one SPC signal: its cause and the corrective action (diffqc.store.spc_acks).

    One per signal: ``signal_id`` ("{line}/{product}/{rule}/{sample_index}", diffqc.spc.SpcSignal) is unique,
    and its parts are kept in their own columns so a line's acknowledgements are read by index.
    """

    __tablename__ = "spc_acknowledgements"
    __table_args__ = (Index("ix_spc_acknowledgements_line", "line_id", "acknowledged_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(String(200), unique=True)
    line_id: Mapped[str] = mapped_column(String(64))
    product_type: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(16))
    sample_index: Mapped[int] = mapped_column(BigInteger)
    cause: Mapped[str] = mapped_column(String(500))
    corrective_action: Mapped[str] = mapped_column(String(1000))
    acknowledged_by: Mapped[str] = mapped_column(String(100))  # the API key's name
    acknowledged_at: Mapped[datetime] = mapped_column(default=clock.now)


class SpcRebase(Base):
    """Control limits an engineer fixed from a chosen window of good parts (diffqc.store.spc_rebases).

    They are in force for the line's points of ``model_version`` captured from ``effective_from`` on;
    rows are never changed (a later re-base supersedes an earlier one)."""

    __tablename__ = "spc_rebases"
    __table_args__ = (Index("ix_spc_rebases_chart", "line_id", "product_type", "effective_from"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    line_id: Mapped[str] = mapped_column(String(64))
    product_type: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(64))
    center_line: Mapped[float] = mapped_column(Float)
    sigma: Mapped[float] = mapped_column(Float)
    moving_range_mean: Mapped[float] = mapped_column(Float)
    baseline_size: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    effective_from: Mapped[datetime]
    reason: Mapped[str] = mapped_column(String(500))
    rebased_by: Mapped[str] = mapped_column(String(100))
    rebased_at: Mapped[datetime] = mapped_column(default=clock.now)


class LabelKind(enum.StrEnum):
    """An inspector's judgement of a verdict (diffqc.store.labels): the first two answer a defect verdict,
    the last two a pass."""

    CONFIRMED_DEFECT = "confirmed_defect"
    FALSE_ALARM = "false_alarm"
    MISSED_DEFECT = "missed_defect"  # passed, later found bad
    CONFIRMED_GOOD = "confirmed_good"


class Label(Base):
    """The current label of one inspection; relabelling replaces it (the audit log keeps the history)."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_labelled_at", "labelled_at"),)
    inspection_id: Mapped[str] = mapped_column(ForeignKey("inspections.id"), primary_key=True)
    kind: Mapped[LabelKind] = mapped_column(Enum(LabelKind, native_enum=False, length=32))
    # A folder name on export: [a-z0-9_]{1,40}, set on defect kinds only.
    defect_class: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(String(1000), default="")
    labelled_by: Mapped[str] = mapped_column(String(100))  # the API key's name
    labelled_at: Mapped[datetime] = mapped_column(default=clock.now)


class TrialScore(Base):
    """One frame scored by both production and a candidate under trial (diffqc.store.trials).

    In a shadow trial production's verdict counts and the candidate's is only recorded; in a canary
    (``canary``) the candidate judged the frame and production was scored beside it. Scores are the
    fused scores that scoring thresholds; each ``*_defect`` uses that version's own threshold."""

    __tablename__ = "trial_scores"
    __table_args__ = (Index("ix_trial_scores_candidate", "product_type", "candidate_version", "scored_at"),)
    frame_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    candidate_version: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_type: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str] = mapped_column(String(64))
    production_version: Mapped[str] = mapped_column(String(64))
    production_score: Mapped[float] = mapped_column(Float)
    production_defect: Mapped[bool] = mapped_column(Boolean)
    candidate_score: Mapped[float] = mapped_column(Float)
    candidate_defect: Mapped[bool] = mapped_column(Boolean)
    canary: Mapped[bool] = mapped_column(Boolean)
    scored_at: Mapped[datetime] = mapped_column(default=clock.now)


class ModelCanary(Base):
    """A share of one line's frames judged by a shadow version (the A/B split); open while ``ended_at`` is
    None. It ends at a promotion, an archive, an operator's stop, or the automatic rollback when the
    candidate's alarm rate on the paired frames exceeds production's by more than ``max_excess_alarm_rate``."""

    __tablename__ = "model_canaries"
    __table_args__ = (Index("ix_model_canaries_open", "product_type", "ended_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_type: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str] = mapped_column(String(64))
    share: Mapped[float] = mapped_column(Float)
    max_excess_alarm_rate: Mapped[float] = mapped_column(Float)
    min_frames: Mapped[int] = mapped_column(Integer)
    started_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(500))


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrainingJob(Base):
    """A retraining of one product requested from the dashboard or the CLI, run by a training worker
    (never the gateway); its result is registered as a candidate model version."""

    __tablename__ = "training_jobs"
    __table_args__ = (Index("ix_training_jobs_status", "status", "requested_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    product_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(default=clock.now)
    options: Mapped[dict] = mapped_column(default=dict)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(500), default="")
    log: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    result_version: Mapped[str | None] = mapped_column(String(64))
    evaluation: Mapped[dict] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(String(2000))


class SpcChart(Base):
    """The state of one line's control chart of one product type (diffqc.spc), as the bridge left it after
    its last point: the gateway and a bridge replica that takes the line over continue from it instead of
    rebuilding the chart from the line's whole history."""

    __tablename__ = "spc_charts"
    line_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict] = mapped_column(default=dict)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    last_captured_at: Mapped[datetime | None]
    last_inspection_id: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
