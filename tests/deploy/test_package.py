"""What the images install is the built wheel, not the source tree: it must carry every file the
code loads at run time (Avro schemas, the shipped detectors, the dashboard), and the Triton image
must get real model artifacts, not the source tree's symlinks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from diffqc.contracts.avro import ALERT_SCHEMA
from diffqc.detector.default import DEFAULT_MODELS_DIR, DEFAULT_PRODUCT_TYPES
from diffqc.spc import SPC_SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_schemas_the_shipped_models_and_the_dashboard(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(ROOT),
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("diffqc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [ALERT_SCHEMA, SPC_SCHEMA, *ROOT.joinpath("services/gateway/static").iterdir()]
    needed += [f for product in DEFAULT_PRODUCT_TYPES for f in (DEFAULT_MODELS_DIR / product).iterdir()]
    missing = [str(p.relative_to(ROOT)) for p in needed if str(p.relative_to(ROOT)) not in names]
    assert missing == []


def test_the_triton_image_replaces_the_artifact_symlinks_with_the_artifacts():
    artifacts = ROOT / "model-repository/diffqc_detector/1/artifacts"
    links = sorted(p.name for p in artifacts.iterdir())
    assert links == sorted(DEFAULT_PRODUCT_TYPES)
    assert all(
        (artifacts / name).is_symlink() and (artifacts / name).resolve() == DEFAULT_MODELS_DIR / name for name in links
    )
    dockerfile = (ROOT / "deploy/triton/Dockerfile").read_text()
    assert "COPY diffqc/detector/default_models/ /models/diffqc_detector/1/artifacts/" in dockerfile
    assert dockerfile.index("rm -r /models/diffqc_detector/1/artifacts") < dockerfile.index(
        "COPY diffqc/detector/default_models/"
    )
