"""Stage detector artifacts into a Triton model repository as new model versions.

    <repo>/diffqc_detector/config.pbtxt                        rendered by diffqc.serving.model_config (CPU or GPU)
    <repo>/diffqc_detector/<version>/model.py                  imports diffqc.serving.triton_model
    <repo>/diffqc_detector/<version>/artifacts/<product...>/   one detector artifact each

A new version carries over the previous version's artifacts, except those serving a product type
that the new artifact serves too, so one Triton keeps serving every product while one is updated.
Staging serves nothing by itself: the model registry decides which version judges each product
(diffqc.store.model_registry) and Triton, under explicit model control, loads the versions the
registry needs (diffqc.serving.loader); a Triton that polls the repository serves every staged
version (version_policy all) and inference still asks each product's production version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from diffqc.core.artifact import read_metadata
from diffqc.core.errors import ArtifactError
from diffqc.serving.model_config import render_config

MODEL_NAME = "diffqc_detector"
MODEL_PY = '''"""Triton entry point of the diffqc detector: the implementation lives in the diffqc library."""

from diffqc.serving.triton_model import TritonPythonModel  # noqa: F401
'''


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit())


def _artifact_products(path: Path) -> set[str]:
    return set(read_metadata(path)["products"])


def write_config(model_dir: Path, config: str) -> Path:
    """Replace ``model_dir``'s config.pbtxt with ``config`` in one rename (a polling Triton never
    reads half a file; an unchanged text reloads nothing)."""
    path = model_dir / "config.pbtxt"
    partial = model_dir / ".config.pbtxt.partial"
    partial.write_text(config)
    partial.replace(path)
    return path


def stage_version(artifact: Path, repo: Path, config: str | None = None) -> Path:
    """Copy ``artifact`` into ``repo`` as the next version of the detector model; return its directory.

    ``config``: the model's config.pbtxt to write (``render_config``); None keeps the repository's,
    or writes the CPU config into a new repository."""
    artifact = Path(artifact)
    products = _artifact_products(artifact)  # also validates the artifact before anything is written
    model_dir = Path(repo) / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    if config is not None or not (model_dir / "config.pbtxt").exists():
        write_config(model_dir, render_config("cpu") if config is None else config)
    existing = versions(model_dir)
    version_dir = model_dir / str((existing[-1] if existing else 0) + 1)
    staging = model_dir / f".staging-{version_dir.name}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "artifacts").mkdir(parents=True)
    if existing:
        for kept in sorted((model_dir / str(existing[-1]) / "artifacts").glob("*")):
            if kept.is_dir() and not (_artifact_products(kept) & products):
                shutil.copytree(kept, staging / "artifacts" / kept.name)
    shutil.copytree(artifact, staging / "artifacts" / "-".join(sorted(products)))
    (staging / "model.py").write_text(MODEL_PY)
    staging.rename(version_dir)  # atomic: Triton (a repository poll, a load) never sees a half-copied version
    return version_dir


def artifact_of(repo: Path, version: str, product: str) -> Path:
    """The artifact of model version ``version`` in ``repo`` that serves ``product``."""
    artifacts = Path(repo) / MODEL_NAME / version / "artifacts"
    for path in sorted(artifacts.glob("*")):
        if path.is_dir() and product in _artifact_products(path):
            return path
    raise ArtifactError(
        f"model version {version} has no artifact serving product {product!r} in the model repository {repo} "
        f"(looked in {artifacts})"
    )
