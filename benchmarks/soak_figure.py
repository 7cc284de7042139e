"""The soak as a picture: each frame's ingestion-to-verdict time over the run with the faults shaded,
verdicts per minute, and the resident memory of every process.

    .venv/bin/python -m benchmarks.soak_figure var/soak/timeline.json docs/img/soak.png

The timeline is what ``benchmarks.soak`` writes next to soak.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
import numpy as np  # noqa: E402

from diffqc.infra.pipeline import stage_of  # noqa: E402

VERDICT_COLOURS = {"pass": "#4c72b0", "defect": "#c44e52", "not_inspected": "#dd8452"}


def fault_colour(what: str) -> str:
    if "SIGKILL" in what:
        return "#bbbbbb"
    if "blob volume" in what:
        return "#8172b3"
    return "#e5ae38"  # a dependency away


def draw(timeline: dict, out: Path) -> None:
    frames = timeline["frames"]
    t0 = min(f[0] for f in frames)
    fig, (lat, rate, mem) = plt.subplots(3, 1, figsize=(12, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 2]})
    for fault in timeline["faults"]:
        start, end = (fault["started"] - t0) / 60, (fault["ended"] - t0) / 60
        for ax in (lat, rate):
            ax.axvspan(start, end, color=fault_colour(fault["what"]), alpha=0.35, lw=0)
    for verdict, colour in VERDICT_COLOURS.items():
        mine = np.array([(f[0], f[1]) for f in frames if f[2] == verdict and f[1] is not None])
        if mine.size:
            lat.scatter((mine[:, 0] - t0) / 60, mine[:, 1] - mine[:, 0], s=2, color=colour, label=verdict)
    lat.set_yscale("log")
    lat.set_ylabel("ingestion → verdict (s)")
    handles, labels = lat.get_legend_handles_labels()
    for what, colour in (
        ("a process SIGKILLed", "#bbbbbb"),
        ("a dependency away", "#e5ae38"),
        ("blob volume filled", "#8172b3"),
    ):
        handles.append(plt.Rectangle((0, 0), 1, 1, color=colour, alpha=0.35))
        labels.append(what)
    lat.legend(handles, labels, loc="upper left", ncol=3, fontsize=8, markerscale=4)
    whats = [f["what"] for f in timeline["faults"]]
    kills, fills = sum("SIGKILL" in w for w in whats), sum("blob volume" in w for w in whats)
    lat.set_title(
        f"chaos soak: {len(frames)} frames; {kills} processes SIGKILLed, {len(whats) - kills - fills} dependency "
        f"outages, the blob volume filled {fills}×"
    )

    judged = np.array(sorted(f[1] for f in frames if f[1] is not None))
    minutes = np.arange(0, (judged[-1] - t0) / 60 + 1, 1.0)
    per_minute, _ = np.histogram((judged - t0) / 60, bins=minutes)
    rate.step(minutes[:-1], per_minute, where="post", color="#55a868")
    rate.set_ylabel("verdicts / min")

    palette = plt.get_cmap("tab20")
    by_service: dict[str, tuple] = {}
    for name, samples in sorted(timeline["memory"].items()):
        service = stage_of(name.split(" (pid")[0])  # one colour and legend entry for all its processes
        first = service not in by_service
        if first:
            by_service[service] = palette(len(by_service) % 20)
        service_colour = by_service[service]
        points = np.array(samples)
        mem.plot(
            (points[:, 0] - t0) / 60, points[:, 1] / 2**20, lw=1, color=service_colour, label=service if first else None
        )
    mem.set_ylabel("resident memory (MB)")
    mem.set_xlabel("minutes since the first frame")
    mem.legend(loc="upper left", ncol=5, fontsize=8)
    mem.set_title("every process, its replicas and restarts in the colour of its service", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("timeline", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    draw(json.loads(args.timeline.read_text()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
