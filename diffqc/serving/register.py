"""Register a staged model version in the metadata database.

Ingestion accepts frames of registered product types only, preprocessing normalizes them by the
product's spec and scoring thresholds them with the product's active model version. So a version
that Triton serves is registered here: every product type its artifacts serve, with its spec, and
this version as the active one with the artifact's threshold.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from diffqc.core.artifact import artifact_registration, read_json, read_metadata
from diffqc.core.errors import ArtifactError
from diffqc.store import db
from diffqc.store.inspections import register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.products import register_product

DEFAULT_IMAGE_SIZE = 256  # the normalized size of products whose model is not tied to one size


def product_specs(artifact: Path) -> dict[str, dict[str, int]]:
    """The normalized image spec (height, width, channels) of every product a detector artifact
    serves, from its JSON files: registering a version needs no torch."""
    meta = read_metadata(artifact)  # a complete artifact of a format this version reads
    try:
        channels = int(read_json(artifact / "config.json")["model"]["channels"])
        calibration = read_json(artifact / "calibration.json")
        specs = {}
        for product in meta["products"]:
            h, w = calibration[product]["image_size"] or (DEFAULT_IMAGE_SIZE,) * 2
            specs[product] = {"height": int(h), "width": int(w), "channels": channels}
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"model {artifact}: no image spec for every product ({exc.__class__.__name__}: "
            f"{exc}); the artifact is damaged"
        ) from None
    return specs


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
            for product, spec in product_specs(artifact).items():
                sizes[product] = (spec["height"], spec["width"])
                register_product(session, product, spec)
                register_model_version(
                    session, product, version_dir.name, artifact.as_uri(), **artifact_registration(artifact, product)
                )
    return sizes
