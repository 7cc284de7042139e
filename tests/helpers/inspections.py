"""Stored verdicts without the pipeline, for tests of what is read or written about them (labels, export):
the frame row with its image in the blob store, the inspection row as scoring writes it."""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image
from sqlalchemy import Engine

from diffqc.store import db
from diffqc.store.blobs import BlobStore
from diffqc.store.inspections import record_inspection, register_model_version
from diffqc.store.models import Frame, ProductType, Verdict

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def png(seed: int, size: int = 16) -> bytes:
    """A small distinct PNG per seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def add_product(engine: Engine, product: str, version: str = "1", threshold: float = 0.5) -> None:
    with db.session(engine, write=True) as session:
        if session.get(ProductType, product) is None:
            session.add(ProductType(name=product, preprocessing={}, nominal_ranges={}))
            session.flush()
        register_model_version(session, product, version, f"file:///models/{product}/{version}", threshold)


def add_inspection(
    engine: Engine,
    blobs: BlobStore | None,
    inspection_id: str,
    score: float,
    *,
    threshold: float = 0.5,
    line: str = "L1",
    product: str = "pcb",
    version: str = "1",
    image: bytes | None = None,
    index: int = 0,
) -> str:
    """One frame (image stored in ``blobs`` when given) and its inspection; the verdict is score > threshold."""
    data = image if image is not None else png(zlib.crc32(inspection_id.encode()))
    with Image.open(io.BytesIO(data)) as decoded:
        (width, height), channels = decoded.size, len(decoded.getbands())
    ref = blobs.put(data, "image/png") if blobs is not None else None
    digest = ref.sha256 if ref is not None else "0" * 64
    frame_id = f"frame-{inspection_id}"
    with db.session(engine, write=True) as session:
        session.add(
            Frame(
                id=frame_id,
                plant_id="P1",
                line_id=line,
                station_id="S1",
                camera_id="C1",
                product_type=product,
                captured_at=START + timedelta(seconds=index),
                image_uri=ref.uri if ref is not None else "file:///gone",
                image_sha256=digest,
                height=height,
                width=width,
                channels=channels,
            )
        )
        session.flush()
        defect = score > threshold
        record_inspection(
            session,
            id=inspection_id,
            frame_id=frame_id,
            model_version=version,
            component_scores={"pixel": score},
            score=score,
            threshold=threshold,
            verdict=Verdict.DEFECT if defect else Verdict.PASS,
            latency_ms=10.0,
            regions=[{"x": 2, "y": 3, "width": 5, "height": 4, "area_px": 12, "peak_score": score}] if defect else [],
            inspected_at=START + timedelta(seconds=index, milliseconds=500),
        )
    return inspection_id
