"""The model artifact: one directory that holds everything a detector needs, and nothing else.

    config.json           DetectorConfig (model, train, recon, map, score, tile)
    weights.safetensors   EMA weights of the denoiser
    stats.safetensors     per product: good-image statistics and map normalization tensors
    calibration.json      per product: score scale, region level, process statistics
    thresholds.json       per product: threshold, how it was set, target and measured FPR
    metadata.json         format version, kind, products, training-data fingerprint, metrics, versions

``load_detector`` checks the format version, the kind and the files' consistency and fails with
an ``ArtifactError`` that says what is wrong. A new artifact kind (e.g. a distilled one-step
student, ``consistency``) registers a loader in ``LOADERS`` and keeps the same files.
"""

from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffqc.core import clock
from diffqc.core.artifact import FORMAT_VERSION, KINDS, read_json, read_metadata
from diffqc.core.components import COMPONENTS
from diffqc.core.errors import ArtifactError
from diffqc.core.files import atomic_directory
from diffqc.detector.anomaly_map import Normalizer
from diffqc.detector.backbone import BackboneIdentity, installed_identity
from diffqc.detector.calibration import Calibration
from diffqc.detector.config import DetectorConfig
from diffqc.detector.detector import Detector, ProductState
from diffqc.detector.good_stats import GoodStatistics
from diffqc.detector.unet import build_denoiser


def library_versions() -> dict[str, str]:
    import diffusers
    import numpy
    import safetensors

    import diffqc

    return {
        "diffqc": diffqc.__version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _not_an_artifact(path: Path) -> ArtifactError:
    return ArtifactError(f"{path} exists and is not a detector artifact; choose an empty or new folder")


def save_detector(detector: Detector, path: str | Path) -> Path:
    """Write the artifact atomically (a temporary sibling folder renamed into place)."""
    path = Path(path)
    with atomic_directory(path, "metadata.json", _not_an_artifact) as tmp:
        cfg = detector.cfg
        _write_json(tmp / "config.json", cfg.to_dict())
        save_file(
            {k: v.detach().contiguous() for k, v in detector.model.state_dict().items()},
            str(tmp / "weights.safetensors"),
        )
        tensors, calibration, thresholds = {}, {}, {}
        for i, name in enumerate(cfg.model.products):
            state = detector.products[name]
            if state.normalizer is None:
                raise ArtifactError(f"product {name!r} is not calibrated; cannot save")
            for k, v in state.good.tensors.items():
                tensors[f"{i}.good.{k}"] = v.contiguous()
            tensors[f"{i}.norm.mean"] = state.normalizer.mean.contiguous()
            tensors[f"{i}.norm.std"] = state.normalizer.std.contiguous()
            cal = state.calibration.to_dict()
            thresholds[name] = {k: cal.pop(k) for k in ("threshold", "method", "target_fpr", "calibration_fpr")}
            calibration[name] = {
                "good_kind": state.good.kind,
                "image_size": list(state.image_size) if state.image_size else None,
                **cal,
            }
        save_file(tensors, str(tmp / "stats.safetensors"))
        _write_json(tmp / "calibration.json", calibration)
        _write_json(tmp / "thresholds.json", thresholds)
        meta = dict(detector.metadata)
        meta.update(
            {
                "format_version": FORMAT_VERSION,
                "kind": detector.kind,
                "products": list(cfg.model.products),
                "components": list(COMPONENTS),
                "map_components": list(cfg.map.components),
                "versions": library_versions(),
                "saved_at": clock.now().isoformat(timespec="seconds"),
            }
        )
        if cfg.map.features:  # the feature space its statistics and calibration live in
            meta["backbone"] = asdict(installed_identity())
        _write_json(tmp / "metadata.json", meta)
    detector.metadata = meta
    return path


def check_versions(path: Path, meta: dict[str, Any]) -> None:
    """Warn when the artifact was saved with another major version of torch or diffusers."""
    saved = meta.get("versions", {})
    current = library_versions()
    for lib in ("torch", "diffusers"):
        if saved.get(lib, "").split(".")[:1] != current[lib].split(".")[:1]:
            warnings.warn(f"model {path} was saved with {lib} {saved.get(lib)}; running {current[lib]}", stacklevel=3)


def _load_denoiser_artifact(path: Path, meta: dict[str, Any]) -> Detector:
    cfg = DetectorConfig.from_dict(read_json(path / "config.json"), f"{path / 'config.json'}")
    try:
        weights = load_file(str(path / "weights.safetensors"))
        stats = load_file(str(path / "stats.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"model {path}: cannot read tensors ({exc}); the artifact is damaged") from None
    if meta["kind"] != ("consistency" if cfg.model.consistency else "ddim"):
        raise ArtifactError(
            f"model {path}: metadata.json says kind {meta['kind']!r} but config.json's "
            f"model.consistency is {cfg.model.consistency}; the artifact is damaged"
        )
    model = build_denoiser(cfg.model)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ArtifactError(f"model {path}: weights.safetensors does not match config.json ({first})") from None
    calibration = read_json(path / "calibration.json")
    thresholds = read_json(path / "thresholds.json")
    products = {}
    for i, name in enumerate(cfg.model.products):
        if name not in calibration or name not in thresholds:
            raise ArtifactError(f"model {path}: product {name!r} has no calibration/threshold entry")
        cal = dict(calibration[name])
        kind, size = cal.pop("good_kind"), cal.pop("image_size")
        prefix = f"{i}.good."
        good = GoodStatistics(kind, {k[len(prefix) :]: v for k, v in stats.items() if k.startswith(prefix)})
        try:
            norm = Normalizer(stats[f"{i}.norm.mean"], stats[f"{i}.norm.std"])
        except KeyError as exc:
            raise ArtifactError(f"model {path}: stats.safetensors lacks {exc} for product {name!r}") from None
        products[name] = ProductState(
            good, norm, Calibration.from_dict({**cal, **thresholds[name]}), tuple(size) if size else None
        )
    return Detector(cfg, model, products, meta)


# Both kinds keep the same files; a consistency student differs only in config.model.consistency.
LOADERS: dict[str, Callable[[Path, dict[str, Any]], Detector]] = dict.fromkeys(KINDS, _load_denoiser_artifact)


def load_detector(path: str | Path) -> Detector:
    path = Path(path)
    meta = read_metadata(path)
    check_versions(path, meta)
    detector = LOADERS[meta["kind"]](path, meta)
    if detector.cfg.map.features:
        if "backbone" not in meta:
            raise ArtifactError(f"model {path}: map.features is on but metadata.json names no backbone; damaged")
        BackboneIdentity(**meta["backbone"]).check(installed_identity(), f"model {path}")
    return detector


def update_thresholds(path: str | Path, product: str, calibration: Calibration) -> None:
    """Rewrite one product's threshold entry in place (e.g. after F1-max calibration)."""
    path = Path(path)
    thresholds = read_json(path / "thresholds.json")
    thresholds[product] = {
        "threshold": calibration.threshold,
        "method": calibration.method,
        "target_fpr": calibration.target_fpr,
        "calibration_fpr": calibration.calibration_fpr,
    }
    _write_json(path / "thresholds.json", thresholds)
