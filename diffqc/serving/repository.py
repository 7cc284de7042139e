"""Stage detector artifacts into a Triton model repository as new model versions.

    <repo>/diffqc_detector/config.pbtxt
    <repo>/diffqc_detector/<version>/model.py                  imports diffqc.serving.triton_model
    <repo>/diffqc_detector/<version>/artifacts/<product...>/    one detector artifact each

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

MODEL_NAME = "diffqc_detector"
TEMPLATE_CONFIG = Path(__file__).with_name("config.pbtxt")
MODEL_PY = '''"""Triton entry point of the diffqc detector: the implementation lives in the diffqc library."""

from diffqc.serving.triton_model import TritonPythonModel  # noqa: F401
'''


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit())


def _artifact_products(path: Path) -> set[str]:
    return set(read_metadata(path)["products"])


def stage_version(artifact: Path, repo: Path) -> Path:
    """Copy ``artifact`` into ``repo`` as the next version of the detector model; return its directory."""
    artifact = Path(artifact)
    products = _artifact_products(artifact)  # also validates the artifact before anything is written
    model_dir = Path(repo) / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    if not (model_dir / "config.pbtxt").exists():
        shutil.copyfile(TEMPLATE_CONFIG, model_dir / "config.pbtxt")
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
