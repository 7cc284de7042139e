"""One control chart's state as JSON, and the chart restored from it.

    state = chart_state(chart)                                   # a dict json.dumps writes as it is
    if compatible(state, settings.spc):
        chart = restore_chart(state, settings.spc, rebases)      # goes on exactly as ``chart`` would

The bridge keeps each chart's state in ``spc_charts`` after every point (``diffqc.store.spc_charts``);
the gateway, and a bridge replica that takes the line over, continue from it instead of replaying the
line's whole history. Everything a later point depends on is in it: the phase (model version, first
sample, limits or the baseline collected so far, where re-based limits came into force), the last
``MAX_WINDOW - 1`` standardized points the run rules look back on, the rules firing now, the EWMA and
CUSUM statistics, the lots and p-bar, and the recent points and signals the API shows. Floats are
written as Python writes them (the shortest text that reads back as the same number) and times as ISO
8601 with their offset, so a restored chart is the same chart, to the bit.

Re-bases are not in it: they live in ``spc_rebases``, and ``restore_chart`` takes them back as
``chart_from_history`` does (the ones not yet in force are those after the chart's newest point).
The settings that shape a chart are recorded with it: a state made under other ones is not
``compatible`` (the chart is rebuilt from the stored rows instead), and a state of another format
neither.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np

from diffqc.settings import SpcSettings
from diffqc.spc.charts import IndividualsChart
from diffqc.spc.monitor import P_CHART_RULE, ChartPoint, LotCount, Rebase, SpcChart, SpcSignal, describe

FORMAT = 1
# The settings a chart's numbers depend on (the re-base ones only act through spc_rebases).
SHAPING_SETTINGS = (
    "baseline_size",
    "rules",
    "ewma_lambda",
    "ewma_width",
    "cusum_k",
    "cusum_h",
    "p_baseline_lots",
    "history_size",
)


def _time(value: datetime) -> str:
    return value.isoformat()


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _limits(limits: IndividualsChart | None) -> list[float | int] | None:
    if limits is None:
        return None
    return [limits.center_line, limits.sigma, limits.moving_range_mean, limits.baseline_size]


def _signal(s: SpcSignal) -> list[Any]:
    """A signal without its chart's line and product type, and without its detail where that is the rule's."""
    detail = None if s.rule != P_CHART_RULE and s.detail == describe(s.rule) else s.detail
    return [s.rule, detail, s.value, s.center_line, s.ucl, s.lcl, _time(s.time), s.sample_index, s.lot, s.inspection_id]


def _shaping(settings: SpcSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in SHAPING_SETTINGS}


def compatible(state: dict[str, Any], settings: SpcSettings) -> bool:
    """Whether ``state`` can be continued under ``settings``: same format, made under the same chart settings."""
    return state.get("format") == FORMAT and state.get("settings") == _shaping(settings)


def chart_state(chart: SpcChart) -> dict[str, Any]:
    """The chart's state (all but its pending re-bases) as plain JSON types."""
    return {
        "format": FORMAT,
        "settings": _shaping(chart.settings),
        "line_id": chart.line_id,
        "product_type": chart.product_type,
        "sample_count": chart.sample_count,
        "model_version": chart.model_version,
        "phase_start": chart.phase_start,
        "rebased_at": chart.rebased_at,
        "limits": _limits(chart.limits),
        "baseline": list(chart._baseline),
        "tail_z": chart._tail_z.tolist(),
        "active": {rule: [_time(since), index] for rule, (since, index) in chart._active.items()},
        "ewma": [chart._ewma.value, chart._ewma.count],
        "cusum": [chart._cusum.upper, chart._cusum.lower],
        "p_bar": chart.p_bar,
        "lots": [
            [lot.lot, _time(lot.last_time), lot.inspected, lot.defective, lot.last_index, lot.closed]
            for lot in chart.lots.values()
        ],
        "current_lot": chart._current_lot,
        "last_ids": list(chart.last_ids),
        "previous_score": chart.previous_score,
        "points": [[p.sample_index, _time(p.time), *p[2:]] for p in chart.points],
        "signals": [_signal(signal) for signal in chart.signals],
    }


def restore_chart(state: dict[str, Any], settings: SpcSettings, rebases: Iterable[Rebase] = ()) -> SpcChart:
    """The chart ``state`` describes, run with ``settings`` (check ``compatible`` first), with those of
    ``rebases`` (all of the chart's, as for ``chart_from_history``) that are not yet in force pending."""
    chart = SpcChart(state["line_id"], state["product_type"], settings)
    limits = state["limits"]
    chart._start_phase(IndividualsChart(*limits) if limits is not None else None)
    chart.sample_count, chart.model_version = state["sample_count"], state["model_version"]
    chart.phase_start, chart.rebased_at, chart.p_bar = state["phase_start"], state["rebased_at"], state["p_bar"]
    chart._baseline = list(state["baseline"])
    chart._tail_z = np.array(state["tail_z"], dtype=float)
    chart._active = {rule: (_parse_time(since), index) for rule, (since, index) in state["active"].items()}
    chart._ewma.value, chart._ewma.count = state["ewma"]
    chart._cusum.upper, chart._cusum.lower = state["cusum"]
    for lot, last_time, inspected, defective, last_index, closed in state["lots"]:
        chart.lots[lot] = LotCount(lot, _parse_time(last_time), inspected, defective, last_index, closed)
    chart._current_lot = state["current_lot"]
    chart.last_ids = list(state["last_ids"])
    chart.previous_score = state["previous_score"]
    chart.points.extend(ChartPoint(index, _parse_time(time), *rest) for index, time, *rest in state["points"])
    chart.last_point = chart.points[-1] if chart.points else None
    chart.signals.extend(
        SpcSignal(
            chart.line_id,
            chart.product_type,
            rule,
            describe(rule) if detail is None else detail,
            value,
            cl,
            ucl,
            lcl,
            _parse_time(time),
            *rest,
        )
        for rule, detail, value, cl, ucl, lcl, time, *rest in state["signals"]
    )
    newest = chart.last_point.time if chart.last_point is not None else None
    for rebase in rebases:
        if newest is None or rebase.effective_from > newest:
            chart.rebase(rebase)
    return chart
