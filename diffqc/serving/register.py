"""Register a staged model version in the metadata database.

Ingestion accepts frames of registered product types only, preprocessing normalizes them by the
product's spec and scoring thresholds them with the product's active model version. So a version
that Triton serves is registered here: every product type its artifacts serve, with its spec, and
this version as the active one with the artifact's threshold.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from diffqc.core.artifact import artifact_registration
from diffqc.detector.detector import Detector
from diffqc.store import db
from diffqc.store.inspections import register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.products import register_product

DEFAULT_IMAGE_SIZE = 256  # the normalized size of products whose model is not tied to one size


def register_version(version_dir: Path, engine: Engine) -> dict[str, tuple[int, int]]:
    """Register every product served by the artifacts of ``version_dir`` (a Triton model version)
    and make this version active for each; returns the normalized (height, width) per product.
    A database that does not answer raises ``DependencyUnavailable``."""
    version_dir = Path(version_dir)
    sizes = {}
    with db.database_unavailable():
        upgrade(engine)
    with db.session(engine, write=True) as session:
        for artifact in sorted(p for p in (version_dir / "artifacts").iterdir() if p.is_dir()):
            detector = Detector.load(artifact)
            for product in detector.product_names:
                h, w = detector.products[product].image_size or (DEFAULT_IMAGE_SIZE,) * 2
                sizes[product] = (int(h), int(w))
                register_product(session, product, {"height": int(h), "width": int(w),
                                                    "channels": detector.cfg.model.channels})
                register_model_version(session, product, version_dir.name, artifact.as_uri(),
                                       **artifact_registration(artifact, product))
    return sizes
