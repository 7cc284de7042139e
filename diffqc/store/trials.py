"""Trials of a candidate model version beside production: paired scores, canaries, the comparison.

Scoring records, for every frame a candidate scored beside production (diffqc.serving.production),
both versions' fused scores and verdicts, each by its own threshold (``trial_scores``). That pairing
is what makes the comparison fair: both versions saw the same frames. In a shadow trial only
production's verdict counts; in a canary the candidate judges a share of one line's frames, and the
canary guard ends it when the candidate's alarm rate on those frames exceeds production's by more
than the canary's margin (most parts are good, so excess alarms are excess false alarms). Starting
and stopping a canary is audited; the guard's rollback is audited under ``canary-guard``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.store import audit
from diffqc.store.dialect import dialect_insert
from diffqc.store.labels import DEFECTIVE_KINDS
from diffqc.store.model_registry import RegistryError, Stage, end_canaries
from diffqc.store.models import Inspection, Label, ModelCanary, ModelVersion, TrialScore

GUARD = "canary-guard"  # the audit actor of an automatic rollback
MIN_COMPARED = 100  # paired frames before the comparison recommends anything
RECOMMEND_MAX_EXCESS = 0.01  # a candidate raising more than one alarm per 100 parts more than production: reject
HISTOGRAM_BINS = np.linspace(0.0, 3.0, 31)  # score / threshold; 1 is the threshold, the last bin takes the rest


def record(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """Store paired scores (``TrialScore`` columns); a frame's pair is written once (redeliveries: no-op)."""
    rows = list(rows)
    if rows:
        session.execute(dialect_insert(session, TrialScore).values(rows).on_conflict_do_nothing())


def open_canaries(session: Session, product: str) -> list[ModelCanary]:
    return list(
        session.scalars(
            select(ModelCanary)
            .where(ModelCanary.product_type == product, ModelCanary.ended_at.is_(None))
            .order_by(ModelCanary.id)
        )
    )


def start_canary(
    session: Session,
    product: str,
    version: str,
    line: str,
    share: float,
    actor: str,
    max_excess_alarm_rate: float = 0.02,
    min_frames: int = 200,
) -> ModelCanary:
    """Route ``share`` of ``line``'s frames of ``product`` to ``version``, which must be in shadow."""
    if not 0 < share <= 0.5:
        raise RegistryError(f"a canary's share must be in (0, 0.5], not {share}: production judges most frames")
    if not 0 <= max_excess_alarm_rate < 1 or min_frames < 1:
        raise RegistryError("a canary needs 0 <= max excess alarm rate < 1 and min frames >= 1")
    row = session.scalars(
        select(ModelVersion).where(ModelVersion.product_type == product, ModelVersion.version == version)
    ).first()
    if row is None:
        raise RegistryError(f"product type {product!r} has no model version {version!r}")
    if row.stage != Stage.SHADOW:
        raise RegistryError(
            f"model version {version!r} of {product!r} is {row.stage}: only a shadow version can run as a canary"
        )
    if any(c.line_id == line for c in open_canaries(session, product)):
        raise RegistryError(f"line {line!r} already runs a canary of {product!r}: stop it first")
    canary = ModelCanary(
        product_type=product,
        version=version,
        line_id=line,
        share=share,
        max_excess_alarm_rate=max_excess_alarm_rate,
        min_frames=min_frames,
        started_by=actor,
        started_at=clock.now(),
    )
    session.add(canary)
    session.flush()
    audit.append(
        session,
        actor,
        "model.canary.start",
        f"{product}/{version}",
        {"line": line, "share": share, "max_excess_alarm_rate": max_excess_alarm_rate, "min_frames": min_frames},
    )
    return canary


def stop_canary(session: Session, product: str, line: str, actor: str) -> ModelCanary:
    """End ``line``'s canary of ``product``: all its frames go back to production."""
    ended = end_canaries(session, product, f"stopped by {actor}", line=line)
    if not ended:
        raise RegistryError(f"line {line!r} runs no canary of {product!r}")
    audit.append(session, actor, "model.canary.stop", f"{product}/{ended[0].version}", {"line": line})
    return ended[0]


@dataclass(frozen=True)
class AlarmRates:
    """How often each version raised an alarm on the same ``frames``."""

    frames: int
    candidate: float
    production: float

    @property
    def excess(self) -> float:
        return self.candidate - self.production


def _rates(session: Session, *where: Any) -> AlarmRates:
    frames, candidate, production = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((TrialScore.candidate_defect, 1), else_=0)), 0),
            func.coalesce(func.sum(case((TrialScore.production_defect, 1), else_=0)), 0),
        ).where(*where)
    ).one()
    if not frames:
        return AlarmRates(0, 0.0, 0.0)
    return AlarmRates(frames, candidate / frames, production / frames)


def canary_rates(session: Session, canary: ModelCanary) -> AlarmRates:
    """Alarm rates of candidate and production on the frames this canary judged."""
    return _rates(
        session,
        TrialScore.product_type == canary.product_type,
        TrialScore.candidate_version == canary.version,
        TrialScore.line_id == canary.line_id,
        TrialScore.canary.is_(True),
        TrialScore.scored_at >= canary.started_at,
    )


def guard_canary(session: Session, product: str, line: str) -> ModelCanary | None:
    """End ``line``'s canary of ``product`` when, after its ``min_frames``, the candidate's alarm rate exceeds
    production's by more than its margin; returns the canary so ended (None: it runs on, or there is none)."""
    canary = session.scalars(
        select(ModelCanary)
        .where(ModelCanary.product_type == product, ModelCanary.line_id == line, ModelCanary.ended_at.is_(None))
        .with_for_update(skip_locked=True)  # one replica's guard at a time; the others skip this round
    ).first()
    if canary is None:
        return None
    rates = canary_rates(session, canary)
    if rates.frames < canary.min_frames or rates.excess <= canary.max_excess_alarm_rate:
        return None
    reason = (
        f"automatic rollback: the candidate raised alarms on {rates.candidate:.1%} of {rates.frames} frames, "
        f"production on {rates.production:.1%} (margin {canary.max_excess_alarm_rate:.1%})"
    )
    canary.ended_at, canary.end_reason = clock.now(), reason
    audit.append(
        session,
        GUARD,
        "model.canary.rollback",
        f"{product}/{canary.version}",
        {"line": line, "frames": rates.frames, "candidate": rates.candidate, "production": rates.production},
    )
    return canary


@dataclass(frozen=True)
class LabelledRates:
    """Recall and false-positive rate of one version on the paired frames an inspector labelled."""

    defective: int
    good: int
    recall: float | None
    false_positive_rate: float | None


@dataclass(frozen=True)
class Comparison:
    """A candidate against production on live traffic, and what to do about it."""

    product: str
    candidate: str
    production_versions: list[str]
    frames: int
    canary_frames: int
    agreement: float | None
    alarms: AlarmRates
    histogram_edges: list[float]
    candidate_histogram: list[int]  # score / threshold, HISTOGRAM_BINS
    production_histogram: list[int]
    candidate_labelled: LabelledRates
    production_labelled: LabelledRates
    recommendation: str  # promote | reject | collect
    reason: str


def _labelled(truth: Sequence[bool], flagged: Sequence[bool]) -> LabelledRates:
    truth_a, flagged_a = np.asarray(truth, bool), np.asarray(flagged, bool)
    defective, good = int(truth_a.sum()), int((~truth_a).sum())
    recall = float((flagged_a & truth_a).sum() / defective) if defective else None
    fpr = float((flagged_a & ~truth_a).sum() / good) if good else None
    return LabelledRates(defective, good, recall, fpr)


def _histogram(ratios: np.ndarray) -> list[int]:
    clipped = np.clip(ratios, HISTOGRAM_BINS[0], HISTOGRAM_BINS[-1])
    return [int(n) for n in np.histogram(clipped, HISTOGRAM_BINS)[0]]


def _recommend(frames: int, alarms: AlarmRates, cand: LabelledRates, prod: LabelledRates) -> tuple[str, str]:
    if frames < MIN_COMPARED:
        return "collect", f"{frames} paired frames so far; a recommendation needs {MIN_COMPARED}"
    if cand.recall is not None and prod.recall is not None and cand.recall < prod.recall:
        return "reject", f"it finds fewer labelled defects ({cand.recall:.0%} against production's {prod.recall:.0%})"
    if alarms.excess > RECOMMEND_MAX_EXCESS:
        return "reject", (
            f"it raises more alarms ({alarms.candidate:.1%} of the same parts; production {alarms.production:.1%})"
        )
    return "promote", (
        f"on {frames} paired frames it raises alarms on {alarms.candidate:.1%} (production {alarms.production:.1%})"
        + (f" and finds {cand.recall:.0%} of labelled defects" if cand.recall is not None else "")
    )


def compare(session: Session, product: str, candidate: str) -> Comparison:
    """The candidate's paired frames against production: agreement, alarm rates, score distributions,
    labelled recall/FPR, and a recommendation."""
    thresholds = dict(
        session.execute(
            select(ModelVersion.version, ModelVersion.threshold).where(ModelVersion.product_type == product)
        ).all()
    )
    if candidate not in thresholds:
        raise RegistryError(f"product type {product!r} has no model version {candidate!r}")
    where = (TrialScore.product_type == product, TrialScore.candidate_version == candidate)
    rows = session.execute(
        select(
            TrialScore.production_version,
            TrialScore.production_score,
            TrialScore.production_defect,
            TrialScore.candidate_score,
            TrialScore.candidate_defect,
            TrialScore.canary,
            Label.kind,
        )
        .outerjoin(Inspection, Inspection.frame_id == TrialScore.frame_id)
        .outerjoin(Label, Label.inspection_id == Inspection.id)
        .where(*where)
    ).all()
    alarms = _rates(session, *where)
    frames = len(rows)

    def ratios(scores: list[float], versions: list[str]) -> np.ndarray:
        return np.array(
            [
                s / t if (t := thresholds.get(v)) and math.isfinite(t) and t > 0 else 0.0
                for s, v in zip(scores, versions, strict=True)
            ]
        )

    labelled = [r for r in rows if r.kind is not None]
    truth = [r.kind in DEFECTIVE_KINDS for r in labelled]
    cand_labelled = _labelled(truth, [r.candidate_defect for r in labelled])
    prod_labelled = _labelled(truth, [r.production_defect for r in labelled])
    recommendation, reason = _recommend(frames, alarms, cand_labelled, prod_labelled)
    return Comparison(
        product=product,
        candidate=candidate,
        production_versions=sorted({r.production_version for r in rows}),
        frames=frames,
        canary_frames=sum(r.canary for r in rows),
        agreement=sum(r.candidate_defect == r.production_defect for r in rows) / frames if frames else None,
        alarms=alarms,
        histogram_edges=[float(e) for e in HISTOGRAM_BINS],
        candidate_histogram=_histogram(ratios([r.candidate_score for r in rows], [candidate] * frames)),
        production_histogram=_histogram(
            ratios([r.production_score for r in rows], [r.production_version for r in rows])
        ),
        candidate_labelled=cand_labelled,
        production_labelled=prod_labelled,
        recommendation=recommendation,
        reason=reason,
    )
