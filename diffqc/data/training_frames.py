"""A product's good frames from the line as a training set (MVTec layout, ``train/good``) for retraining.

Good frames are those an inspector did not find bad: every frame labelled ``false_alarm`` (a good part
the model flagged: what retraining most needs to learn), then the newest frames judged PASS unless
labelled ``missed_defect`` (or a defect kind at all), up to ``max_images``. Each image is read from
the blob store by the digest in its frame row and normalized exactly as preprocessing normalizes it
for the detector (the product's spec: colour, letterbox size, alignment), so the model retrains on
what it will judge. A frame whose blob is gone or unreadable is left out and reported, and the next one
takes its place; fewer than ``min_images`` usable frames refuse the set (NotEnoughImages), naming what
was found. The set is built in a temporary folder and moved into place when complete
(diffqc.data.mvtec.building).

    <out>/train/good/<inspection id>-<hash>.png
    <out>/dataset.json      the product, how many passed parts and false alarms, the frames left out
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from diffqc.data.images import DEFAULT_LIMITS, ImageLimits
from diffqc.data.label_export import file_stem
from diffqc.data.mvtec import GOOD, building, write_sample
from diffqc.preprocess.normalize import FrameImageError, normalize
from diffqc.preprocess.prepare import Preprocessor, load_frame_image
from diffqc.store import db
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.store.frames import frame_from_row
from diffqc.store.labels import DEFECTIVE_KINDS
from diffqc.store.models import Frame, Inspection, Label, LabelKind, Verdict

READ_BATCH = 100  # frame rows read from the database at a time


class NotEnoughImages(ValueError):
    """Too few good frames with a usable image to train on; the message says how many of which kind."""


@dataclass(frozen=True)
class GoodFrame:
    frame: Frame
    inspection_id: str
    false_alarm: bool  # labelled false_alarm (judged defective, found good), else a passed part


@dataclass
class TrainingSet:
    root: Path
    product_type: str
    passed: int = 0
    false_alarms: int = 0
    left_out: list[dict[str, str]] = field(default_factory=list)  # {"frame_id", "problem"}

    @property
    def images(self) -> int:
        return self.passed + self.false_alarms


def good_frames(session: Session, product: str) -> Iterator[GoodFrame]:
    """The good frames of ``product``, read as they are used: its false alarms, then its passed parts,
    newest first."""
    base = (
        select(Frame, Inspection.id)
        .join(Inspection, Inspection.frame_id == Frame.id)
        .outerjoin(Label, Label.inspection_id == Inspection.id)
        .where(Frame.product_type == product)
        .order_by(Inspection.inspected_at.desc(), Inspection.id)
        .execution_options(yield_per=READ_BATCH)
    )
    for frame, inspection_id in session.execute(base.where(Label.kind == LabelKind.FALSE_ALARM)):
        yield GoodFrame(frame, inspection_id, True)
    passed = base.where(
        Inspection.verdict == Verdict.PASS,
        Label.kind.is_(None) | Label.kind.not_in(sorted(DEFECTIVE_KINDS)),
    )
    for frame, inspection_id in session.execute(passed):
        yield GoodFrame(frame, inspection_id, False)


def export_training_set(
    engine: Engine,
    blobs: BlobStore,
    product: str,
    out: Path,
    *,
    max_images: int,
    min_images: int,
    limits: ImageLimits = DEFAULT_LIMITS,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingSet:
    """Write up to ``max_images`` of ``product``'s good frames, normalized by its spec, to ``out`` (a frame left
    out makes room for the next); ``progress(written, max_images)`` after each. NotEnoughImages when fewer than
    ``min_images`` could be written (nothing is left at ``out`` then)."""
    preprocessor = Preprocessor(engine, blobs, limits=limits)
    spec = preprocessor.spec(product)  # UnknownProduct / SpecError: the product's configuration, not a frame's
    reference = preprocessor.reference(spec)
    result = TrainingSet(Path(out), product)
    manifest: dict[str, object] = {"source": "diffqc training job", "product": product}
    with building(out, manifest) as tmp, db.session(engine) as session:
        for good in good_frames(session, product):
            if result.images >= max_images:
                break
            try:
                image = load_frame_image(frame_from_row(good.frame), blobs, limits)
            except (BlobNotFound, FrameImageError) as exc:  # this frame is left out, the others are not
                result.left_out.append({"frame_id": good.frame.id, "problem": str(exc)})
            else:
                normalized, _box, _alignment = normalize(image, spec, reference)
                write_sample(tmp, "train", GOOD, file_stem(good.inspection_id), normalized)
                if good.false_alarm:
                    result.false_alarms += 1
                else:
                    result.passed += 1
            if progress is not None:
                progress(result.images, max_images)
        if result.images < min_images:  # raised inside the block: nothing is moved into place
            left_out = ""
            if result.left_out:
                left_out = f"; {len(result.left_out)} left out, e.g. {result.left_out[0]['problem']}"
            raise NotEnoughImages(
                f"product type {product!r} has {result.images} usable good frame(s) ({result.passed} passed, "
                f"{result.false_alarms} labelled false_alarm{left_out}); retraining needs at least {min_images}"
            )
        manifest.update(passed=result.passed, false_alarms=result.false_alarms, left_out=result.left_out)
    return result
