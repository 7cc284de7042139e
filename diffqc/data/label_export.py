"""Labelled inspections as an MVTec-layout data set of one product type (``diffqc labels export``).

    <out>/test/good/<name>.<ext>            confirmed_good and false_alarm: the parts are good
    <out>/test/<defect_class>/<name>.<ext>  confirmed_defect and missed_defect
    <out>/labels.csv, labels.json           one row per exported frame: file, ids, kind, score,
                                            threshold, model version, who labelled it and when
    <out>/dataset.json                      what was exported, and the frames left out and why

There is no ``ground_truth/``: a label judges the whole part, no one draws a defect's pixels, so the
set is image-level (``diffqc.data.mvtec.has_masks`` is False), and no ``train/``: these are the parts
an inspector looked at, a test set. Images are the bytes the camera sent, read from the blob store by
the digest in the frame's row; a frame whose blob is gone or unreadable is left out and reported, the
rest is exported. File names come from the inspection id alone, sanitized and made unique with a hash
of it, never from free text; the defect class folder is a checked token (diffqc.store.labels). The set
is written to a temporary folder and moved into place when complete (diffqc.data.mvtec.building).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import Engine

from diffqc.core import clock
from diffqc.data.mvtec import GOOD, building
from diffqc.store import db, labels
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.store.models import LabelKind, Verdict

SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}  # what the gateway accepts
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
NAME_LENGTH = 80
CSV_FIELDS = (
    "file",
    "inspection_id",
    "frame_id",
    "line_id",
    "product_type",
    "kind",
    "defect_class",
    "verdict",
    "score",
    "threshold",
    "model_version",
    "labelled_by",
    "labelled_at",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


class ExportError(ValueError):
    """Nothing to export; the message says what was looked for or why no frame could be exported."""


class SeveralProducts(ExportError):
    """The labels span several product types and none was chosen."""


@dataclass
class ExportReport:
    out: Path
    product_type: str
    exported: Counter[str] = field(default_factory=Counter)  # folder -> frames
    missing: list[dict[str, str]] = field(default_factory=list)  # {"inspection_id", "frame_id", "problem"}


def file_stem(inspection_id: str) -> str:
    """A safe, unique file name stem for an inspection id: its safe characters and a hash of all of it."""
    digest = hashlib.sha256(inspection_id.encode()).hexdigest()[:12]
    return f"{UNSAFE.sub('_', inspection_id)[:NAME_LENGTH]}-{digest}"


def _suffix(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return SUFFIXES.get(image.format or "")
    except (UnidentifiedImageError, OSError):
        return None


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _choose_product(rows: list[labels.LabelledInspection], product_type: str | None, line_id: str | None) -> str:
    scope = " and ".join(
        part for part in (product_type and f"product type {product_type!r}", line_id and f"line {line_id!r}") if part
    )
    if not rows:
        raise ExportError("no labelled inspections" + (f" of {scope}" if scope else "") + " to export")
    products = sorted({row.frame.product_type for row in rows})
    if len(products) > 1:
        raise SeveralProducts(
            f"labels of {len(products)} product types ({', '.join(products)}): an MVTec data set holds one, "
            "choose it with --product"
        )
    return products[0]


def export_labels(
    engine: Engine, blobs: BlobStore, out: Path, product_type: str | None = None, line_id: str | None = None
) -> ExportReport:
    """Write the labelled inspections (of one product type, optionally one line) to ``out``."""
    with db.session(engine) as session:
        rows = labels.list_labels(session, line_id=line_id, product_type=product_type, limit=None)
    product = _choose_product(rows, product_type, line_id)
    report = ExportReport(Path(out), product)
    records: list[dict[str, Any]] = []
    manifest: dict[str, Any] = {"source": "diffqc labels export", "product_type": product, "line_id": line_id}
    with building(out, manifest) as tmp:
        for row in sorted(rows, key=lambda r: r.inspection.id):
            label, inspection, frame = row.label, row.inspection, row.frame
            try:
                data = blobs.get_digest(frame.image_sha256)
            except BlobNotFound as exc:  # gone or refused: this frame is left out, the others are not
                report.missing.append({"inspection_id": inspection.id, "frame_id": frame.id, "problem": str(exc)})
                continue
            suffix = _suffix(data)
            if suffix is None:
                problem = "the stored image is not a PNG, JPEG, BMP or TIFF"
                report.missing.append({"inspection_id": inspection.id, "frame_id": frame.id, "problem": problem})
                continue
            folder = label.defect_class if labels.is_defective(label.kind) else GOOD
            if not folder or (folder != GOOD and not labels.DEFECT_CLASS.fullmatch(folder)):
                raise RuntimeError(f"label of {inspection.id!r} has defect class {folder!r}, which it cannot have")
            relative = f"test/{folder}/{file_stem(inspection.id)}{suffix}"
            (tmp / "test" / folder).mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_bytes(data)
            report.exported[folder] += 1
            records.append(
                {
                    "file": relative,
                    "inspection_id": inspection.id,
                    "frame_id": frame.id,
                    "line_id": frame.line_id,
                    "product_type": frame.product_type,
                    "kind": LabelKind(label.kind).value,
                    "defect_class": label.defect_class,
                    "verdict": Verdict(inspection.verdict).value,
                    "score": inspection.score,
                    "threshold": inspection.threshold,
                    "model_version": inspection.model_version,
                    "labelled_by": label.labelled_by,
                    "labelled_at": label.labelled_at.isoformat(),
                    "note": label.note,
                }
            )
        if not records:  # raised inside the block: nothing is moved into place
            problems = "; ".join(f"{m['inspection_id']}: {m['problem']}" for m in report.missing[:5])
            raise ExportError(f"none of the {len(rows)} labelled frames could be exported: {problems}")
        (tmp / "labels.json").write_text(json.dumps(records, indent=2) + "\n")
        with (tmp / "labels.csv").open("w", newline="") as handle:  # the note is free text: labels.json only
            writer = csv.DictWriter(handle, CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({name: _csv_cell(value) for name, value in r.items()} for r in records)
        manifest.update(
            exported_at=clock.now().isoformat(), samples=dict(sorted(report.exported.items())), missing=report.missing
        )
    return report
