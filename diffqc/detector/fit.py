"""From folders of good images to a calibrated ``Detector``: load, decide, train, calibrate."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from diffqc.core.errors import TrainingDataError
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector.anomaly_map import Normalizer, learn_weights
from diffqc.detector.augment import (
    ADA_MAX_IMAGES,
    Augment,
    CropSampler,
    alignment_ratio,
    anisotropy,
    is_aligned,
    is_isotropic,
)
from diffqc.detector.calibration import (
    Calibration,
    Split,
    component_stats,
    split_calibration,
    split_holdout,
)
from diffqc.detector.config import DetectorConfig, TrainConfig
from diffqc.detector.detector import FINAL, RAW, Detector, ProductState, image_batches, image_components
from diffqc.detector.good_stats import PATCH, PIXEL, GoodStatistics
from diffqc.detector.synthetic import synthetic_anomalies
from diffqc.detector.threshold import fit_threshold
from diffqc.detector.train import TrainingStep, TrainResult, train_denoiser
from diffqc.detector.unet import Denoiser


def product_name(root: Path) -> str:
    """A data set's product type: the ``product`` in its ``dataset.json`` if any, else the folder name."""
    manifest = Path(root) / "dataset.json"
    if manifest.is_file():
        try:
            name = json.loads(manifest.read_text()).get("product")
        except (json.JSONDecodeError, AttributeError):
            name = None
        if isinstance(name, str) and name:
            return name
    return Path(root).resolve().name


class GoodImages(NamedTuple):
    paths: list[Path]
    images: list[np.ndarray]  # HxWxC float32 in [0, 1], in the order of ``paths``


def load_good_images(root: Path) -> GoodImages:
    """The good training images of an MVTec-layout folder (train/good), read and checked."""
    samples = list_samples(root, "train")  # DatasetError names the folder when it is empty
    paths = [s.path for s in samples]
    return GoodImages(paths, [read_image(p) for p in paths])


def check_images(
    paths: list[Path], images: list[np.ndarray], crop: int, reference: tuple[Path, int] | None = None
) -> tuple[Path, int]:
    """All images have the channel count of ``reference`` (an image and its channel count; default:
    the first of ``images``) and are at least one training crop in size. Returns the reference."""
    ref, first = reference or (paths[0], images[0].shape[2])
    for p, im in zip(paths, images, strict=True):
        if im.shape[2] != first:
            raise TrainingDataError(
                f"image {p} has {im.shape[2]} channel(s) but {ref} has {first}: one model needs one channel count"
            )
        if min(im.shape[:2]) < crop:
            raise TrainingDataError(
                f"image {p} is {im.shape[1]}x{im.shape[0]} px, smaller than the training tile train.crop_size={crop}"
            )
    return ref, first


def fingerprint(paths: list[Path]) -> str:
    """sha256 over the names and contents of the training images (which data made this model)."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda q: q.name):
        h.update(p.name.encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def calibrate_product(
    detector: Detector,
    product: str,
    norm_images: list[np.ndarray],
    calib_images: list[np.ndarray],
    progress: Callable[[int], None] | None = None,
) -> Calibration:
    """Measure map normalization on ``norm_images`` and the score scale and threshold on
    ``calib_images`` (held-out good images of ``product``); stores and returns the calibration."""
    cfg, state = detector.cfg, detector.products[product]
    raws = []
    for _, x in image_batches(norm_images):
        raws.append(detector.maps(x, product, RAW))
        if progress:
            progress(len(x))
    state.normalizer = Normalizer.fit(raws, state.image_size is not None, cfg.map.std_smooth)

    if cfg.map.fusion == "learned":
        raws = [detector.maps(x, product, RAW) for _, x in image_batches(calib_images)]
        anomalous = [detector.maps(x, product, RAW) for _, x in image_batches(synthetic_anomalies(calib_images))]
        state.calibration.map_weights, state.calibration.synthetic_auroc = learn_weights(
            raws, anomalous, state.normalizer, cfg.map
        )
        finals = [detector.finalize(r, product) for r in raws]
        if progress:
            progress(len(calib_images))
    else:
        finals = []
        for _, x in image_batches(calib_images):
            finals.append(detector.maps(x, product, FINAL))
            if progress:
                progress(len(x))
    amaps, structs = [out[:, :1] for out in finals], [out[:, 1:2] for out in finals]
    rng = np.random.default_rng(0)
    values = np.concatenate([_sample(a.numpy().ravel(), 200_000, rng) for a in amaps])
    cal = state.calibration
    cal.region_level = float(np.quantile(values, cfg.score.region_quantile))
    raw = np.concatenate([image_components(a, s, cal.region_level) for a, s in zip(amaps, structs, strict=True)])
    stats = component_stats(raw)
    cal.comp_mean, cal.comp_std = stats.mean, stats.std
    scores = np.concatenate([detector.score_maps(a, s, product).score for a, s in zip(amaps, structs, strict=True)])
    threshold = fit_threshold(scores, cfg.score.target_fpr, cfg.score.threshold_rule)
    cal.threshold, cal.calibration_fpr = threshold.threshold, threshold.fpr
    cal.threshold_rule, cal.expected_fpr = threshold.method, threshold.expected_fpr
    cal.method, cal.target_fpr = "fpr", cfg.score.target_fpr
    cal.n_normalization, cal.n_calibration = len(norm_images), len(calib_images)
    return cal


@dataclass(frozen=True)
class TrainingSets:
    """The good images of every product (in the order given), read and checked, and their split."""

    paths: dict[str, list[Path]]
    images: dict[str, list[np.ndarray]]
    splits: dict[str, Split]  # indices into ``images[product]``: trained on / held out
    channels: int  # the channel count every image has

    def train_images(self) -> dict[str, list[np.ndarray]]:
        """The images each product is trained on (its split's ``train`` part)."""
        return {p: [self.images[p][i] for i in split.train] for p, split in self.splits.items()}


def training_record(
    result: TrainResult, calibration_started: float, steps: int | None, minutes: float | None, seed: int
) -> dict[str, Any]:
    """What an artifact's metadata says of how its network was trained (and how long calibration took)."""
    return {
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "final_loss": result.loss,
        "calibration_seconds": round(time.monotonic() - calibration_started, 1),
        "budget": {"steps": steps, "minutes": minutes},
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
    }


def load_training_sets(data: Mapping[str, Path], tc: TrainConfig) -> TrainingSets:
    """Paths, images, (train, held-out) index splits and channels per product; the split is a
    function of ``tc.seed`` and the product order, so a distilled student sees its teacher's split."""
    rng = np.random.default_rng(tc.seed)
    paths, images, splits = {}, {}, {}
    reference = None  # (first image, its channels): every product must match it
    for product, root in data.items():
        paths[product], images[product] = load_good_images(Path(root))
        reference = check_images(paths[product], images[product], tc.crop_size, reference)
        try:
            splits[product] = split_holdout(len(images[product]), tc.holdout_fraction, tc.min_holdout, rng)
        except ValueError as exc:
            raise TrainingDataError(f"training folder {Path(root) / 'train' / 'good'}: {exc}") from None
    if reference is None:
        raise TrainingDataError("no training folders given")
    return TrainingSets(paths, images, splits, reference[1])


def training_sampler(cfg: DetectorConfig, train_sets: Mapping[str, list[np.ndarray]]) -> CropSampler:
    """Random augmented crops of the training images, labelled by product index (config order)."""
    tc = cfg.train
    aug = Augment(
        tc.crop_size,
        bool(tc.hflip),
        bool(tc.vflip),
        bool(tc.rot90),
        tc.brightness,
        tc.contrast,
        cfg.model.coord_channels,
        bool(tc.ada),
    )
    return CropSampler({i: train_sets[p] for i, p in enumerate(train_sets)}, aug, np.random.default_rng(tc.seed + 1))


def held_out_sets(images: Mapping[str, list[np.ndarray]], splits: Mapping[str, Split]) -> dict[int, list[np.ndarray]]:
    """The held-out good images per product label (config order), for the overfitting probe."""
    return {i: [images[p][j] for j in splits[p].held_out] for i, p in enumerate(splits)}


def ada_summary(result: TrainResult) -> dict:
    """The overfitting gap and the adaptive augmentation's course, for the artifact's metadata."""
    ps = [a.p for a in result.ada]
    every = max(1, len(result.ada) // 50)  # at most ~50 points of the course
    course = [[a.step, round(a.p, 3), round(a.gap, 4)] for a in result.ada[::every]]
    return {
        "overfitting_gap": None if result.gap is None else round(result.gap, 4),
        "ada": {"final_p": ps[-1], "mean_p": round(float(np.mean(ps)), 3), "course": course} if ps else None,
    }


def calibrate_products(
    detector: Detector,
    images: Mapping[str, list[np.ndarray]],
    splits: Mapping[str, Split],
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> None:
    """Calibrate every product of ``detector`` on its held-out good images (parts A and B)."""
    from diffqc.progress import progress_bar

    for p in detector.product_names:
        held = splits[p].held_out
        parts = split_calibration(held)
        with progress_bar(f"calibrate {p}", len(held), enabled=progress, transient=True) as bar:
            cal = calibrate_product(
                detector,
                p,
                [images[p][i] for i in parts.normalization],
                [images[p][i] for i in parts.calibration],
                bar.advance,
            )
        log(
            f"calibrated {p!r} on {len(held)} held-out good images: threshold {cal.threshold:.3f} "
            f"(FPR {cal.calibration_fpr:.1%} on {cal.n_calibration})"
        )


def _sample(v: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return v if v.size <= k else rng.choice(v, size=k, replace=False)


def resolve_config(
    cfg: DetectorConfig, train_sets: Mapping[str, list[np.ndarray]], channels: int, keep_architecture: bool = False
) -> dict:
    """Fill the data-dependent choices left open (``None``/``auto``) in ``cfg``; returns the measurements.

    ``keep_architecture``: the network's inputs (channels, coordinate channels, class embedding) are
    fixed, because training starts from existing weights."""
    tc, names = cfg.train, list(train_sets)
    ratios = {p: alignment_ratio(ims) for p, ims in train_sets.items()}
    all_images = [im for ims in train_sets.values() for im in ims]
    aniso = anisotropy(all_images)
    if tc.aligned is None:
        tc.aligned = all(is_aligned(ims) for ims in train_sets.values())
    if tc.hflip is None:
        tc.hflip = not tc.aligned
    if tc.vflip is None:
        tc.vflip = not tc.aligned
    if tc.rot90 is None:
        tc.rot90 = (not tc.aligned) and is_isotropic(all_images)
    if tc.ada is None:
        tc.ada = min(map(len, train_sets.values())) < ADA_MAX_IMAGES
    cfg.model.products = names
    if not keep_architecture:
        cfg.model.channels = channels
        cfg.model.class_embedding = cfg.model.class_embedding or len(names) > 1
        cfg.model.coord_channels = cfg.model.coord_channels or bool(tc.aligned)
    if cfg.map.normalization == "auto":
        same_size = all(len({im.shape for im in ims}) == 1 for ims in train_sets.values())
        cfg.map.normalization = "pixel" if tc.aligned and same_size else "global"
    return {"alignment_ratio": ratios, "anisotropy": aniso}


def train_detector(
    data: Mapping[str, Path] | Path,
    cfg: DetectorConfig | None = None,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int | None = None,
    init: Denoiser | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_step: Callable[[TrainingStep], None] | None = None,
) -> Detector:
    """Train and calibrate a detector on the good images of one or more products.

    ``data``: a folder in the MVTec AD layout (product name: its ``dataset.json`` product, else the
    folder name) or {product: folder}. ``cfg`` is copied, then its open choices (``None`` / ``auto``)
    are resolved from the data; the detector's ``cfg`` holds the result. ``init``: fine-tune these
    weights (their architecture is ``cfg.model``) instead of training from scratch. ``on_step``: called after
    every training step (a job's progress; an exception it raises ends training there).
    """
    cfg = copy.deepcopy(cfg) if cfg is not None else DetectorConfig()  # data-dependent choices are filled in
    if seed is not None:
        cfg.train.seed = seed
    if isinstance(data, (str, Path)):
        data = {product_name(Path(data)): Path(data)}
    if not data:
        raise TrainingDataError("no training data given")
    tc = cfg.train
    sets = load_training_sets(data, tc)
    paths, images, splits = sets.paths, sets.images, sets.splits
    if init is not None and sets.channels != cfg.model.channels:
        raise TrainingDataError(
            f"the images in {list(map(str, data.values()))} have {sets.channels} channel(s); "
            f"the model to fine-tune was trained on {cfg.model.channels} (model.channels)"
        )
    train_sets = sets.train_images()
    measured = resolve_config(cfg, train_sets, sets.channels, keep_architecture=init is not None)
    log(
        f"products {list(data)}: {sum(map(len, train_sets.values()))} training images, aligned={tc.aligned} "
        f"(position explains {max(measured['alignment_ratio'].values()):.2f}), flips={tc.hflip}, "
        f"rot90={tc.rot90}, adaptive augmentation={tc.ada}, normalization={cfg.map.normalization}"
    )

    sampler = training_sampler(cfg, train_sets)
    if steps is None and minutes is None:
        minutes = 10.0
    result = train_denoiser(
        cfg,
        sampler,
        holdout=held_out_sets(images, splits),
        init=init,
        steps=steps,
        minutes=minutes,
        progress=progress,
        on_step=on_step,
    )
    log(
        f"trained {result.steps} steps in {result.seconds:.0f} s (final loss {result.loss:.4f}, "
        f"overfitting gap {result.gap:+.3f}" + (f", augmentation p {sampler.p:.2f})" if tc.ada else ")")
    )

    states = {}
    for p in data:
        pixel = cfg.map.normalization == "pixel"
        good = GoodStatistics.fit(train_sets[p], PIXEL if pixel else PATCH, cfg.map.std_smooth, tc.seed)
        if cfg.map.features:
            good.add_memory(train_sets[p], cfg.map.memory_coreset, cfg.map.memory_max_patches, tc.seed)
        h, w = train_sets[p][0].shape[:2]
        states[p] = ProductState(good, image_size=(h, w) if pixel else None)
    detector = Detector(cfg, result.model, states)
    started = time.monotonic()
    calibrate_products(detector, images, splits, progress, log)
    detector.metadata = {
        "products": list(data),
        "training_data": {
            p: {
                "folder": str(Path(data[p]).resolve()),
                "images": len(paths[p]),
                "train_images": len(splits[p].train),
                "held_out": len(splits[p].held_out),
                "fingerprint": fingerprint(paths[p]),
            }
            for p in data
        },
        "training": {**training_record(result, started, steps, minutes, tc.seed), **ada_summary(result)},
        "decisions": {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in measured.items()},
        "metrics": {},
    }
    return detector
