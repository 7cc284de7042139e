"""Drift of the good parts' scores: one tracker per (line, product type), a phase per model version.

    monitor = DriftMonitor(settings.drift)
    events = monitor.observe_verdict(verdict)      # each InspectionVerdict of qc.inspections.v1
    monitor.state("line-1")                        # [DriftState], one per product type

Only good parts (verdict pass) count: their score and each component score are the quantities.
The first ``reference_size`` good parts judged by a model version are the reference of that
phase (like the SPC baseline, a new model version starts a new one: it scores on its own scale).
Once ``window`` good parts followed the reference, and then every ``check_every`` good parts, the
last ``window`` good parts are compared with the reference (``diffqc.drift.stats.compare``: KS
with a Bonferroni correction, and PSI). A quantity drifts when its corrected p-value is below
``alpha`` and its PSI above ``psi_threshold``.

A ``DriftEvent`` fires once, when ``DIFFQC_DRIFT_CONFIRM_CHECKS`` checks in a row (2: the event comes one
``check_every`` later) find a drifting quantity; the tracker then stays "drifting", with no further
event, until a check finds no quantity significantly different from the reference at all (a
stricter test than the one that raised it, so a shift on the edge of the threshold does not raise
an event at every other check). Why two checks: every check of a phase compares with the same
reference, so ``alpha`` bounds each check, not a stream; one check alone gave a false event on 3 of
200 unchanged streams of 2000 good parts (33 checks each, tests/drift/streams.py), two in a row on
none of 400, for one check more of delay on a real shift.

The event proposes ``recalibrate`` when the score drifts while no component is significantly
different: what the detector sees is unchanged, only the fused score's scale moved (e.g. a
changed process weight in scoring), so refitting the threshold on recent good parts is enough.
Any other drift proposes ``retrain``: the parts look different to the model. It is a proposal for
a person; nothing is changed automatically.

Feeding rows one at a time or as a batch gives the same result, so ``drift_from_history`` (the
gateway, a restarted bridge) rebuilds exactly the tracker the live monitor built from the same rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np

from diffqc.core import clock
from diffqc.drift.stats import QuantityTest, compare
from diffqc.settings import DriftSettings
from diffqc.spc.monitor import is_defect
from diffqc.v1.scoring_pb2 import InspectionVerdict, Verdict

SCORE = "score"
RECALIBRATE, RETRAIN = "recalibrate", "retrain"
EVENT_HISTORY = 100  # events kept per tracker for the API


class DriftSample(NamedTuple):
    """One inspection as drift sees it; a row of ``diffqc.store.inspections.drift_history`` fits."""

    time: datetime
    score: float
    verdict: str | bool  # "defect" / "pass" (any case) or True for a defect
    components: Mapping[str, float] | None = None
    inspection_id: str | None = None
    model_version: str | None = None  # a new version starts a new phase (and reference)


@dataclass(frozen=True)
class DriftEvent:
    """A check found the good parts of a line and product type drifting from their reference."""

    line_id: str
    product_type: str
    model_version: str | None
    quantity: str  # the drifting quantity with the largest PSI
    quantities: tuple[str, ...]  # every drifting quantity
    ks_statistic: float
    p_value: float  # Bonferroni-corrected
    psi: float
    reference_size: int
    window_size: int
    time: datetime  # capture time of the part whose arrival ran the check
    sample_index: int  # that part's position among all the tracker's inspections (0 = the first)
    recommendation: str  # "recalibrate" or "retrain" (module doc)
    inspection_id: str | None = None

    @property
    def event_id(self) -> str:
        """Stable id (the same check of the same rows always gets it): consumers deduplicate on it."""
        return f"{self.line_id}/{self.product_type}/drift/{self.sample_index}"


@dataclass(frozen=True)
class DriftCheck:
    time: datetime
    sample_index: int
    tests: tuple[QuantityTest, ...]


@dataclass(frozen=True)
class DriftState:
    """Where a tracker stands, for the API and the dashboard banner."""

    line_id: str
    product_type: str
    model_version: str | None
    status: str  # "collecting" (reference or first window not complete), "stable" or "drifting"
    good_parts: int  # of the current phase
    reference_count: int  # good parts in the reference so far (reference_size once it is complete)
    reference_size: int
    window: int
    drifting_since: datetime | None
    last_check: DriftCheck | None
    events: tuple[DriftEvent, ...]  # the most recent, oldest first


def recommendation(tests: Iterable[QuantityTest]) -> str:
    tests = list(tests)
    score_drifts = any(t.quantity == SCORE and t.drifting for t in tests)
    components_moved = any(t.quantity != SCORE and t.significant for t in tests)
    return RECALIBRATE if score_drifts and not components_moved else RETRAIN


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return float(value)


def _checked(sample) -> DriftSample:
    """Validate one row before anything changes, so a bad row never half-updates a tracker."""
    if not isinstance(sample, DriftSample):
        sample = DriftSample(*sample)
    if not isinstance(sample.time, datetime):
        raise ValueError(f"sample time must be a datetime, got {sample.time!r}")
    if sample.time.tzinfo is None:
        raise ValueError(f"sample time {sample.time.isoformat()} has no time zone")
    components = {
        str(name): _number(value, f"component score {name!r}") for name, value in (sample.components or {}).items()
    }
    if SCORE in components:
        raise ValueError(f"a component may not be called {SCORE!r}: that is the fused score's name")
    return sample._replace(
        score=_number(sample.score, "sample score"),
        verdict=is_defect(sample.verdict),
        components=components,
        inspection_id=sample.inspection_id or None,
        model_version=sample.model_version or None,
    )


@dataclass
class DriftTracker:
    """The drift reference and window of one line and product type."""

    line_id: str
    product_type: str
    settings: DriftSettings = field(default_factory=DriftSettings)
    model_version: str | None = None  # of the current phase; None until a row names one
    sample_count: int = 0  # every inspection, good or not, since the tracker started

    def __post_init__(self) -> None:
        if not self.line_id or not self.product_type:
            raise ValueError(
                f"a tracker needs a line id and a product type, got {self.line_id!r}/{self.product_type!r}"
            )
        self.events: deque[DriftEvent] = deque(maxlen=EVENT_HISTORY)
        self._start_phase()

    def _start_phase(self) -> None:
        self.good_parts = 0
        self._pending: list[dict[str, float]] = []  # the reference while it is collected
        self.reference: dict[str, np.ndarray] = {}  # quantity -> values, once complete
        self._window: deque[dict[str, float]] = deque(maxlen=self.settings.window)
        self._after_reference = 0
        self._streak = 0  # consecutive checks that found a drifting quantity
        self.drifting_since: datetime | None = None
        self.last_check: DriftCheck | None = None

    @property
    def drifting(self) -> bool:
        return self.drifting_since is not None

    def extend(self, samples: Iterable) -> list[DriftEvent]:
        """Add inspections in time order; return the events they raise. All rows are checked first."""
        rows = [_checked(s) for s in samples]
        events = []
        for row in rows:
            index = self.sample_count
            self.sample_count += 1
            if row.model_version and row.model_version != self.model_version:
                if self.model_version is not None:  # a promotion or a rollback: a new reference
                    self._start_phase()
                self.model_version = row.model_version
            if row.verdict:  # defective parts are not the population the reference describes
                continue
            event = self._add_good(index, row)
            if event is not None:
                events.append(event)
                self.events.append(event)
        return events

    def _add_good(self, index: int, row: DriftSample) -> DriftEvent | None:
        self.good_parts += 1
        values = {SCORE: row.score, **(row.components or {})}
        if not self.reference:
            self._pending.append(values)
            if len(self._pending) >= self.settings.reference_size:
                self._fix_reference()
            return None
        self._window.append(values)
        self._after_reference += 1
        since_first = self._after_reference - self.settings.window
        if since_first < 0 or since_first % self.settings.check_every:
            return None
        return self._check(index, row)

    def _fix_reference(self) -> None:
        # The quantities are those every reference part has: the score and the components scoring reports.
        names = set.intersection(*(set(values) for values in self._pending))
        ordered = [SCORE, *sorted(names - {SCORE})]
        self.reference = {name: np.array([values[name] for values in self._pending]) for name in ordered}
        self._pending = []

    def _check(self, index: int, row: DriftSample) -> DriftEvent | None:
        half = self.settings.window // 2  # a quantity most window parts lack is not tested
        window = {name: [v[name] for v in self._window if name in v] for name in self.reference}
        tests = compare(
            self.reference,
            {name: values for name, values in window.items() if len(values) >= half},
            self.settings.alpha,
            self.settings.psi_threshold,
        )
        self.last_check = DriftCheck(row.time, index, tuple(tests))
        drifting = [t for t in tests if t.drifting]
        self._streak = self._streak + 1 if drifting else 0
        if self.drifting:
            if not any(t.significant for t in tests):
                self.drifting_since = None
            return None
        if self._streak < self.settings.confirm_checks:
            return None
        self.drifting_since = row.time
        worst = max(drifting, key=lambda t: t.psi)
        return DriftEvent(
            self.line_id,
            self.product_type,
            self.model_version,
            worst.quantity,
            tuple(t.quantity for t in drifting),
            worst.ks_statistic,
            worst.p_value,
            worst.psi,
            len(self.reference[SCORE]),
            len(window[worst.quantity]),
            row.time,
            index,
            recommendation(tests),
            row.inspection_id,
        )

    def state(self) -> DriftState:
        if self.drifting:
            status = "drifting"
        elif self.last_check is None:
            status = "collecting"
        else:
            status = "stable"
        return DriftState(
            self.line_id,
            self.product_type,
            self.model_version,
            status,
            self.good_parts,
            len(self.reference[SCORE]) if self.reference else len(self._pending),
            self.settings.reference_size,
            self.settings.window,
            self.drifting_since,
            self.last_check,
            tuple(self.events),
        )


def drift_from_history(
    line_id: str, product_type: str, history: Iterable, settings: DriftSettings | None = None
) -> DriftTracker:
    """The tracker of stored rows (time, score, verdict, components, inspection id, model version) in time order."""
    tracker = DriftTracker(line_id, product_type, settings or DriftSettings())
    tracker.extend(history)
    return tracker


class DriftMonitor:
    """The trackers of every (line, product type) a process has seen; not thread-safe (one consumer feeds it)."""

    def __init__(self, settings: DriftSettings | None = None):
        self.settings = settings or DriftSettings()
        self.trackers: dict[tuple[str, str], DriftTracker] = {}

    def tracker(self, line_id: str, product_type: str) -> DriftTracker:
        key = (line_id, product_type)
        if key not in self.trackers:
            self.trackers[key] = DriftTracker(line_id, product_type, self.settings)
        return self.trackers[key]

    def observe(self, line_id: str, product_type: str, sample) -> list[DriftEvent]:
        return self.tracker(line_id, product_type).extend([sample])

    def observe_verdict(self, verdict: InspectionVerdict) -> list[DriftEvent]:
        frame = verdict.frame
        if verdict.verdict == Verdict.VERDICT_NOT_INSPECTED:  # no score: a 0 would read as a perfect part
            return []
        if verdict.verdict not in (Verdict.VERDICT_PASS, Verdict.VERDICT_DEFECT):
            raise ValueError(f"inspection {verdict.inspection_id!r} has no verdict (VERDICT_UNSPECIFIED)")
        if not frame.HasField("capture_time"):
            raise ValueError(f"inspection {verdict.inspection_id!r}: its frame has no capture_time")
        sample = DriftSample(
            clock.to_datetime(frame.capture_time),
            verdict.score,
            verdict.verdict == Verdict.VERDICT_DEFECT,
            dict(verdict.component_scores),
            verdict.inspection_id,
            verdict.model.version or None,
        )
        return self.observe(frame.line_id, frame.product_type, sample)

    def rebuild(self, line_id: str, product_type: str, history: Iterable) -> DriftTracker:
        """Replace a tracker by the one its stored history gives (after a restart); its events are not returned."""
        tracker = drift_from_history(line_id, product_type, history, self.settings)
        self.trackers[(line_id, product_type)] = tracker
        return tracker

    def state(self, line_id: str, product_type: str | None = None) -> list[DriftState]:
        """The state of each product type on the line (or of the one asked for), sorted by product type."""
        return [
            tracker.state()
            for (line, product), tracker in sorted(self.trackers.items())
            if line == line_id and product_type in (None, "", product)
        ]
