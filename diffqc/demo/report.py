"""What the demo shows: verdicts against the generator's ground truth, as figures, a console table,
a score chart and an HTML report with the heatmap overlays of the parts worth looking at."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffqc.demo.line import Part
from diffqc.spc import Observation, chart_from_history
from diffqc.store.blobs import BlobStore
from diffqc.store.models import Inspection, Verdict

GOOD_EXAMPLES_PER_PRODUCT = 2  # the report shows every defect verdict and miss, and a few good parts


@dataclass(frozen=True)
class Outcome:
    part: Part
    inspection: Inspection

    @property
    def flagged(self) -> bool:
        return Verdict(self.inspection.verdict) is Verdict.DEFECT

    @property
    def kind(self) -> str:
        if self.part.defective:
            return "caught" if self.flagged else "missed"
        return "false alarm" if self.flagged else "good"


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def figures(outcomes: Sequence[Outcome]) -> dict:
    """recall, false-positive rate and latency percentiles of the inspected frames."""
    defective = [o for o in outcomes if o.part.defective]
    good = [o for o in outcomes if not o.part.defective]
    latencies = [o.inspection.latency_ms for o in outcomes]
    return {
        "frames_scored": len(outcomes),
        "defective_parts": len(defective),
        "defects_found": sum(o.flagged for o in outcomes),
        "recall": _rate(sum(o.flagged for o in defective), len(defective)),
        "fpr": _rate(sum(o.flagged for o in good), len(good)),
        "latency_ms_p50": float(np.percentile(latencies, 50)) if latencies else None,
        "latency_ms_p95": float(np.percentile(latencies, 95)) if latencies else None,
    }


def per_product(outcomes: Sequence[Outcome]) -> dict[str, dict]:
    products = sorted({o.part.product_type for o in outcomes})
    return {p: figures([o for o in outcomes if o.part.product_type == p]) for p in products}


def score_chart(outcomes: Sequence[Outcome], path: Path) -> None:
    """Scores over arrival order, one panel per product (each product has its own threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    products = sorted({o.part.product_type for o in outcomes})
    fig, axes = plt.subplots(len(products), 1, figsize=(10, 2.6 * len(products)), squeeze=False)
    for ax, product in zip(axes[:, 0], products, strict=True):
        mine = [(i, o) for i, o in enumerate(outcomes) if o.part.product_type == product]
        for defective, colour, label in ((False, "tab:green", "good part"), (True, "tab:red", "defective part")):
            xs = [i for i, o in mine if o.part.defective == defective]
            ax.scatter(xs, [outcomes[i].inspection.score for i in xs], s=14, c=colour, label=label)
        ax.axhline(mine[0][1].inspection.threshold, color="black", linestyle="--", label="threshold")
        ax.set_yscale("symlog", linthresh=1.0)  # scores can be negative (better than the mean good part)
        ax.set_title(product, fontsize=10)
        ax.set_ylabel("anomaly score")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("frame (arrival order)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def spc_charts(history: dict[tuple[str, str], list[tuple]], out: Path) -> dict[str, tuple[str, int]]:
    """line -> (its control-chart picture's file name, signals), from the stored verdicts
    (``diffqc.store.inspections.score_history``): the chart the bridge rebuilds at start."""
    from diffqc.spc.render import render_chart  # matplotlib: the charts extra, not the base install

    charts = {}
    for (line, product), rows in sorted(history.items()):
        chart = chart_from_history(line, product, [Observation(*row) for row in rows])
        name = f"spc-{line}.png"
        render_chart(chart, out / name, title=f"{line} ({product}): individuals chart")
        charts[line] = (name, len(chart.signals))
    return charts


def _showcase(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Every frame judged defective or missed, and a few good parts of each product."""
    shown: list[Outcome] = []
    good_seen: dict[str, int] = {}
    for o in outcomes:
        if o.kind == "good":
            good_seen[o.part.product_type] = good_seen.get(o.part.product_type, 0) + 1
            if good_seen[o.part.product_type] > GOOD_EXAMPLES_PER_PRODUCT:
                continue
        shown.append(o)
    return shown


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def html_report(
    outcomes: Sequence[Outcome], summary: dict, blobs: BlobStore, out: Path, charts: dict[str, tuple[str, int]]
) -> Path:
    """``out/report.html``: the figures, the score and control charts and heatmap overlays (PNG files beside it)."""
    heatmaps = out / "heatmaps"
    heatmaps.mkdir(parents=True, exist_ok=True)
    cards = []
    for o in _showcase(outcomes):
        ins = o.inspection
        image = ""
        if ins.heatmap_uri:
            name = f"{o.part.frame_id}.png"
            (heatmaps / name).write_bytes(blobs.get(ins.heatmap_uri))
            image = f'<img src="heatmaps/{name}" alt="heatmap overlay of {html.escape(o.part.frame_id)}">'
        cards.append(
            f'<figure class="{o.kind.replace(" ", "-")}">{image}<figcaption><b>{html.escape(o.kind)}</b> · '
            f"{html.escape(o.part.product_type)} · {html.escape(o.part.truth)}<br>score {ins.score:.2f} / "
            f"threshold {ins.threshold:.2f} · {len(ins.regions)} region(s) · {ins.latency_ms:.0f} ms<br>"
            f"<code>{html.escape(o.part.frame_id)}</code></figcaption></figure>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{f['frames_scored']}</td><td>{f['defective_parts']}</td>"
        f"<td>{_pct(f['recall'])}</td><td>{_pct(f['fpr'])}</td><td>{f['latency_ms_p50']:.0f}</td></tr>"
        for p, f in per_product(outcomes).items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffqc demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; width: 260px; border: 3px solid #999; padding: 4px; font-size: 12px; }}
figure img {{ width: 100%; }} .caught {{ border-color: #2a7; }} .missed {{ border-color: #d22; }}
.false-alarm {{ border-color: #e90; }} .good {{ border-color: #999; }}
</style></head><body>
<h1>diffqc demo</h1>
<p>{summary["frames_in"]} frames in, {summary["frames_scored"]} scored; recall {_pct(summary["recall"])},
false-positive rate {_pct(summary["fpr"])}; frame &rarr; verdict latency p50 {summary["latency_ms_p50"]:.0f} ms,
p95 {summary["latency_ms_p95"]:.0f} ms. Scores went to {html.escape(summary["scores_to"])}.</p>
<table><tr><th>product</th><th>frames</th><th>defective</th><th>recall</th><th>FPR</th><th>p50 ms</th></tr>
{rows}</table>
<h2>Scores</h2><img src="scores.png" alt="anomaly score per frame and product" style="max-width: 100%">
<p>Alerts delivered to the MES by the bridge: {summary["alerts_delivered"]} in {summary["alert_deliveries"]}
deliveries (one alert per defect verdict); line stops requested: {summary["line_stops"]}.</p>
<h2>SPC</h2>
{
        "".join(
            f'<h3>{html.escape(line)}: {n} signal(s)</h3><img src="{name}" alt="control chart of {html.escape(line)}" '
            f'style="max-width: 100%">'
            for line, (name, n) in charts.items()
        )
    }
<h2>Heatmaps</h2>
<p>Every part judged defective or missed, and a few good parts per product. Border: green caught,
red missed, orange false alarm, grey good.</p>
<div class="gallery">{"".join(cards)}</div>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
