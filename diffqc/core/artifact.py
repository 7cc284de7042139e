"""Reading a detector artifact without the detector: its metadata, thresholds and calibration.

The platform stages artifacts into Triton's repository and registers their thresholds in the
database; it needs these few JSON files, not torch. Writing and loading a whole artifact is the
detector's (``diffqc.detector.artifact``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffqc.core.errors import ArtifactError

FORMAT_VERSION = "1.0"
FILES = (
    "config.json",
    "weights.safetensors",
    "stats.safetensors",
    "calibration.json",
    "thresholds.json",
    "metadata.json",
)
# What the network inside is: a DDIM denoiser, or a one-step consistency student distilled from one.
KINDS = ("ddim", "consistency")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the artifact is damaged") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The artifact's metadata, after checking that ``path`` is an artifact this version can read."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"model {path} does not exist or is not a directory (expected a detector artifact)")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise ArtifactError(f"model {path} is not a complete detector artifact: missing {', '.join(missing)}")
    meta: dict[str, Any] = read_json(path / "metadata.json")
    version = str(meta.get("format_version", ""))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise ArtifactError(
            f"model {path} has artifact format {version or 'unknown'}; this diffqc reads format "
            f"{FORMAT_VERSION.split('.')[0]}.x — retrain the model or use a matching diffqc version"
        )
    if meta.get("kind") not in KINDS:
        raise ArtifactError(f"model {path} is of kind {meta.get('kind')!r}; known kinds: {sorted(KINDS)}")
    return meta


def artifact_registration(artifact_dir: str | Path, product: str) -> dict[str, Any]:
    """``threshold`` and ``metrics`` (with ``region_level``) of ``product`` in a detector artifact,
    ready for ``register_model_version(session, product, version, uri, **artifact_registration(...))``."""
    root = Path(artifact_dir)
    try:
        thresholds = json.loads((root / "thresholds.json").read_text())[product]
        calibration = json.loads((root / "calibration.json").read_text())[product]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{root}: no calibration of product {product!r} ({exc.__class__.__name__}: {exc})") from None
    metrics = {
        "region_level": float(calibration["region_level"]),
        "threshold_method": thresholds.get("method"),
        "target_fpr": thresholds.get("target_fpr"),
        "calibration_fpr": thresholds.get("calibration_fpr"),
    }
    return {"threshold": float(thresholds["threshold"]), "metrics": metrics}
