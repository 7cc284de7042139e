"""Fast and data-efficient detector benchmark: distillation, adaptive augmentation, onboarding.

    make bench-fast                                               # every part on every data set (hours)
    make bench-fast ARGS="--distill pcb,brick --ada pcb --onboard pcb"
    .venv/bin/python -m benchmarks.fast --help

One run, three parts, on the data sets of the detector benchmark (benchmarks/detector.py):

- distill: the one-step consistency student (``diffqc distill``) against its k = 5 DDIM teacher and
  against the teacher's plain one-step x0 prediction, all three calibrated on the same held-out
  images; latency as ``diffqc evaluate`` measures it (p50 per image) and, side by side, interleaved
  calls on one image (the speed-up). Teachers: the shipped default models where one exists (they
  were trained on exactly this data), else trained here for --teacher-minutes.
- ada: 20 good training images, trained with and without adaptive augmentation, same budget, and
  with the augmentations forced on (p -> 1), which shows what augmentation itself does here.
- onboard: for each product type, a base model trained on the other procedural types of the same
  channel count (one network takes one), fine-tuned on 10 good images of it (``diffqc onboard``),
  against a model trained from scratch on the same 10 images with the same budget. The onboarding
  time is the whole ``onboard_detector`` call.

Each (part, data set) runs in its own process. Writes <out>/results.json, <out>/table.md and
<out>/fast.png, and prints the tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.detector import DATASETS, PROCEDURAL, REPO, build, eprint, fmt

TEACHER_STEPS = 5
ADA_IMAGES = 20
ONBOARD_IMAGES = 10
FORCED = "augmentation forced on (p -> 1)"


def subset(root: Path, n: int, out: Path) -> Path:
    """A copy of the data set ``root`` whose train/good holds only its first ``n`` images (test links back)."""
    dest = out / f"{root.name}-{n}"
    if dest.exists():
        return dest
    good = sorted((root / "train" / "good").iterdir())[:n]
    (dest / "train" / "good").mkdir(parents=True)
    for p in good:
        shutil.copy2(p, dest / "train" / "good" / p.name)
    for name in ("test", "ground_truth"):
        if (root / name).exists():
            (dest / name).symlink_to((root / name).resolve())
    if (root / "dataset.json").exists():
        shutil.copy2(root / "dataset.json", dest / "dataset.json")
    return dest


def _evaluate(det, root: Path) -> dict:
    from diffqc.detector.evaluation import evaluate_detector

    ev = evaluate_detector(det, root)
    return {k: ev.metrics.get(k) for k in ("image_auroc", "pixel_auroc", "pro", "recall_at_fpr_3pct", "latency_ms_p50")}


def _with_steps(det, k: int):
    """A detector sharing ``det``'s network with k reconstruction steps and its own calibration."""
    from diffqc.detector import Detector

    cfg = copy.deepcopy(det.cfg)
    cfg.recon.steps = k
    return Detector(cfg, det.model, copy.deepcopy(det.products), dict(det.metadata))


def _interleaved_ms(detectors: dict, image: np.ndarray, product: str, repeats: int = 7) -> dict:
    """Median ms per predict call of each detector, calls alternating so load hits all alike."""
    x = image.transpose(2, 0, 1)[None]
    times = {k: [] for k in detectors}
    for d in detectors.values():
        d.predict(x, product)  # warm-up
    for _ in range(repeats):
        for k, d in detectors.items():
            t0 = time.perf_counter()
            d.predict(x, product)
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: float(np.median(v)) for k, v in times.items()}


def run_distill(name: str, args) -> dict:
    import torch

    from diffqc.data.images import read_image
    from diffqc.data.mvtec import list_samples
    from diffqc.detector import Detector, DetectorConfig, distill_detector, train_detector
    from diffqc.detector.default import DEFAULT_MODELS_DIR
    from diffqc.detector.fit import calibrate_products, load_training_sets

    torch.set_num_threads(args.threads)
    root = build(name, args.data_dir)
    log = lambda m: eprint(f"[distill {name}] {m}")  # noqa: E731
    shipped = DEFAULT_MODELS_DIR / name
    if (shipped / "metadata.json").is_file() and not args.train_teachers:
        teacher, source = Detector.load(shipped), "shipped default model"
    else:
        teacher = train_detector(
            root, DetectorConfig(), minutes=args.teacher_minutes, seed=args.seed, progress=not args.quiet, log=log
        )
        source = f"trained {args.teacher_minutes:g} min"
    product = teacher.product_names[0]
    sets = load_training_sets({product: root}, teacher.cfg.train)
    variants = {
        f"teacher k={TEACHER_STEPS}": _with_steps(teacher, TEACHER_STEPS),
        "teacher k=1": _with_steps(teacher, 1),
    }
    for det in variants.values():
        calibrate_products(det, sets.images, sets.splits, progress=False, log=log)
    t0 = time.monotonic()
    variants["student (1 step)"] = distill_detector(
        teacher,
        {product: root},
        minutes=args.distill_minutes,
        intervals=TEACHER_STEPS,
        progress=not args.quiet,
        log=log,
    )
    distill_s = time.monotonic() - t0
    rows = {k: _evaluate(d, root) for k, d in variants.items()}
    image = read_image(list_samples(root, "test")[0].path)
    side = _interleaved_ms(variants, image, product)
    for k in rows:
        rows[k]["interleaved_ms"] = side[k]
    return {
        "part": "distill",
        "dataset": name,
        "teacher": source,
        "rows": rows,
        "distill_steps": variants["student (1 step)"].metadata["training"]["steps"],
        "distill_s": round(distill_s, 1),
        "image": "x".join(map(str, image.shape[1::-1])),
    }


def run_ada(name: str, args) -> dict:
    import torch

    from diffqc.detector import DetectorConfig, train_detector

    torch.set_num_threads(args.threads)
    root = subset(build(name, args.data_dir), ADA_IMAGES, args.data_dir / "subsets")
    rows = {}
    arms = {
        "without ADA": {"ada": False},
        "with ADA": {"ada": True},
        FORCED: {"ada": True, "ada_target": -1.0},
    }  # the gap is always above -1: p climbs to 1 and stays
    for label, train in arms.items():
        cfg = DetectorConfig().with_overrides({"train": train})
        det = train_detector(
            root,
            cfg,
            minutes=args.ada_minutes,
            seed=args.seed,
            progress=not args.quiet,
            log=lambda m, label=label: eprint(f"[ada {name}, {label}] {m}"),
        )
        training = det.metadata["training"]
        rows[label] = {
            **_evaluate(det, root),
            "steps": training["steps"],
            "gap": training["overfitting_gap"],
            "ada": training.get("ada"),
        }
    return {"part": "ada", "dataset": name, "images": ADA_IMAGES, "rows": rows}


def run_onboard(name: str, args) -> dict:
    import torch

    from diffqc.data.images import read_image
    from diffqc.data.mvtec import list_samples
    from diffqc.detector import DetectorConfig, train_detector
    from diffqc.detector.onboard import onboard_detector

    torch.set_num_threads(args.threads)
    roots = {p: build(p, args.data_dir) for p in PROCEDURAL}
    channels = {p: read_image(list_samples(r, "test")[0].path).shape[2] for p, r in roots.items()}
    others = [p for p in PROCEDURAL if p != name and channels[p] == channels[name]]  # one network, one channel count
    t0 = time.monotonic()
    base = train_detector(
        {p: roots[p] for p in others},
        DetectorConfig(),
        minutes=args.base_minutes,
        seed=args.seed,
        progress=not args.quiet,
        log=lambda m: eprint(f"[base for {name}] {m}"),
    )
    base_s = time.monotonic() - t0
    root = subset(roots[name], ONBOARD_IMAGES, args.data_dir / "subsets")
    t0 = time.monotonic()
    onboarded = onboard_detector(
        base,
        root,
        minutes=args.onboard_minutes,
        seed=args.seed,
        progress=not args.quiet,
        log=lambda m: eprint(f"[onboard {name}] {m}"),
    )
    onboard_s = time.monotonic() - t0
    t0 = time.monotonic()
    scratch = train_detector(
        root,
        DetectorConfig(),
        minutes=args.onboard_minutes,
        seed=args.seed,
        progress=not args.quiet,
        log=lambda m: eprint(f"[scratch {name}] {m}"),
    )
    scratch_s = time.monotonic() - t0
    rows = {
        "onboarded from the base": {**_evaluate(onboarded, root), "minutes": round(onboard_s / 60, 2)},
        "from scratch, same budget": {**_evaluate(scratch, root), "minutes": round(scratch_s / 60, 2)},
    }
    return {
        "part": "onboard",
        "dataset": name,
        "images": ONBOARD_IMAGES,
        "base_products": others,
        "base_minutes": round(base_s / 60, 2),
        "base_steps": base.metadata["training"]["steps"],
        "rows": rows,
    }


PARTS = {"distill": run_distill, "ada": run_ada, "onboard": run_onboard}


# -- the parent: one child process per (part, data set), then the tables and the chart ------------------
def _child(part: str, name: str, common: list[str]) -> dict | None:
    cmd = [sys.executable, "-m", "benchmarks.fast", "--child", f"{part}:{name}", *common]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        eprint(f"{part} {name} failed with exit code {proc.returncode}")
        return None
    return json.loads(lines[-1])


def distill_table(results: list[dict]) -> list[str]:
    lines = [
        "| data set | model | image AUROC | pixel AUROC | PRO | recall@FPR3% | ms/img (evaluate p50) "
        "| ms/img (interleaved) | speed-up vs k=5 | AUROC loss vs k=5 |",
        "|" + "---|" * 10,
    ]
    for r in results:
        ref = r["rows"][f"teacher k={TEACHER_STEPS}"]
        for i, (model, m) in enumerate(r["rows"].items()):
            speed = ref["interleaved_ms"] / m["interleaved_ms"]
            loss = ref["image_auroc"] - m["image_auroc"]
            lines.append(
                f"| {r['dataset'] if i == 0 else ''} | {model} | {fmt(m['image_auroc'])} "
                f"| {fmt(m['pixel_auroc'])} | {fmt(m['pro'])} | {fmt(m['recall_at_fpr_3pct'])} "
                f"| {fmt(m['latency_ms_p50'], 0)} | {fmt(m['interleaved_ms'], 0)} | {speed:.2f}x "
                f"| {loss:+.3f} |"
            )
    return lines


def ada_table(results: list[dict]) -> list[str]:
    lines = [
        "| data set | training | image AUROC | pixel AUROC | steps | overfitting gap (end) | mean p | final p |",
        "|" + "---|" * 8,
    ]
    for r in results:
        for i, (label, m) in enumerate(r["rows"].items()):
            ada = m.get("ada") or {}
            lines.append(
                f"| {r['dataset'] if i == 0 else ''} | {label} | {fmt(m['image_auroc'])} "
                f"| {fmt(m['pixel_auroc'])} | {m['steps']} | {fmt(m['gap'])} | {fmt(ada.get('mean_p'), 2)} "
                f"| {fmt(ada.get('final_p'), 2)} |"
            )
    return lines


def onboard_table(results: list[dict]) -> list[str]:
    lines = [
        "| product (10 good images) | model | image AUROC | pixel AUROC | recall@FPR3% | minutes |",
        "|" + "---|" * 6,
    ]
    for r in results:
        for i, (label, m) in enumerate(r["rows"].items()):
            lines.append(
                f"| {r['dataset'] if i == 0 else ''} | {label} | {fmt(m['image_auroc'])} "
                f"| {fmt(m['pixel_auroc'])} | {fmt(m['recall_at_fpr_3pct'])} | {m['minutes']:.1f} |"
            )
    return lines


def summary(by_part: dict[str, list[dict]]) -> list[str]:
    out = []
    for r in by_part["distill"]:
        ref, st = r["rows"][f"teacher k={TEACHER_STEPS}"], r["rows"]["student (1 step)"]
        speed = ref["interleaved_ms"] / st["interleaved_ms"]
        loss = ref["image_auroc"] - st["image_auroc"]
        ok = speed >= 4 and loss <= 0.01
        out.append(
            f"distill {r['dataset']}: student {speed:.1f}x faster than k={TEACHER_STEPS}, image AUROC loss "
            f"{loss:+.3f} ({'meets' if ok else 'misses'} >= 4x at <= 0.01); {r['distill_steps']} "
            f"distillation steps in {r['distill_s'] / 60:.1f} min; teacher: {r['teacher']}"
        )
    for r in by_part["ada"]:
        off, on = r["rows"]["without ADA"], r["rows"]["with ADA"]
        gain = on["image_auroc"] - off["image_auroc"]
        out.append(
            f"ada {r['dataset']} ({r['images']} images): image AUROC gain {gain:+.3f} (target >= 0.03); "
            f"overfitting gap at the end {fmt(off['gap'])} without, {fmt(on['gap'])} with"
        )
    for r in by_part["onboard"]:
        ob, sc = r["rows"]["onboarded from the base"], r["rows"]["from scratch, same budget"]
        out.append(
            f"onboard {r['dataset']} ({r['images']} images, base: {', '.join(r['base_products'])}, "
            f"{r['base_minutes']:.1f} min): image AUROC {fmt(ob['image_auroc'])} in {ob['minutes']:.1f} min "
            f"(target >= 0.95 in <= 10 min); from scratch {fmt(sc['image_auroc'])}"
        )
    return out


def chart(by_part: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for r in by_part["distill"]:
        for model, m in r["rows"].items():
            marker = {"student (1 step)": "*", "teacher k=1": "o"}.get(model, "s")
            ax.scatter(m["interleaved_ms"], m["image_auroc"], marker=marker, s=120 if marker == "*" else 50)
            ax.annotate(
                f"{r['dataset']}\n{model}",
                (m["interleaved_ms"], m["image_auroc"]),
                fontsize=7,
                xytext=(4, 2),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_xlabel("ms per image (interleaved, log)")
    ax.set_ylabel("image AUROC")
    ax.set_title("one-step student vs multi-step teacher")
    ax.grid(alpha=0.3)
    ax = axes[1]
    for r in by_part["ada"]:
        course = (r["rows"]["with ADA"].get("ada") or {}).get("course") or []
        if course:
            steps, ps, gaps = zip(*course, strict=True)
            (line,) = ax.plot(steps, ps, label=f"{r['dataset']}: p")
            ax.plot(steps, gaps, ls=":", color=line.get_color(), label=f"{r['dataset']}: gap")
    ax.axhline(0.05, color="k", lw=0.6, ls="--")
    ax.set_xlabel("training step")
    ax.set_title(f"adaptive augmentation ({ADA_IMAGES} images): p and overfitting gap")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[2]
    names = [r["dataset"] for r in by_part["onboard"]]
    for j, label in enumerate(("onboarded from the base", "from scratch, same budget")):
        vals = [r["rows"][label]["image_auroc"] for r in by_part["onboard"]]
        ax.bar(np.arange(len(names)) + (j - 0.5) * 0.4, vals, 0.4, label=label)
    ax.axhline(0.95, color="k", lw=0.6, ls="--")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0.4, 1.0)
    ax.set_title(f"onboarding from {ONBOARD_IMAGES} good images")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--distill", default=",".join(DATASETS), help="data sets of the distillation part ('' = none)")
    p.add_argument("--ada", default=",".join(DATASETS), help="data sets of the adaptive augmentation part")
    p.add_argument("--onboard", default=",".join(PROCEDURAL), help="procedural product types to onboard")
    p.add_argument("--teacher-minutes", type=float, default=5.0, help="teacher training where none is shipped")
    p.add_argument("--train-teachers", action="store_true", help="train every teacher, even where one is shipped")
    p.add_argument("--distill-minutes", type=float, default=3.0)
    p.add_argument("--ada-minutes", type=float, default=3.0, help="training budget of each ADA arm")
    p.add_argument("--base-minutes", type=float, default=6.0, help="training of each onboarding base model")
    p.add_argument("--onboard-minutes", type=float, default=3.0, help="fine-tuning (and the scratch model's) budget")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench-out" / "fast")
    p.add_argument("--data-dir", type=Path, default=REPO / "bench-out" / "data")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.out, args.data_dir = args.out.resolve(), args.data_dir.resolve()

    if args.child:
        part, name = args.child.split(":")
        print(json.dumps(PARTS[part](name, args)), flush=True)
        return 0

    plan = [(part, n.strip()) for part in PARTS for n in getattr(args, part).split(",") if n.strip()]
    for part, name in plan:
        allowed = PROCEDURAL if part == "onboard" else DATASETS
        if name not in allowed:
            p.error(f"--{part}: unknown data set {name!r}; choose from {','.join(allowed)}")
    args.out.mkdir(parents=True, exist_ok=True)
    common = [
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
        "--out",
        str(args.out),
        "--data-dir",
        str(args.data_dir),
        "--teacher-minutes",
        str(args.teacher_minutes),
        "--distill-minutes",
        str(args.distill_minutes),
        "--ada-minutes",
        str(args.ada_minutes),
        "--base-minutes",
        str(args.base_minutes),
        "--onboard-minutes",
        str(args.onboard_minutes),
        *(["--quiet"] if args.quiet else []),
        *(["--train-teachers"] if args.train_teachers else []),
    ]
    by_part: dict[str, list[dict]] = {part: [] for part in PARTS}
    failed = []
    started = time.monotonic()
    for part, name in plan:
        eprint(f"== {part} {name} ({time.monotonic() - started:.0f} s elapsed)")
        r = _child(part, name, common)
        if r is None:
            failed.append(f"{part}:{name}")
        else:
            by_part[part].append(r)
    total_s = time.monotonic() - started
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "total_seconds": round(total_s),
                "failed": failed,
                **by_part,
            },
            indent=2,
        )
        + "\n"
    )
    sections = []
    for part, fn in (("distill", distill_table), ("ada", ada_table), ("onboard", onboard_table)):
        if by_part[part]:
            sections += [*fn(by_part[part]), ""]
    total = f"total {total_s / 60:.1f} min, {args.threads} threads" + (f"; FAILED: {failed}" if failed else "")
    report = "\n".join([*sections, *summary(by_part), total])
    (args.out / "table.md").write_text(report + "\n")
    chart(by_part, args.out / "fast.png")
    print(report)
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'table.md'}, {args.out / 'fast.png'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
