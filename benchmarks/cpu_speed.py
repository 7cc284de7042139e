"""CPU speed options of ``Detector.predict`` on the shipped PCB model, measured side by side in one run.

    .venv/bin/python benchmarks/cpu_speed.py                          # ~8 min on 2 idle cores
    .venv/bin/python benchmarks/cpu_speed.py --repeats 3 --no-compile  # a quick look (~2 min)

Every variant is compared with today's default (fp32, channels-last UNet input as hard-coded in
``Denoiser.forward``, ``torch.inference_mode``, 2 torch threads): 1 thread, NCHW-contiguous input
and weights, bf16 autocast around the UNet only or around the whole predict call, and
``torch.compile`` of the UNet (``--more-compile``: also max-autotune and compile + bf16), each at
batches of 1/4/8 images and k = 1/3/5 reconstruction steps (3 is the model's calibrated default:
its threshold and map statistics were measured with k = 3). Variants swap ``detector.model.unet``
for a wrapper (or set threads / autocast) only while they run: the library is not modified.

Timing: each repetition times every (variant, stage, k, batch) case once, in a fresh random order,
so the noise of a shared machine hits all variants alike; the table reports medians. Stage
``predict`` is the whole ``Detector.predict`` call, ``forward`` the denoiser alone (one
``detector.model(x_t, t, coords, labels)`` call at t*: where the cost is).
Accuracy: 20 test images (10 good, 10 defective, ``generate_product("pcb", seed=0)`` as in the
model's metrics, read back from PNG) are predicted by every variant in batches of 8 and compared
with the fp32 default; first calls (oneDNN set-up, compilation) are timed apart.
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
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.data.synth import generate_product
from diffqc.detector import Detector
from diffqc.detector.reconstruct import window_noise
from diffqc.detector.unet import coordinate_grid
from diffqc.progress import track

MODEL = Path(__file__).resolve().parents[1] / "diffqc/detector/default_models/pcb"
BASE_THREADS = 2
STAGES = ("predict", "forward")


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
    compiles: bool = False  # its first calls compile: guarded by --compile-timeout
    module: nn.Module | None = None
    failed: str | None = None
    first_calls: dict[tuple[int, int], float] = field(default_factory=dict)  # (k, batch) -> s

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
        Variant("fp32 channels-last (default)"),  # first: the reference of every comparison
        Variant("1 thread", threads=1),
        Variant("contiguous (NCHW)", wrap=ContiguousUNet),
        Variant("bf16 autocast, UNet only", wrap=Bf16UNet),
        Variant("bf16 autocast, whole predict", autocast=True),
    ]
    if args.compile:
        out.append(Variant("torch.compile", wrap=compiled(), compiles=True))
    if args.more_compile:
        out += [
            Variant("torch.compile max-autotune", wrap=compiled("max-autotune-no-cudagraphs"), compiles=True),
            Variant("torch.compile + bf16 UNet", wrap=compiled(inner=Bf16UNet), compiles=True),
        ]
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


def run_case(detector: Detector, stage: str, k: int | None, x: torch.Tensor, fwd_args: tuple) -> float:
    """Seconds of one predict call (k steps) or one denoiser forward call."""
    t0 = time.perf_counter()
    if stage == "predict":
        detector.predict(x, steps=k)
    else:
        with torch.inference_mode():  # as in Detector._window_fn
            detector.model(*fwd_args)
    return time.perf_counter() - t0


# -- the run ------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", default="1,3,5", help="reconstruction steps k, comma-separated (model default: 3)")
    ap.add_argument("--batches", default="1,4,8", help="images per predict call, comma-separated")
    ap.add_argument("--repeats", type=int, default=5, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    ap.add_argument("--images", type=int, default=10, help="good and as many defective images for accuracy")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile variant")
    ap.add_argument(
        "--more-compile",
        action="store_true",
        help="add torch.compile max-autotune-no-cudagraphs and compile + bf16 UNet (minutes each)",
    )
    ap.add_argument("--compile-timeout", type=int, default=300, help="seconds before a compile variant is dropped")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
    # Compile from a cold cache, as a new serving process without a persisted inductor cache would.
    with tempfile.TemporaryDirectory(prefix="cpu_speed_inductor_") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        run(args)


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    ks = [int(s) for s in args.steps.split(",")]
    batches = [int(s) for s in args.batches.split(",")]
    torch.set_num_threads(BASE_THREADS)
    random.seed(0)
    detector = Detector.load(MODEL)
    x, labels = test_images(detector, args.images, args.images)
    fwd_args = {b: forward_inputs(detector, x[:b]) for b in batches}
    vs = variants(args)

    # First calls (timed: set-up and compilation), then accuracy on all images against the default.
    acc: dict[tuple[str, int], tuple[float, float, int, int]] = {}
    ref: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for v in track(vs, "first calls + accuracy", unit="variants"):
        try:
            with time_limit(args.compile_timeout if v.compiles else None), v.active(detector):
                for k in ks:
                    for b in batches:
                        v.first_calls[k, b] = run_case(detector, "predict", k, x[:b], fwd_args[b])
                        run_case(detector, "forward", None, x[:b], fwd_args[b])
                    outs = [detector.predict(x[i : i + max(batches)], steps=k) for i in range(0, len(x), max(batches))]
                    amap = np.concatenate([o.anomaly_map for o in outs])
                    score = np.concatenate([o.score for o in outs])
                    base_map, base_score = ref.setdefault(k, (amap, score))
                    verdicts, base_verdicts = detector.verdicts(score), detector.verdicts(base_score)
                    acc[v.name, k] = (
                        float(np.abs(score - base_score).max()),
                        float(np.abs(amap - base_map).max()),
                        sum(a != b for a, b in zip(verdicts, base_verdicts, strict=True)),
                        sum((a == "defect") == bool(y) for a, y in zip(verdicts, labels, strict=True)),
                    )
        except Exception as exc:  # a failing variant is a result, not a crash
            v.failed = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
    vs_ok = [v for v in vs if not v.failed]

    # Timing: interleaved repetitions of every case, in a new random order each time.
    cases = [
        (v, stage, k, b)
        for v in vs_ok
        for stage in STAGES
        for k in (ks if stage == "predict" else [None])
        for b in batches
    ]
    times: dict[tuple, list[float]] = defaultdict(list)
    for rep in track(range(args.warmup + args.repeats), "timing (interleaved)", unit="reps"):
        random.shuffle(cases)
        for v, stage, k, b in cases:
            with v.active(detector):
                seconds = run_case(detector, stage, k, x[:b], fwd_args[b])
            if rep >= args.warmup:
                times[v.name, stage, k, b].append(seconds * 1000 / b)
    med = {key: statistics.median(ts) for key, ts in times.items()}
    report(vs, med, acc, ks, batches, len(x))
    print(
        f"\n{len(x)} test images, {args.repeats} timed repeats (median), torch {torch.__version__}, "
        f"threshold {detector.threshold():.3f}; total run time {time.perf_counter() - start:.0f} s"
    )


def report(vs: list[Variant], med: dict, acc: dict, ks: list[int], batches: list[int], n: int) -> None:
    """One markdown table (speed-up against the fp32 default of the same stage and k at batch 1),
    then the first-call overhead of every variant and the failures."""
    base = vs[0].name
    print(
        "\n| variant | stage | k | batch | threads | ms/image (median) | images/s | speed-up vs fp32 b=1 "
        "| score max-abs-diff | map max-abs-diff | verdict changes | verdicts correct |"
    )
    print("|" + " --- |" * 12)
    for v in vs:
        if v.failed:
            continue
        for stage in STAGES:
            for k in ks if stage == "predict" else [None]:
                for b in batches:
                    ms = med[v.name, stage, k, b]
                    row = [
                        v.name,
                        stage,
                        k or "—",
                        b,
                        v.threads,
                        f"{ms:.1f}",
                        f"{1000 / ms:.1f}",
                        f"{med[base, stage, k, 1] / ms:.2f}x",
                    ]
                    if stage == "predict":  # accuracy was measured in batches of 8, once per k
                        ds, dm, flips, correct = acc[v.name, k]
                        row += [f"{ds:.2g}", f"{dm:.2g}", f"{flips}/{n}", f"{correct}/{n}"]
                    else:
                        row += ["—"] * 4
                    print("| " + " | ".join(map(str, row)) + " |")
    print("\nFirst-call overhead (first predict calls minus their steady-state cost; compilation for torch.compile):")
    for v in vs:
        if v.failed:
            print(f"- {v.name}: FAILED ({v.failed})")
        else:
            extra = sum(s - med[v.name, "predict", k, b] * b / 1000 for (k, b), s in v.first_calls.items())
            print(f"- {v.name}: {extra:.1f} s")


if __name__ == "__main__":
    main()
