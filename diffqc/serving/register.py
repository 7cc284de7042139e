"""Register a staged model version in the metadata database.

Ingestion accepts frames of registered product types only, preprocessing normalizes them by the
product's spec, inference asks Triton for the product's production version and scoring thresholds
with that version's row. So a version that Triton serves is registered here: every product type its
artifacts serve, with its spec, and this version with the artifact's threshold and its lineage, in
production for a product's first model, else a candidate (diffqc.store.model_registry moves it on).
A product registered before keeps what the artifact does not say: its nominal process ranges and the
rest of its preprocessing spec (tiling, alignment).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from sqlalchemy.engine import Engine

from diffqc.core.artifact import artifact_registration, read_json, read_metadata
from diffqc.core.errors import ArtifactError
from diffqc.store import audit, db
from diffqc.store.inspections import model_version, register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.model_registry import production_version
from diffqc.store.products import find_product_type, register_product

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


def lineage(artifact: Path, product: str, parent: str | None, actor: str) -> dict[str, str | None]:
    """Where ``product``'s model in ``artifact`` comes from: the production version it is meant to replace,
    the fingerprint of its training data, who trained it (the artifact's ``trained_by``, else who registers it)."""
    meta = read_metadata(artifact)
    training = (meta.get("training_data") or {}).get(product) or {}
    return {
        "parent_version": parent,
        "data_fingerprint": training.get("fingerprint"),
        "trained_by": meta.get("trained_by") or actor,
    }


def register_version(
    version_dir: Path, engine: Engine, actor: str = "diffqc", products: Collection[str] | None = None
) -> dict[str, tuple[int, int]]:
    """Register every product served by the artifacts of ``version_dir`` (a Triton model version), or only
    ``products`` of them, with its lineage; returns the normalized (height, width) per product registered. The
    version goes to production for a product that has no production version yet (its first model), else it is
    a candidate until ``diffqc model promote``. A database that does not answer raises ``DependencyUnavailable``."""
    version_dir = Path(version_dir)
    sizes = {}
    with db.database_unavailable():
        upgrade(engine)
    with db.session(engine, write=True) as session:
        for artifact in sorted(p for p in (version_dir / "artifacts").iterdir() if p.is_dir()):
            for product, spec in product_specs(artifact).items():
                if products is not None and product not in products:
                    continue
                sizes[product] = (spec["height"], spec["width"])
                known = find_product_type(session, product)
                if known is None:
                    register_product(session, product, spec)
                else:
                    register_product(session, product, {**known.preprocessing, **spec}, known.nominal_ranges)
                if model_version(session, product, version_dir.name) is not None:  # registered before: stage kept
                    register_model_version(
                        session,
                        product,
                        version_dir.name,
                        artifact.as_uri(),
                        **artifact_registration(artifact, product),
                        activate=False,
                    )
                    continue
                parent = production_version(session, product)
                row = register_model_version(
                    session,
                    product,
                    version_dir.name,
                    artifact.as_uri(),
                    **artifact_registration(artifact, product),
                    activate=parent is None,
                    lineage=lineage(artifact, product, parent.version if parent else None, actor),
                )
                audit.append(
                    session,
                    actor,
                    "model.register",
                    f"{product}/{row.version}",
                    {
                        "stage": row.stage,
                        "parent_version": row.parent_version,
                        "data_fingerprint": row.data_fingerprint,
                    },
                )
    return sizes
