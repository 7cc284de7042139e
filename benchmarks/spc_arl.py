"""How often each SPC rule set cries wolf, and how fast it sees a real shift: average run lengths.

    .venv/bin/python benchmarks/spc_arl.py [--runs 1000] [--seed 0] [--picture docs/img/spc_chart.png]

Every figure runs the real chart code (``diffqc.spc.SpcChart``) on N(0, 1) series: the in-control
average run length ARL0 (points until the first, false, signal; larger is better), the signals per
1000 in-control points (every firing counts: what a line's dashboard shows), and the run length
after a sustained shift of 1 and 2 sigma (smaller is better). "known limits": CL 0, sigma 1;
"Phase I, n good parts": the limits estimated from an n-point baseline as in the plant, a new
baseline each run. ``--picture`` also draws the example chart of docs/spc.md.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import numpy as np
from rich.progress import track

from diffqc.settings import SpcSettings
from diffqc.spc import IndividualsChart, Observation, SpcChart
from diffqc.spc.charts import D2

RULE_SETS = {
    "Western Electric 1-4 (default)": ["we1", "we2", "we3", "we4"],
    "Nelson 1-8": [f"nelson{i}" for i in range(1, 9)],
    "rule 1 only (3 sigma)": ["we1"],
    "EWMA (lambda 0.2, L 3)": ["ewma"],
    "CUSUM (k 0.5, h 5)": ["cusum"],
    "Western Electric 1-4 + EWMA + CUSUM": ["we1", "we2", "we3", "we4", "ewma", "cusum"],
}
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BLOCK = 200
LIMIT = 20_000  # a run without a signal this long counts as this long


def _rows(values: np.ndarray, start: int) -> list[Observation]:
    return [Observation(T0 + timedelta(seconds=start + i), float(v), False) for i, v in enumerate(values)]


def run_length(rules: list[str], rng: np.random.Generator, shift: float, baseline: int | None) -> int:
    """Monitored points until the first signal (1 = the first monitored point fired)."""
    chart = SpcChart("line", "product", SpcSettings(rules=rules, baseline_size=baseline or 2, history_size=15))
    if baseline is None:
        chart.limits = IndividualsChart(center_line=0.0, sigma=1.0, moving_range_mean=D2, baseline_size=0)
    else:
        chart.extend(_rows(rng.standard_normal(baseline), 0))
    start = chart.sample_count
    while chart.sample_count - start < LIMIT:
        signals = chart.extend(_rows(rng.standard_normal(BLOCK) + shift, chart.sample_count))
        if signals:
            return signals[0].sample_index - start + 1
    return LIMIT


def signals_per_1000(rules: list[str], rng: np.random.Generator, points: int = 200_000) -> float:
    chart = SpcChart("line", "product", SpcSettings(rules=rules, history_size=15))
    chart.limits = IndividualsChart(center_line=0.0, sigma=1.0, moving_range_mean=D2, baseline_size=0)
    fired = sum(len(chart.extend(_rows(rng.standard_normal(BLOCK), i))) for i in range(0, points, BLOCK))
    return 1000 * fired / points


def picture(path: str) -> None:
    """An in-control baseline, an outlier at 50 and a +1 sigma shift from 70, with EWMA and CUSUM on."""
    from diffqc.spc.render import render_chart

    scores = 0.5 + 0.1 * np.random.default_rng(4).standard_normal(130)
    scores[50] += 0.45
    scores[70:] += 0.1
    chart = SpcChart("line-1", "pcb", SpcSettings(rules=["we1", "we2", "we3", "we4", "ewma", "cusum"]))
    chart.extend(_rows(scores, 0))
    render_chart(chart, path, title="line-1 / pcb: a +1 sigma shift from sample 70")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="run lengths per figure (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--picture", help="also draw the example chart to this PNG")
    args = parser.parse_args()
    print(
        "| rule set | ARL0 known limits | ARL0 Phase I, 30 good parts | ARL0 Phase I, 100 good parts "
        "| signals / 1000 in-control points | ARL 1 sigma shift | ARL 2 sigma shift |"
        f"  ({args.runs} runs, seed {args.seed})"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rules in RULE_SETS.items():
        rng = np.random.default_rng(args.seed)
        arl = {}
        cases = (("known", 0.0, None), ("30", 0.0, 30), ("100", 0.0, 100), ("1", 1.0, None), ("2", 2.0, None))
        for key, shift, baseline in cases:
            lengths = [run_length(rules, rng, shift, baseline) for _ in track(range(args.runs), f"{name}: {key}")]
            arl[key] = np.mean(lengths)
        rate = signals_per_1000(rules, rng)
        print(
            f"| {name} | {arl['known']:.1f} | {arl['30']:.1f} | {arl['100']:.1f} | {rate:.1f} "
            f"| {arl['1']:.1f} | {arl['2']:.1f} |"
        )
    if args.picture:
        picture(args.picture)


if __name__ == "__main__":
    main()
