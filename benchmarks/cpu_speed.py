"""CPU speed options of ``Detector.predict`` on the shipped PCB model, measured side by side in one run.

    .venv/bin/python benchmarks/cpu_speed.py                      # ~8 min on 2 cores
    .venv/bin/python benchmarks/cpu_speed.py --repeats 3 --no-compile   # a quick look (~2 min)

Every variant is compared with today's default (fp32, channels-last UNet input as hard-coded in
``Denoiser.forward``, ``torch.inference_mode``, 2 torch threads): 1 thread, NCHW-contiguous
input and weights, bf16 autocast around the UNet only or around the whole predict call,
``torch.compile`` of the UNet (default mode, optionally max-autotune), batches of 1/4/8 images
and k = 1/5 reconstruction steps. Variants swap ``detector.model.unet`` for a wrapper (or set
threads/autocast) only while they run: the library is not modified.

Timing: each repetition times every (variant, stage, k, batch) case once, in a fresh random
order, so the noise of a shared machine hits all variants alike; the table reports medians.
Stage ``predict`` is the whole ``Detector.predict`` call, ``forward`` the denoiser alone (one
``detector.model(x_t, t, coords, labels)`` call at t*, where the cost is).
Accuracy: 20 test images (10 good, 10 defective, ``generate_product("pcb", seed=0)`` as in the
model's metrics) are predicted by every variant and compared with the fp32 default at batch 1.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import signal
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.data.synth import generate_product
from diffqc.detector import Detector
from diffqc.detector.reconstruct import window_noise
from diffqc.detector.unet import coordinate_grid

MODEL = Path(__file__).resolve().parents[1] / "diffqc/detector/default_models/pcb"
BASE_THREADS = 2


# -- UNet wrappers: swapped in for ``detector.model.unet`` while a variant runs ----------------
class ContiguousUNet(nn.Module):
    """The UNet with NCHW-contiguous weights and input (the library feeds it channels-last)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = copy.deepcopy(unet).to(memory_format=torch.contiguous_format)

    def forward(self, sample: torch.Tensor, *args, **kwargs):
        return self.unet(sample.contiguous(), *args, **kwargs)


class Bf16UNet(nn.Module):
    """The UNet under bf16 autocast; its output goes back to fp32, so the maps stay fp32."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, *args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.unet(sample, *args, **kwargs).sample
        return SimpleNamespace(sample=out.float())  # Denoiser.forward reads only ``.sample``


def compiled(mode: str | None = None, inner: Callable[[nn.Module], nn.Module] = lambda m: m):
    return lambda unet: torch.compile(inner(unet), mode=mode)


@dataclass
class Variant:
    name: str
    threads: int = BASE_THREADS
    wrap: Callable[[nn.Module], nn.Module] | None = None  # builds the UNet replacement (once)
    autocast: bool = False  # bf16 autocast around the whole predict call
    compiles: bool = False  # first calls compile: guarded by --compile-timeout
    module: nn.Module | None = None
    failed: str | None = None

    @contextmanager
    def active(self, detector: Detector) -> Iterator[None]:
        denoiser, original = detector.model, detector.model.unet
        if self.wrap is not None:
            if self.module is None:
                self.module = self.wrap(original)
            denoiser.unet = self.module
        torch.set_num_threads(self.threads)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else nullcontext():
                yield
        finally:
            denoiser.unet = original
            torch.set_num_threads(BASE_THREADS)


def variants(args: argparse.Namespace) -> list[Variant]:
    out = [
        Variant("fp32 channels-last (default)"),
        Variant("1 thread", threads=1),
        Variant("contiguous (NCHW)", wrap=ContiguousUNet),
        Variant("bf16 autocast, UNet only", wrap=Bf16UNet),
        Variant("bf16 autocast, whole predict", autocast=True),
    ]
    if args.compile:
        out += [Variant("torch.compile", wrap=compiled(), compiles=True),
                Variant("torch.compile + bf16 UNet", wrap=compiled(inner=Bf16UNet), compiles=True)]
    if args.autotune:
        out.append(Variant("torch.compile max-autotune", wrap=compiled("max-autotune-no-cudagraphs"), compiles=True))
    return out


# -- inputs -------------------------------------------------------------------------------------
def test_images(detector: Detector, n_good: int, n_defect: int) -> tuple[torch.Tensor, np.ndarray]:
    """(N, C, H, W) test images written and read back as PNG, like the model's evaluation, and labels."""
    h, w = detector.products["pcb"].image_size
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_product("pcb", tmp, n_train=1, n_test_good=n_good, n_test_defect=n_defect, size=(h, w), seed=0)
        samples = list_samples(root, "test")
        images = np.stack([read_image(s.path) for s in samples]).transpose(0, 3, 1, 2)
    return torch.from_numpy(images.copy()), np.array([s.label for s in samples])


def forward_inputs(detector: Detector, x: torch.Tensor) -> tuple:
    """The denoiser's arguments for a batch of whole images noised to t*, as ``_window_fn`` builds them."""
    cfg = detector.cfg
    b, c, h, w = x.shape
    windows = [(0, 0, h, w)] * b
    a = float(detector.acp[cfg.recon.t_star])
    x_t = a**0.5 * (x * 2 - 1) + (1 - a) ** 0.5 * window_noise(c, windows, cfg.recon.noise_seed, cfg.recon.noise_cell)
    coords = torch.stack([coordinate_grid(0, 0, h, w, h, w) for _ in windows])
    return x_t, torch.full((b,), cfg.recon.t_star), coords, torch.zeros(b, dtype=torch.long)


@contextmanager
def time_limit(seconds: int | None) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (None: no limit)."""
    def expire(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds or 0)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- the run ------------------------------------------------------------------------------------
def predict_all(detector: Detector, x: torch.Tensor, k: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    outs = [detector.predict(x[i : i + batch], steps=k) for i in range(0, len(x), batch)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[2] for o in outs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="1,5", help="reconstruction steps k, comma-separated (model default: 3)")
    ap.add_argument("--batches", default="1,4,8", help="images per predict call, comma-separated")
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed repetitions first")
    ap.add_argument("--images", type=int, default=10, help="good and as many defective images for accuracy")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variants")
    ap.add_argument("--autotune", action="store_true", help="add torch.compile mode=max-autotune-no-cudagraphs")
    ap.add_argument("--compile-timeout", type=int, default=300, help="seconds before a compile variant is dropped")
    args = ap.parse_args()
    # Compile from a cold cache, as a new serving process without a persisted inductor cache would.
    with tempfile.TemporaryDirectory(prefix="cpu_speed_inductor_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        run(args)


def run(args: argparse.Namespace) -> None:
    ks = [int(s) for s in args.steps.split(",")]
    batches = [int(s) for s in args.batches.split(",")]
    start = time.perf_counter()
    torch.set_num_threads(BASE_THREADS)
    random.seed(0)

    detector = Detector.load(MODEL)
    x, labels = test_images(detector, args.images, args.images)
    fwd_args = {b: forward_inputs(detector, x[:b]) for b in batches}
    vs = variants(args)

    # Accuracy (and warm-up / compilation): all images through every variant, every k and batch size.
    acc: dict[tuple[str, int, int], tuple[float, float, int]] = {}
    prep_seconds: dict[str, float] = {}
    ref: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for v in tqdm(vs, desc="accuracy + warm-up", unit="variant"):
        t0 = time.perf_counter()
        try:
            with time_limit(args.compile_timeout if v.compiles else None), v.active(detector):
                for k in ks:
                    for b in batches:
                        amap, score = predict_all(detector, x, k, b)
                        base_map, base_score = ref.setdefault(k, (amap, score))  # the first variant is the baseline
                        flips = sum(a != c for a, c in zip(detector.verdicts(score), detector.verdicts(base_score),
                                                          strict=True))
                        acc[v.name, k, b] = (np.abs(score - base_score).max(), np.abs(amap - base_map).max(), flips)
                    with torch.inference_mode():
                        for b in batches:
                            detector.model(*fwd_args[b])
        except Exception as exc:  # a failing variant is a result, not a crash
            v.failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        prep_seconds[v.name] = time.perf_counter() - t0
    vs_ok = [v for v in vs if not v.failed]

    # Timing: interleaved repetitions of every case, in a new random order each time.
    cases = [(v, stage, k, b) for v in vs_ok for stage, kk in (("predict", ks), ("forward", [None]))
             for k in kk for b in batches]
    times: dict[tuple, list[float]] = defaultdict(list)
    for rep in tqdm(range(args.warmup + args.repeats), desc="timing (interleaved)", unit="rep"):
        random.shuffle(cases)
        for v, stage, k, b in cases:
            with v.active(detector), torch.inference_mode():
                t0 = time.perf_counter()
                if stage == "predict":
                    detector.predict(x[:b], steps=k)
                else:
                    detector.model(*fwd_args[b])
                elapsed = time.perf_counter() - t0
            if rep >= args.warmup:
                times[v.name, stage, k, b].append(elapsed * 1000 / b)

    # Report: speed-up against the fp32 default of the same stage and k at batch 1.
    med = {key: statistics.median(ts) for key, ts in times.items()}
    base = vs[0].name
    print("\n| variant | stage | k | batch | threads | ms/image (median) | images/s | speed-up vs fp32 b=1 "
          "| score max-abs-diff | map max-abs-diff | verdict changes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in vs_ok:
        for stage, kk in (("predict", ks), ("forward", [None])):
            for k in kk:
                for b in batches:
                    ms = med[v.name, stage, k, b]
                    speedup = med[base, stage, k, 1] / ms
                    if stage == "predict":
                        ds, dm, flips = acc[v.name, k, b]
                        extra = f"{ds:.2g} | {dm:.2g} | {flips}/{len(x)}"
                    else:
                        extra = "— | — | —"
                    print(f"| {v.name} | {stage} | {k or '—'} | {b} | {v.threads} | {ms:.1f} | {1000 / ms:.1f} "
                          f"| {speedup:.2f}x | {extra} |")

    # Warm-up cost: the accuracy pass's wall time beyond its steady-state cost (mostly compilation).
    print("\nFirst-call overhead (accuracy pass wall time minus its steady-state cost):")
    for v in vs:
        if v.failed:
            print(f"- {v.name}: FAILED after {prep_seconds[v.name]:.0f} s ({v.failed})")
            continue
        steady = sum(med[v.name, "predict", k, b] * len(x) for k in ks for b in batches) / 1000
        print(f"- {v.name}: {prep_seconds[v.name] - steady:.1f} s")
    base_correct = sum((s > detector.threshold()) == bool(y) for s, y in zip(ref[ks[0]][1], labels, strict=True))
    print(f"\nfp32 baseline verdicts correct at k={ks[0]}: {base_correct}/{len(x)} "
          f"(threshold {detector.threshold():.3f}); torch {torch.__version__}, {args.repeats} timed repeats")
    print(f"Total run time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
