"""The control-chart picture of one SpcChart: the individuals chart, the moving-range chart, and the EWMA
and CUSUM charts of the same points (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffqc.spc.monitor import P_CHART_RULE, SpcChart  # noqa: E402

SIGNAL_COLOR = "#ff00ff"  # no other element uses it, so a signal stands out (and a test can find it)
LIMIT_COLOR = "#b22222"


def render_chart(chart: SpcChart, path: str | Path, title: str | None = None) -> Path:
    """Scores (baseline grey, monitored blue), CL/UCL/LCL and the +-1/2 sigma zones, each signal circled
    and labelled with its rule; underneath, the moving ranges with their UCL, the EWMA with its limits
    and the two CUSUMs with the decision interval h."""
    if not chart.points:
        raise ValueError(f"chart {chart.line_id}/{chart.product_type} has no points to draw")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    index = np.array([p.sample_index for p in chart.points])
    scores = np.array([p.score for p in chart.points])
    monitored = np.array([p.monitored for p in chart.points])
    figure, (top, bottom, ewma_axes, cusum_axes) = plt.subplots(
        4, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 1, 1.3, 1.3)
    )
    try:
        top.plot(index, scores, color="#9aa5b1", linewidth=0.8, zorder=1)
        top.scatter(index[~monitored], scores[~monitored], s=10, color="#9aa5b1", label="baseline", zorder=2)
        top.scatter(index[monitored], scores[monitored], s=10, color="#1f77b4", label="monitored", zorder=2)
        limits = chart.limits
        if limits is not None:
            for k in (1, 2):
                top.axhspan(
                    limits.center_line - k * limits.sigma,
                    limits.center_line + k * limits.sigma,
                    color="#2ca02c",
                    alpha=0.06,
                    zorder=0,
                )
            top.axhline(limits.center_line, color="#2ca02c", linewidth=1, label=f"CL {limits.center_line:.4g}")
            top.axhline(limits.ucl, color=LIMIT_COLOR, linestyle="--", linewidth=1, label=f"UCL {limits.ucl:.4g}")
            top.axhline(limits.lcl, color=LIMIT_COLOR, linestyle="--", linewidth=1, label=f"LCL {limits.lcl:.4g}")
            top.axvline(
                index[0] + limits.baseline_size - 0.5 if not monitored.all() else index[0],
                color="#555555",
                linestyle=":",
                linewidth=1,
            )
            bottom.axhline(limits.moving_range_mean, color="#2ca02c", linewidth=1)
            bottom.axhline(limits.moving_range_ucl, color=LIMIT_COLOR, linestyle="--", linewidth=1)
        _mark_signals(top, chart, index[0])
        bottom.plot(index[1:], np.abs(np.diff(scores)), color="#1f77b4", linewidth=0.8, marker=".", markersize=3)
        _memory_charts(ewma_axes, cusum_axes, chart)
        top.set_title(title or f"SPC {chart.line_id} / {chart.product_type}: individuals, moving range, EWMA, CUSUM")
        top.set_ylabel("anomaly score")
        bottom.set_ylabel("moving range")
        cusum_axes.set_xlabel("sample")
        top.legend(loc="upper left", fontsize=8, ncols=3)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
    finally:
        plt.close(figure)
    return path


def _memory_charts(ewma_axes, cusum_axes, chart: SpcChart) -> None:
    points = [p for p in chart.points if p.ewma is not None]
    index = np.array([p.sample_index for p in points])
    ewma_axes.set_ylabel("EWMA (sigma)")
    cusum_axes.set_ylabel("CUSUM (sigma)")
    if not points:
        return
    limit = np.array([p.ewma_limit for p in points])
    ewma_axes.plot(index, [p.ewma for p in points], color="#1f77b4", linewidth=0.9)
    ewma_axes.plot(index, limit, color=LIMIT_COLOR, linestyle="--", linewidth=1)
    ewma_axes.plot(index, -limit, color=LIMIT_COLOR, linestyle="--", linewidth=1)
    ewma_axes.axhline(0, color="#2ca02c", linewidth=1)
    cusum_axes.plot(index, [p.cusum_upper for p in points], color="#1f77b4", linewidth=0.9, label="C+")
    cusum_axes.plot(index, [-(p.cusum_lower or 0.0) for p in points], color="#ff7f0e", linewidth=0.9, label="-C-")
    for h in (chart.settings.cusum_h, -chart.settings.cusum_h):
        cusum_axes.axhline(h, color=LIMIT_COLOR, linestyle="--", linewidth=1)
    cusum_axes.legend(loc="upper left", fontsize=8, ncols=2)


def _mark_signals(axes, chart: SpcChart, first_index: int) -> None:
    rules_at: dict[int, list[str]] = {}
    score_at = {p.sample_index: p.score for p in chart.points}
    for signal in chart.signals:
        if signal.rule != P_CHART_RULE and signal.sample_index >= first_index:
            rules_at.setdefault(signal.sample_index, []).append(signal.rule.removeprefix("nelson"))
    if not rules_at:
        return
    at = sorted(rules_at)
    axes.scatter(
        at,
        [score_at[i] for i in at],
        s=60,
        facecolors="none",
        edgecolors=SIGNAL_COLOR,
        linewidths=1.5,
        label="signal",
        zorder=3,
    )
    for i in at:
        axes.annotate(
            ",".join(sorted(set(rules_at[i]))),
            (i, score_at[i]),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=7,
            color=SIGNAL_COLOR,
        )
