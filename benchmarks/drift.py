"""How often drift detection cries wolf, and how fast it sees a real shift of the good parts.

    .venv/bin/python -m benchmarks.drift [--product pcb] [--parts 400] [--seeds 50] [--frames 5000]
                                         [--threads 2] [--cache bench-out/drift-pool-pcb-400.npz]

The score streams are the shipped default detector's (``diffqc.detector.default``) on the demo's
synthetic good parts of ``--product`` (``render_sample``, the designs the model learned), scored
once per condition into a pool (cached in ``--cache``): as rendered, brighter (the image times
1.02, 1.05, 1.10, clipped, as a lamp or an exposure change would), and with more sensor noise
(Gaussian, sigma 0.003, 0.01 and 0.02 on [0, 1] pixels: a texture change). A part the model
flags (score > its threshold) is a defect to the monitor, as on the line; the process component is 0 (no process
parameters out of range).

Every stream then draws parts at random (with replacement) from a pool, seed by seed, and runs
the real ``diffqc.drift.DriftTracker`` with the ``DIFFQC_DRIFT_*`` settings (defaults unless set):

(a) false drift events on ``--frames`` undrifted frames per seed, per 1000 good parts monitored
    (after the reference);
(b) frames from the start of a shift (frame ``--shift-at``) to its drift event, per condition:
    median, 90th percentile, worst, and the share of seeds that raised it within ``--max-after``
    frames; an event before the shift counts as a false alarm. Drift watches good parts only: a
    shift that makes the model flag (nearly) every part leaves no good part to test, and is the
    defect rate's to see (the p-chart, docs/spc.md), so the table shows the share flagged too.

Resampling a pool of ``--parts`` parts repeats parts within a window; that only makes the KS test
slightly conservative. Score the pool once with a large ``--parts`` (400 by default, about 2400
detector calls), then vary ``--seeds`` and ``--frames`` on the cache.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from diffqc.drift import DriftSample, DriftTracker
from diffqc.settings import DriftSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNDRIFTED = "none"
# name -> (kind, amount): the conditions the pool is scored under.
CONDITIONS: dict[str, tuple[str, float]] = {
    UNDRIFTED: ("brightness", 1.0),
    "brightness x1.02": ("brightness", 1.02),
    "brightness x1.05": ("brightness", 1.05),
    "brightness x1.10": ("brightness", 1.10),
    "noise sigma 0.003": ("noise", 0.003),
    "noise sigma 0.01": ("noise", 0.01),
    "noise sigma 0.02": ("noise", 0.02),
}
BATCH = 8


def _shifted(image: np.ndarray, kind: str, amount: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "brightness":
        return np.clip(image * amount, 0, 1)
    return np.clip(image + rng.normal(0, amount, image.shape), 0, 1)


def score_pool(product: str, parts: int, threads: int) -> dict[str, np.ndarray]:
    """Per condition: (parts, 1 + K) rows of score and the components in ``COMPONENTS`` order; plus the threshold."""
    import torch

    from diffqc.core.components import COMPONENTS
    from diffqc.data.synth import render_sample
    from diffqc.detector import Detector
    from diffqc.detector.default import DESIGN_SEED, default_model_path

    torch.set_num_threads(threads)
    det = Detector.load(default_model_path(product))
    images = [render_sample(product, "drift", i, size=(256, 256), seed=DESIGN_SEED).image for i in range(parts)]
    pool: dict[str, np.ndarray] = {"threshold": np.array([det.threshold(product)])}
    pool["components"] = np.array(COMPONENTS)
    for number, (name, (kind, amount)) in enumerate(CONDITIONS.items()):
        rng = np.random.default_rng(number)  # the noise of each condition, the same every run
        started, rows = time.perf_counter(), []
        for start in range(0, parts, BATCH):
            batch = np.stack([_shifted(im, kind, amount, rng) for im in images[start : start + BATCH]])
            prediction = det.predict(batch.transpose(0, 3, 1, 2).astype(np.float32), product)
            rows.append(np.column_stack([prediction.score, prediction.components]))
        pool[name] = np.concatenate(rows).astype(float)
        print(f"scored {parts} parts, {name}: {time.perf_counter() - started:.0f} s", flush=True)
    return pool


def load_pool(path: Path, product: str, parts: int, threads: int) -> dict[str, np.ndarray]:
    if path.is_file():
        with np.load(path) as cached:
            pool = {name: cached[name] for name in cached.files}
        if all(name in pool for name in CONDITIONS):
            return pool
    pool = score_pool(product, parts, threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **pool)
    return pool


class Stream:
    """Feeds a tracker parts drawn from the pools, one frame at a time."""

    def __init__(self, pool: dict[str, np.ndarray], settings: DriftSettings, seed: int):
        self.pool, self.rng = pool, np.random.default_rng(seed)
        self.threshold = float(pool["threshold"][0])
        self.names = [str(n) for n in pool["components"]]
        self.tracker = DriftTracker("line", "product", settings)
        self.frame = 0

    def feed(self, condition: str, frames: int) -> list[int]:
        """Feed ``frames`` frames; the frame numbers at which events fired."""
        rows = self.pool[condition][self.rng.integers(0, len(self.pool[condition]), frames)]
        fired = []
        for row in rows:
            score, components = float(row[0]), dict(zip(self.names, map(float, row[1:]), strict=True))
            components["process"] = 0.0  # the platform's component: the demo's parameters are in range
            sample = DriftSample(
                T0 + timedelta(seconds=self.frame), score, score > self.threshold, components, None, "1"
            )
            if self.tracker.extend([sample]):
                fired.append(self.frame)
            self.frame += 1
        return fired


def false_alarms(pool, settings: DriftSettings, seeds: int, frames: int) -> tuple[int, int, Counter]:
    events, monitored, by_quantity = 0, 0, Counter[str]()
    for seed in range(seeds):
        stream = Stream(pool, settings, seed)
        events += len(stream.feed(UNDRIFTED, frames))
        monitored += max(0, stream.tracker.good_parts - settings.reference_size)
        by_quantity.update(e.quantity for e in stream.tracker.events)
    return events, monitored, by_quantity


def delays(pool, settings: DriftSettings, condition: str, seeds: int, shift_at: int, max_after: int) -> dict:
    found: list[int] = []
    early, recommendations = 0, Counter[str]()
    for seed in range(seeds):
        stream = Stream(pool, settings, 10_000 + seed)
        if stream.feed(UNDRIFTED, shift_at):
            early += 1
            continue
        fired = stream.feed(condition, max_after)
        if fired:
            found.append(fired[0] - shift_at + 1)
            recommendations[stream.tracker.events[-1].recommendation] += 1
    return {"delays": found, "early": early, "recommendations": recommendations}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--product", default="pcb")
    parser.add_argument("--parts", type=int, default=400, help="good parts scored per condition (default 400)")
    parser.add_argument("--seeds", type=int, default=50, help="streams per figure (default 50)")
    parser.add_argument("--frames", type=int, default=5000, help="frames per undrifted stream (default 5000)")
    parser.add_argument("--shift-at", type=int, default=600, help="frame where the shift starts (default 600)")
    parser.add_argument("--max-after", type=int, default=2000, help="frames watched after the shift (default 2000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for scoring the pool")
    parser.add_argument(
        "--confirm",
        type=int,
        default=DriftSettings().confirm_checks,
        help="checks in a row that raise the event (default: DIFFQC_DRIFT_CONFIRM_CHECKS' default)",
    )
    parser.add_argument("--cache", type=Path, help="default: bench-out/drift-pool-<product>-<parts>.npz")
    args = parser.parse_args()
    settings = DriftSettings(confirm_checks=args.confirm)
    cache = args.cache or Path("bench-out") / f"drift-pool-{args.product}-{args.parts}.npz"
    pool = load_pool(cache, args.product, args.parts, args.threads)
    threshold = float(pool["threshold"][0])
    base = pool[UNDRIFTED][:, 0]
    print(
        f"\n{args.product}: {len(base)} parts per condition (cache {cache}); threshold {threshold:.3f}; "
        f"undrifted score mean {base.mean():.3f} sd {base.std():.3f}, flagged {np.mean(base > threshold):.1%}"
    )
    print(
        f"settings: reference {settings.reference_size}, window {settings.window}, check every "
        f"{settings.check_every}, alpha {settings.alpha:g}, PSI > {settings.psi_threshold:g}, {args.confirm} check(s) "
        "in a row\n"
    )
    events, monitored, by_quantity = false_alarms(pool, settings, args.seeds, args.frames)
    rate = 1000 * events / monitored if monitored else float("nan")
    print("| undrifted streams | frames | good parts monitored | false drift events | per 1000 good parts |")
    print("|---|---|---|---|---|")
    print(f"| {args.seeds} | {args.frames} each | {monitored} | {events} | {rate:.3f} |")
    if by_quantity:
        print(f"false events by quantity: {dict(by_quantity)}")
    print(
        f"\n| shift (from frame {args.shift_at}) | mean score | flagged | detected within {args.max_after} "
        "| frames to the event: median | p90 | worst | recommendation |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for condition in CONDITIONS:
        if condition == UNDRIFTED:
            continue
        result = delays(pool, settings, condition, args.seeds, args.shift_at, args.max_after)
        found = np.array(result["delays"])
        scores = pool[condition][:, 0]
        stats = (
            f"{np.median(found):.0f} | {np.percentile(found, 90):.0f} | {found.max()}" if found.size else "- | - | -"
        )
        print(
            f"| {condition} | {scores.mean():.3f} | {np.mean(scores > threshold):.1%} | "
            f"{found.size}/{args.seeds - result['early']} | {stats} | {dict(result['recommendations'])} |"
        )
        if result["early"]:
            print(f"  ({result['early']} streams raised an event before the shift: false alarms)")
    print(
        f"\ncommand: .venv/bin/python -m benchmarks.drift --product {args.product} --parts {args.parts} "
        f"--seeds {args.seeds} --frames {args.frames} --shift-at {args.shift_at} --max-after {args.max_after} "
        f"--confirm {args.confirm}"
    )


if __name__ == "__main__":
    main()
