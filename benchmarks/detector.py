"""Detector benchmark: train on each data set under a fixed CPU budget, evaluate, compare.

    make bench-detector                                   # everything (~70 min on 2 cores)
    make bench-detector ARGS="--minutes 2 --datasets pcb,brick"
    .venv/bin/python benchmarks/detector.py --help

Data sets: the five procedural products (256x256), three real-texture photographs from
scikit-image with injected defects (128x128 crops) and ELPV mono solar cells (300x300, real
defects, image labels only). Each data set runs in its own process (so its peak memory is its
own); the detector is compared with two non-diffusion references on the same data and with
two ablations of itself (diffusion evidence only / good-image statistics only). A last process
runs one 4096x3000 frame through the tiled path and reports its peak memory.

Writes <out>/results.json, <out>/table.md and <out>/detector_benchmark.png, and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROCEDURAL = ("brushed_metal", "pcb", "woven_fabric", "moulded_plastic", "battery_electrode")
TEXTURES = ("brick", "grass", "gravel")
DATASETS = (*PROCEDURAL, *TEXTURES, "elpv")
REPO = Path(__file__).resolve().parents[1]
# Procedural data: enough good images that 25% held out gives ~25 for normalization, ~25 for the threshold.
SYNTH_COUNTS = {"n_train": 200, "n_test_good": 40, "n_test_defect": 60}


def eprint(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def build(name: str, data_dir: Path) -> Path:
    """The data set, built once and cached (builders are deterministic by seed)."""
    root = data_dir / name
    if (root / "dataset.json").is_file():
        return root
    eprint(f"[{name}] building the data set in {root}")
    if name in PROCEDURAL:
        from diffqc.data.synth import generate_product

        return generate_product(name, data_dir, **SYNTH_COUNTS, size=(256, 256), seed=0)
    if name in TEXTURES:
        from diffqc.data.textures import build_texture_benchmark

        return build_texture_benchmark(name, data_dir, seed=0)
    from diffqc.data.elpv import build_elpv_benchmark

    return build_elpv_benchmark(data_dir, seed=0)


def _metrics(scores, labels, maps, masks) -> dict:
    from diffqc.metrics import evaluate_scores

    m = evaluate_scores(np.asarray(scores), labels, maps, masks)
    return {
        k: m[k] for k in ("image_auroc", "pixel_auroc", "pro", "recall_at_fpr_3pct", "f1_max", "fpr_at_recall_98pct")
    }


def _timed(call, repeats: int = 5) -> float:
    """Median milliseconds of ``call()`` after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _latency(det, product: str, image: np.ndarray, steps: int) -> float:
    x = image.transpose(2, 0, 1)[None]
    return _timed(lambda: det.predict(x, product, steps=steps))


def run_one(name: str, args) -> dict:
    """Train, evaluate and compare on one data set (runs in its own process)."""
    import torch

    from diffqc.data.images import read_image
    from diffqc.data.mvtec import has_masks, list_samples, sample_mask
    from diffqc.detector import DetectorConfig, train_detector
    from diffqc.detector.baselines import MedianResidual, PatchCore, PixelGaussian, score_maps
    from diffqc.detector.detector import RAW
    from diffqc.detector.fit import load_good_images

    torch.set_num_threads(args.threads)
    root = build(name, args.data_dir)
    t0 = time.monotonic()
    cfg = DetectorConfig().with_overrides({"map": {"features": args.features, "fusion": args.fusion}})
    det = train_detector(
        root,
        cfg,
        minutes=args.minutes,
        seed=args.seed,
        progress=not args.quiet,
        log=lambda m: eprint(f"[{name}] {m}"),
    )
    train_s = time.monotonic() - t0
    det.save(args.out / "models" / name)
    product = det.product_names[0]

    samples = list_samples(root, "test")
    labels = np.array([s.label for s in samples])
    pixel = has_masks(samples)
    masks = [sample_mask(s) for s in samples] if pixel else None
    weights = det.cfg.map.weights
    good_image = ("statistics", "memory")  # what needs no reconstruction: everything but the diffusion evidence
    ablations = {
        "diffusion evidence only": {k: (0.0 if k in good_image else v) for k, v in weights.items()},
        "good-image statistics only": {k: (v if k in good_image else 0.0) for k, v in weights.items()},
    }
    scores, maps = [], []
    abl_scores = {k: [] for k in ablations}
    abl_maps = {k: [] for k in ablations}
    t0 = time.monotonic()
    for s in samples:
        x = torch.from_numpy(read_image(s.path).transpose(2, 0, 1)[None].copy())
        raws = det.maps(x, product, RAW)
        out = det.finalize(raws, product)
        scores.append(float(det.score_maps(out[:, :1], out[:, 1:2], product).score[0]))
        if pixel:
            maps.append(out[0, 0].numpy())
        main_weights, cal = det.cfg.map.weights, det.products[product].calibration
        learned, cal.map_weights = cal.map_weights, None
        for key, w in ablations.items():  # same reconstruction, other fusion weights
            det.cfg.map.weights = w
            amap = det.finalize(raws, product)[0, 0]
            abl_scores[key].append(float(amap.max()))
            if pixel:
                abl_maps[key].append(amap.numpy())
        det.cfg.map.weights, cal.map_weights = main_weights, learned
    eval_s = time.monotonic() - t0
    rows = {"diffqc detector": {**_metrics(scores, labels, maps if pixel else None, masks)}}
    for key in ablations:
        rows[key] = _metrics(abl_scores[key], labels, abl_maps[key] if pixel else None, masks)

    # The one-step fast path: same model, k = 1.
    k1 = [float(det.predict(read_image(s.path).transpose(2, 0, 1)[None], product, steps=1).score[0]) for s in samples]
    rows["diffqc detector"]["image_auroc_k1"] = _metrics(k1, labels, None, None)["image_auroc"]

    goods = load_good_images(root).images
    images = [read_image(s.path) for s in samples]
    t0 = time.monotonic()
    patchcore = PatchCore(seed=args.seed).fit(goods)
    patchcore_fit_s = time.monotonic() - t0
    for ref in (MedianResidual(), PixelGaussian().fit(goods), patchcore):
        ref_maps, ref_scores = score_maps(ref, images)
        rows[ref.name] = _metrics(ref_scores, labels, ref_maps if pixel else None, masks)

    # Latency at 256x256 where the model takes any size; aligned models take their own size only.
    img = images[0]
    size_note = "256x256"
    if det.products[product].image_size is None:
        reps = (-(-256 // img.shape[0]), -(-256 // img.shape[1]), 1)
        img = np.tile(img, reps)[:256, :256]
    elif img.shape[:2] != (256, 256):
        size_note = f"{img.shape[1]}x{img.shape[0]}"
    latency = {f"k{k}": _latency(det, product, img, k) for k in (1, 5)}
    latency["patchcore"] = _timed(lambda: patchcore.map(img))
    return {
        "dataset": name,
        "group": "procedural" if name in PROCEDURAL else "texture" if name in TEXTURES else "elpv",
        "rows": rows,
        "latency_ms": latency,
        "latency_size": size_note,
        "steps_default": det.cfg.recon.steps,
        "train_steps": det.metadata["training"]["steps"],
        "train_s": round(train_s, 1),
        "patchcore_fit_s": round(patchcore_fit_s, 1),
        "fusion": {
            "weights": det.products[product].calibration.map_weights,
            "synthetic_auroc": det.products[product].calibration.synthetic_auroc,
        },
        "eval_s": round(eval_s, 1),
        "aligned": det.cfg.train.aligned,
        "normalization": det.cfg.map.normalization,
        "n_test": len(samples),
        "n_defect": int(labels.sum()),
        "pixel_masks": pixel,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": args.threads,
    }


def run_tiling(args) -> dict:
    """One 4096x3000 RGB frame through the tiled path: time and peak memory."""
    import psutil
    import torch

    from diffqc.data.images import read_image
    from diffqc.data.mvtec import list_samples
    from diffqc.detector import Detector

    torch.set_num_threads(args.threads)
    model = next(
        (
            args.out / "models" / n
            for n in ("woven_fabric", "brushed_metal", *TEXTURES)
            if (args.out / "models" / n / "metadata.json").is_file()
        ),
        None,
    )
    if model is None:
        return {"skipped": "no non-aligned model trained in this run (woven_fabric, brushed_metal or a texture)"}
    det = Detector.load(model)
    product = det.product_names[0]
    tile = read_image(list_samples(args.data_dir / model.name, "test")[0].path)
    frame = np.ascontiguousarray(np.tile(tile, (-(-3000 // tile.shape[0]), -(-4096 // tile.shape[1]), 1))[:3000, :4096])
    x = frame.transpose(2, 0, 1)[None]
    rss_before = psutil.Process().memory_info().rss / 2**20
    t0 = time.perf_counter()
    amap = det.predict(x, product, steps=1).anomaly_map
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "model": model.name,
        "frame": f"4096x3000x{frame.shape[2]}",
        "tile": det.cfg.tile.size,
        "overlap": det.cfg.tile.overlap,
        "steps": 1,
        "seconds": round(seconds, 1),
        "frame_mb": round(frame.nbytes / 2**20, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak, 1),
        "map_shape": list(amap.shape),
        "threads": args.threads,
    }


# -- the parent: one child process per data set, then the table and the chart ---------------------
def _child(argv: list[str]) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        eprint(f"child {' '.join(argv)} failed with exit code {proc.returncode}")
        return None
    return json.loads(lines[-1])


def fmt(v, digits=3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def table(results: list[dict]) -> str:
    head = (
        "| data set | method | image AUROC | pixel AUROC | PRO | recall@FPR3% | image AUROC k=1 "
        "| ms/img k=1 | ms/img k=5 | ms/img PatchCore | peak RSS MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        for i, (method, m) in enumerate(r["rows"].items()):
            first = i == 0
            lat = r["latency_ms"]
            size = "" if r["latency_size"] == "256x256" else f" ({r['latency_size']})"
            lines.append(
                f"| {r['dataset'] if first else ''} | {method} | {fmt(m['image_auroc'])} | {fmt(m['pixel_auroc'])} "
                f"| {fmt(m['pro'])} | {fmt(m['recall_at_fpr_3pct'])} | {fmt(m.get('image_auroc_k1'))} "
                f"| {fmt(lat['k1'], 0) + size if first else ''} | {fmt(lat['k5'], 0) if first else ''} "
                f"| {fmt(lat.get('patchcore'), 0) if first else ''} "
                f"| {fmt(r['peak_rss_mb'], 0) if first else ''} |"
            )
    return "\n".join(lines)


def targets(results: list[dict]) -> list[str]:
    """The detector's targets (docs/detector.md), each with the figure this run measured."""
    by = {r["dataset"]: r for r in results}
    det = {n: r["rows"]["diffqc detector"] for n, r in by.items()}
    out = []

    def mean(names, key, method="diffqc detector"):
        vals = [by[n]["rows"][method][key] for n in names if n in by and by[n]["rows"][method][key] is not None]
        return (float(np.mean(vals)), len(vals)) if vals else (None, 0)

    img, n = mean(PROCEDURAL, "image_auroc")
    if n:
        pix, _ = mean(PROCEDURAL, "pixel_auroc")
        rec = sum(det[p]["recall_at_fpr_3pct"] >= 0.98 for p in PROCEDURAL if p in det)
        out.append(
            f"procedural ({n}/5): mean image AUROC {fmt(img)} (target >= 0.98), mean pixel AUROC "
            f"{fmt(pix)} (>= 0.97), recall >= 98% at FPR 3% on {rec} of {n} (target: 4 of 5)"
        )
    img, n = mean(TEXTURES, "image_auroc")
    if n:
        out.append(f"textures ({n}/3): mean image AUROC {fmt(img)} (target >= 0.95)")
    if "elpv" in det:
        out.append(f"ELPV mono: image AUROC {fmt(det['elpv']['image_auroc'])} (target >= 0.88)")
    names = list(by)
    ours, _ = mean(names, "image_auroc")
    for peer in ("PatchCore", "good-image statistics only"):
        if all(peer in by[n]["rows"] for n in names):
            theirs, _ = mean(names, "image_auroc", peer)
            won = [n for n in names if det[n]["image_auroc"] > by[n]["rows"][peer]["image_auroc"]]
            out.append(
                f"vs {peer}: mean image AUROC {fmt(ours)} vs {fmt(theirs)}, better on {len(won)} of {len(names)}"
                + (f"; not on {sorted(set(names) - set(won))}" if len(won) < len(names) else "")
            )
    return out


def chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [
        "diffqc detector",
        "diffusion evidence only",
        "good-image statistics only",
        "PatchCore",
        "per-pixel Gaussian",
        "median-filter residual",
    ]
    colours = ["#c0392b", "#e67e22", "#7f8c8d", "#27ae60", "#2980b9", "#95a5a6"]
    names = [r["dataset"] for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    for ax, key, title in ((axes[0], "image_auroc", "image AUROC"), (axes[1], "pixel_auroc", "pixel AUROC")):
        width = 0.8 / len(methods)
        for j, (m, c) in enumerate(zip(methods, colours, strict=True)):
            vals = [r["rows"].get(m, {}).get(key) for r in results]
            xs = np.arange(len(names)) + (j - (len(methods) - 1) / 2) * width
            ax.bar(xs, [v if v is not None else 0 for v in vals], width, label=m, color=c)
        ax.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
        ax.set_ylim(0.4, 1.0)
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.set_title(title + (" (ELPV has no masks)" if key == "pixel_auroc" else ""))
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=9, frameon=False)
    fig.suptitle("diffqc detector vs references (2 CPU cores, fixed training budget per data set)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=5.0, help="training budget per data set (default 5)")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated subset of {','.join(DATASETS)}")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=REPO / "bench-out" / "detector")
    p.add_argument("--data-dir", type=Path, default=REPO / "bench-out" / "data")
    p.add_argument("--no-tiling", action="store_true", help="skip the 4096x3000 memory check")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--features", action="store_true", help="train with map.features (pretrained perceptual and memory evidence)"
    )
    p.add_argument("--fusion", choices=("fixed", "learned"), default="fixed", help="map.fusion (default fixed)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--tiling-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.out, args.data_dir = args.out.resolve(), args.data_dir.resolve()

    if args.one:
        print(json.dumps(run_one(args.one, args)), flush=True)
        return 0
    if args.tiling_only:
        print(json.dumps(run_tiling(args)), flush=True)
        return 0

    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        p.error(f"unknown data set(s) {unknown}; choose from {','.join(DATASETS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    common = (
        [
            "--minutes",
            str(args.minutes),
            "--threads",
            str(args.threads),
            "--seed",
            str(args.seed),
            "--out",
            str(args.out),
            "--data-dir",
            str(args.data_dir),
        ]
        + (["--quiet"] if args.quiet else [])
        + (["--features"] if args.features else [])
        + ["--fusion", args.fusion]
    )
    results, failed = [], []
    started = time.monotonic()
    for name in names:
        eprint(
            f"== {name}: training {args.minutes:g} min on {args.threads} thread(s) "
            f"({time.monotonic() - started:.0f} s elapsed)"
        )
        r = _child(["--one", name, *common])
        if r is None:
            failed.append(name)
            continue
        results.append(r)
        det = r["rows"]["diffqc detector"]
        eprint(
            f"== {name}: image AUROC {fmt(det['image_auroc'])}, pixel AUROC {fmt(det['pixel_auroc'])} "
            f"({r['train_steps']} steps, eval {r['eval_s']:.0f} s)"
        )
    tiling = None if args.no_tiling else _child(["--tiling-only", *common])
    total_s = time.monotonic() - started

    summary = {
        "minutes_per_dataset": args.minutes,
        "threads": args.threads,
        "seed": args.seed,
        "total_seconds": round(total_s),
        "results": results,
        "tiling": tiling,
        "failed": failed,
        "cpu": os.cpu_count(),
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = table(results) if results else "(no results)"
    goals = targets(results) if results else []
    tile_line = ""
    if tiling and "skipped" not in tiling:
        tile_line = (
            f"tiled {tiling['frame']} frame ({tiling['frame_mb']} MB as float32) with the {tiling['model']} "
            f"model, tile {tiling['tile']}, overlap {tiling['overlap']}, k=1: {tiling['seconds']} s, "
            f"peak RSS {tiling['peak_rss_mb']:.0f} MB (before the call: {tiling['rss_before_mb']:.0f} MB)"
        )
    elif tiling:
        tile_line = f"tiling check skipped: {tiling['skipped']}"
    report = "\n".join(
        [
            text,
            "",
            *goals,
            *([tile_line] if tile_line else []),
            f"total {total_s / 60:.1f} min, {args.minutes:g} min training per data set, "
            f"{args.threads} threads" + (f"; FAILED: {failed}" if failed else ""),
        ]
    )
    (args.out / "table.md").write_text(report + "\n")
    if results:
        chart(results, args.out / "detector_benchmark.png")
    print(report)
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'table.md'}, {args.out / 'detector_benchmark.png'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
