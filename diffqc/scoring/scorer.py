"""Scoring one inference result: verdict, regions, heatmap, inspection row, score point.

Order of side effects (each idempotent, so a redelivery after a crash anywhere repeats them
harmlessly): heatmap PNG (content-addressed blob) -> frame row if missing + inspection row
(``ON CONFLICT DO NOTHING``, one transaction) -> the caller publishes the verdict and commits the
offset. The score point is written from the published verdict by its own consumer
(diffqc.scoring.points), so a time-series outage never holds a verdict or an alert back. A frame that already has an
inspection row is not scored again: the stored row is reported, so every message and point about
a frame agrees with the database even if the threshold changed in between. The exception is a
NOT_INSPECTED row (its frame was dead-lettered, diffqc.scoring.not_inspected): a replayed frame
that is scored replaces it in the transaction that records its verdict, so the frame still has one.

Versions under trial that scored the frame beside the judging one (shadow versions, or production
beside a canary) are thresholded the same way, each with its own row, and recorded in pairs in the
inspection's transaction (diffqc.store.trials); their verdicts never count. After a canary frame the
canary guard checks whether the candidate raises too many alarms and ends the canary if so.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.core.process import process_deviation, with_process
from diffqc.preprocess.normalize import FrameImageError
from diffqc.preprocess.prepare import load_frame_image
from diffqc.runtime.metrics import CANARY_ROLLBACKS, VERDICTS_RECORDED
from diffqc.scoring.regions import content_regions, heatmap_png, map_geometry, to_original
from diffqc.settings import ScoringSettings
from diffqc.store import db, trials
from diffqc.store.blobs import BlobNotFound, BlobStore, get_array
from diffqc.store.inspections import (
    active_model_version,
    discard_not_inspected,
    ensure_frame,
    get_inspection,
    model_version,
    record_inspection,
)
from diffqc.store.models import Inspection, ModelVersion, Verdict
from diffqc.store.products import find_product_type
from diffqc.v1.common_pb2 import BlobRef, BoundingBox, ModelRef
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import (
    VERDICT_DEFECT,
    VERDICT_NOT_INSPECTED,
    VERDICT_PASS,
    DefectRegion,
    InspectionVerdict,
)

log = logging.getLogger(__name__)

# uuid5 namespace of inspection ids: the same frame and model version always give the same id.
INSPECTION_NAMESPACE = uuid.UUID("4f0c6a8e-5d1b-5c4e-9a57-7d2f3c1b9e60")
PNG = "image/png"
VERDICTS = {Verdict.PASS: VERDICT_PASS, Verdict.DEFECT: VERDICT_DEFECT, Verdict.NOT_INSPECTED: VERDICT_NOT_INSPECTED}


class ScoringError(ValueError):
    """A result that cannot be scored, however often it is retried (unknown product, no model
    version registered, anomaly map missing or malformed)."""


@dataclass(frozen=True)
class ModelThreshold:
    """What scoring needs from a model_versions row."""

    version: str
    threshold: float
    region_level: float


@dataclass(frozen=True)
class TrialDecision:
    """One version's fused score and verdict on a frame it scored under trial or beside a canary."""

    version: str
    score: float
    defect: bool


def inspection_id(frame_id: str, version: str) -> str:
    return str(uuid.uuid5(INSPECTION_NAMESPACE, f"{frame_id}/{version}"))


class Scorer:
    """Scores inference results; shared by the gRPC servicer and the Kafka worker (thread-safe)."""

    def __init__(self, settings: ScoringSettings, engine: Engine, blobs: BlobStore):
        self.settings, self.engine, self.blobs = settings, engine, blobs
        self._level_warned: set[tuple[str, str]] = set()

    # -- lookups ------------------------------------------------------------------------------
    def _model(self, session: Session, product: str, version: str) -> ModelThreshold:
        """The row of the model version that produced the result; the product's active one when that
        version is not registered (e.g. a result without a version)."""
        row = model_version(session, product, version) if version else None
        if row is None:
            row = active_model_version(session, product)
            if row is None:
                raise ScoringError(
                    f"no model version is registered for product type {product!r} "
                    f"(register_model_version); cannot threshold the score"
                )
            if version:
                log.warning(
                    "model version %r of %r is not registered; using the active version %r",
                    version,
                    product,
                    row.version,
                )
        return self._threshold(product, row)

    def _threshold(self, product: str, row: ModelVersion) -> ModelThreshold:
        level = (row.metrics or {}).get("region_level")
        if level is None:
            level = self.settings.region_level
            if (product, row.version) not in self._level_warned:
                self._level_warned.add((product, row.version))
                log.warning("model version %r of %r has no metrics.region_level; using %g", row.version, product, level)
        return ModelThreshold(row.version, float(row.threshold), float(level))

    def _trial_models(self, session: Session, result: InferenceResult) -> dict[str, ModelThreshold]:
        """The rows of the versions that scored under trial; an unregistered one is left out (logged)."""
        product, models = result.frame.product_type, {}
        for trial in result.trial_scores:
            row = model_version(session, product, trial.model.version)
            if row is None:
                log.warning("model version %r of %r under trial is not registered", trial.model.version, product)
            else:
                models[row.version] = self._threshold(product, row)
        return models

    # -- the decision -------------------------------------------------------------------------
    def _anomaly_map(self, result: InferenceResult) -> np.ndarray:
        if not result.anomaly_map.uri:
            raise ScoringError("the result has no anomaly map")
        try:
            amap = get_array(self.blobs, result.anomaly_map)
        except BlobNotFound as exc:
            raise ScoringError(f"anomaly map missing: {exc}") from None
        except ValueError as exc:
            raise ScoringError(f"anomaly map {result.anomaly_map.uri} is not an array: {exc}") from None
        amap = np.squeeze(amap)
        if amap.ndim != 2 or min(amap.shape) == 0:
            raise ScoringError(f"anomaly map {result.anomaly_map.uri} has shape {amap.shape}; expected (H, W)")
        if not np.isfinite(amap).all():
            raise ScoringError(f"anomaly map {result.anomaly_map.uri} has non-finite values")
        return amap.astype(np.float32, copy=False)

    def _overlay_image(self, result: InferenceResult) -> np.ndarray | None:
        try:
            return load_frame_image(result.frame, self.blobs)
        except (BlobNotFound, FrameImageError) as exc:
            log.warning("heatmap drawn without the frame image: %s", exc)
            return None

    def decide(
        self, result: InferenceResult, nominal_ranges: dict, model: ModelThreshold, decided_at: datetime | None = None
    ) -> tuple[dict[str, Any], BlobRef]:
        """The inspection row's values (``record_inspection`` keywords) and the heatmap blob; no database."""
        frame = result.frame
        if not math.isfinite(result.score):  # NaN > threshold is False: it would pass silently
            raise ScoringError(f"the detector's score is {result.score}")
        decided_at = decided_at or clock.now()
        deviation = process_deviation(frame.process_parameters, nominal_ranges, frame.product_type)
        score = with_process(result.score, deviation.value, self.settings.process_weight)
        defect = score > model.threshold  # the calibration's rule: score > threshold
        # The detector reports the process component as 0: only the platform knows the nominal ranges.
        components = {name: float(v) for name, v in result.component_scores.items()}
        components["process"] = float(deviation.value or 0.0)
        amap = self._anomaly_map(result)
        map_h, map_w = amap.shape  # (H, W): _anomaly_map checked it is 2-D
        box = map_geometry((map_h, map_w), (frame.shape.height, frame.shape.width))
        regions = content_regions(amap, box, model.region_level) if defect else []
        png = heatmap_png(amap, box, model.region_level, regions, defect, self._overlay_image(result))
        heatmap = self.blobs.put(png, PNG)
        ingested = clock.from_timestamp(frame.ingest_time)
        if ingested is not None:
            latency_ms = max(0.0, (decided_at - ingested).total_seconds() * 1000)
        else:  # no ingestion (a direct Score call): the detector's own time
            latency_ms = result.latency.ToNanoseconds() / 1e6
        values = {
            "id": inspection_id(frame.frame_id, model.version),
            "frame_id": frame.frame_id,
            "model_version": model.version,
            "component_scores": components,
            "score": score,
            "threshold": model.threshold,
            "verdict": Verdict.DEFECT if defect else Verdict.PASS,
            "latency_ms": round(latency_ms, 3),
            "heatmap_uri": heatmap.uri,
            "regions": to_original(regions, box),
            "inspected_at": decided_at,
        }
        return values, heatmap

    def trial_rows(
        self, result: InferenceResult, nominal_ranges: dict, judged: dict[str, Any], models: dict[str, ModelThreshold]
    ) -> list[dict[str, Any]]:
        """The ``trial_scores`` rows of a frame: each trial version paired with the judging one (``judged``:
        the inspection row's values); production first, the candidate second."""
        frame = result.frame
        deviation = process_deviation(frame.process_parameters, nominal_ranges, frame.product_type).value
        judge = TrialDecision(judged["model_version"], judged["score"], judged["verdict"] is Verdict.DEFECT)
        rows = []
        for trial in result.trial_scores:
            model = models.get(trial.model.version)
            if model is None or not math.isfinite(trial.score):
                continue
            score = with_process(trial.score, deviation, self.settings.process_weight)
            other = TrialDecision(model.version, score, score > model.threshold)
            production, candidate = (other, judge) if result.canary else (judge, other)
            rows.append(
                {
                    "frame_id": frame.frame_id,
                    "product_type": frame.product_type,
                    "line_id": frame.line_id,
                    "production_version": production.version,
                    "production_score": production.score,
                    "production_defect": production.defect,
                    "candidate_version": candidate.version,
                    "candidate_score": candidate.score,
                    "candidate_defect": candidate.defect,
                    "canary": result.canary,
                    "scored_at": judged["inspected_at"],
                }
            )
        return rows

    def _guard_canary(self, frame) -> None:
        with db.session(self.engine, write=True) as session:
            ended = trials.guard_canary(session, frame.product_type, frame.line_id)
            reason = ended.end_reason if ended is not None else None
        if reason is not None:
            CANARY_ROLLBACKS.labels(product=frame.product_type).inc()
            log.warning("canary of %r on line %r ended: %s", frame.product_type, frame.line_id, reason)

    def _stored_heatmap(self, uri: str | None) -> BlobRef | None:
        """The full reference of a stored heatmap (the row keeps only its URI)."""
        if not uri:
            return None
        try:
            data = self.blobs.get(uri)
        except BlobNotFound:
            log.warning("heatmap %s of a stored inspection is gone", uri)
            return BlobRef(uri=uri, media_type=PNG)
        return BlobRef(uri=uri, sha256=hashlib.sha256(data).hexdigest(), media_type=PNG, size_bytes=len(data))

    # -- the whole path -----------------------------------------------------------------------
    def score(self, result: InferenceResult) -> InspectionVerdict:
        """Decide, record and publish-ready: the verdict message (from the stored row).

        Raises ScoringError (poison) or DependencyUnavailable (the database is down).
        """
        frame = result.frame
        if not frame.frame_id:
            raise ScoringError("the result's frame has no frame_id")
        heatmap = None
        with db.session(self.engine) as session:
            row = get_inspection(session, frame.frame_id)
            if row is not None and Verdict(row.verdict) is Verdict.NOT_INSPECTED:
                log.info("frame %s was not inspected (%s); scoring it now", frame.frame_id, row.not_inspected_reason)
                row = None
            if row is None:
                product = find_product_type(session, frame.product_type)
                if product is None:
                    raise ScoringError(f"unknown product type {frame.product_type!r}: no product_types row")
                nominal = dict(product.nominal_ranges or {})
                model = self._model(session, frame.product_type, result.model.version)
                trial_models = self._trial_models(session, result)
        if row is None:
            values, heatmap = self.decide(result, nominal, model)
            with db.session(self.engine, write=True) as session:
                # Also one the fail-closed stage recorded since the read (a replay racing its first letter).
                discard_not_inspected(session, frame.frame_id)
                ensure_frame(session, frame)
                row, created = record_inspection(session, **values)
                if created:
                    trials.record(session, self.trial_rows(result, nominal, values, trial_models))
            if created:
                VERDICTS_RECORDED.labels(verdict=Verdict(row.verdict).value).inc()
            if created and result.canary:
                self._guard_canary(frame)
            if not created:
                log.info("inspection of frame %s was recorded concurrently; reporting the stored one", frame.frame_id)
        else:
            log.info("frame %s was already inspected (%s); reporting the stored inspection", frame.frame_id, row.id)
        if heatmap is None or heatmap.uri != row.heatmap_uri:
            heatmap = self._stored_heatmap(row.heatmap_uri)
        return verdict_message(row, result, heatmap)


def verdict_message(row: Inspection, result: InferenceResult, heatmap: BlobRef | None = None) -> InspectionVerdict:
    """The InspectionVerdict of a stored inspection row (``heatmap``: the full reference of its heatmap)."""
    return InspectionVerdict(
        inspection_id=row.id,
        frame=result.frame,
        verdict=VERDICTS[Verdict(row.verdict)],
        score=row.score,
        threshold=row.threshold,
        component_scores=dict(row.component_scores),
        regions=[
            DefectRegion(
                bbox=BoundingBox(x=r["x"], y=r["y"], width=r["width"], height=r["height"]),
                area_px=r["area_px"],
                peak_score=r["peak_score"],
            )
            for r in row.regions or []
        ],
        heatmap=heatmap or BlobRef(uri=row.heatmap_uri or ""),
        model=ModelRef(name=result.model.name, version=row.model_version),
        latency=clock.duration_from_ms(row.latency_ms),
        decided_at=clock.to_timestamp(row.inspected_at),
        not_inspected_reason=row.not_inspected_reason or "",
    )
