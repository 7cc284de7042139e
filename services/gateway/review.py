"""Review and labels: an operator labels a verdict (confirmed defect, false alarm, missed defect, confirmed
good), viewers read labels and the threshold proposal they support, and the review page shows them."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
import pathlib
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Security
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import Engine, select

from diffqc.detector.label_calibration import MIN_PER_CLASS, TARGET_RECALL, propose_threshold
from diffqc.security.api_keys import Role
from diffqc.store import db, labels
from diffqc.store.inspections import active_model_version, model_version
from diffqc.store.models import LabelKind, ProductType, Verdict
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import PLAIN_TEXT, InspectionId, Problem

IdItem = Annotated[str, StringConstraints(max_length=128, pattern=PLAIN_TEXT)]
ProductId = Annotated[str, Path(max_length=64, pattern=PLAIN_TEXT)]
REVIEW_PATH = "/review"
MAX_IDS = 100  # inspection ids one /api/labels request may name (the review page asks for those it shows)
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 404, 422, 503)}


class NewLabel(BaseModel):
    kind: LabelKind = Field(
        description="confirmed_defect or false_alarm for a defect verdict; confirmed_good or missed_defect for a pass"
    )
    defect_class: str | None = Field(
        None,
        max_length=40,
        description="Required for confirmed_defect and missed_defect: [a-z0-9_]{1,40}, the data set folder",
    )
    note: str = Field("", max_length=labels.MAX_NOTE_LENGTH, description="What the inspector saw")


class LabelOut(BaseModel):
    inspection_id: str
    frame_id: str
    line_id: str
    product_type: str
    model_version: str
    verdict: Literal["pass", "defect"]
    score: float
    threshold: float
    kind: LabelKind
    defect_class: str | None
    note: str
    defective: bool = Field(description="The truth the label gives: the part is bad")
    labelled_by: str = Field(description="Name of the API key that labelled it")
    labelled_at: datetime


class OperatingPointOut(BaseModel):
    threshold: float = Field(description="Defect when score > threshold")
    recall: float
    fpr: float
    precision: float | None
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int


class ThresholdProposal(BaseModel):
    product_type: str
    model_version: str | None = Field(description="The model whose scores were labelled (scores of another differ)")
    current_threshold: float | None
    labels: dict[str, int] = Field(description="Labelled inspections of this model version per kind")
    defective: int
    good: int
    min_per_class: int
    target_recall: float
    enough_labels: bool
    reason: str | None = Field(description="Why there is no proposal (not enough labels)")
    current: OperatingPointOut | None = Field(description="The current threshold on the labelled set")
    f1_max: OperatingPointOut | None
    at_target_recall: OperatingPointOut | None = Field(
        description="The highest threshold whose recall on the labelled set reaches target_recall"
    )


def _out(item: labels.LabelledInspection) -> LabelOut:
    label, inspection, frame = item.label, item.inspection, item.frame
    return LabelOut(
        inspection_id=inspection.id,
        frame_id=frame.id,
        line_id=frame.line_id,
        product_type=frame.product_type,
        model_version=inspection.model_version,
        verdict=Verdict(inspection.verdict).value,
        score=inspection.score,
        threshold=inspection.threshold,
        kind=LabelKind(label.kind),
        defect_class=label.defect_class,
        note=label.note,
        defective=labels.is_defective(label.kind),
        labelled_by=label.labelled_by,
        labelled_at=label.labelled_at,
    )


def review_router(engine: Engine, auth: Auth, static: pathlib.Path) -> APIRouter:
    router = APIRouter(responses=_ERRORS, tags=["labels"])
    viewer = Security(auth.require(Role.VIEWER))
    operator = Security(auth.require(Role.OPERATOR))

    @router.put("/api/inspection/{inspection_id}/label", response_model=LabelOut)
    def put_label(inspection_id: InspectionId, body: NewLabel, principal: Annotated[Principal, operator]) -> LabelOut:
        """Label a verdict, replacing its label (audited with the one it replaced); the same label again is a no-op."""
        try:
            with db.session(engine, write=True) as session:
                change = labels.set_label(
                    session,
                    inspection_id,
                    body.kind,
                    body.defect_class,
                    body.note,
                    principal.name,
                    {"key_id": principal.key_id},
                )
        except labels.InspectionNotFound as exc:
            raise ApiError(404, str(exc)) from None
        except labels.InvalidLabel as exc:
            raise ApiError(422, str(exc)) from None
        return _out(change.labelled)

    @router.get("/api/inspection/{inspection_id}/label", response_model=LabelOut | None, dependencies=[viewer])
    def get_label(inspection_id: InspectionId) -> LabelOut | None:
        """The inspection's current label; null when it has none (404 only for an unknown inspection)."""
        with db.session(engine) as session:
            try:
                found = labels.get_label(session, inspection_id)
            except labels.InspectionNotFound as exc:
                raise ApiError(404, str(exc)) from None
        return None if found is None else _out(found)

    @router.get("/api/labels", response_model=list[LabelOut], dependencies=[viewer])
    def list_labels(
        line: Annotated[str | None, Query(max_length=64, pattern=PLAIN_TEXT)] = None,
        product_type: Annotated[str | None, Query(max_length=64, pattern=PLAIN_TEXT)] = None,
        inspection_id: Annotated[
            list[IdItem] | None, Query(max_length=MAX_IDS, description="Only these inspections (repeat the parameter)")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=labels.MAX_LIST)] = 200,
    ) -> list[LabelOut]:
        """Labels, newest first."""
        with db.session(engine) as session:
            rows = labels.list_labels(session, line, product_type, inspection_id, limit=limit)
            return [_out(row) for row in rows]

    @router.get("/api/products/{product}/threshold-proposal", response_model=ThresholdProposal, dependencies=[viewer])
    def threshold_proposal(
        product: ProductId,
        version: Annotated[
            str | None,
            Query(
                alias="model_version",
                max_length=64,
                pattern=PLAIN_TEXT,
                description="Default: the active model version, else the one of the newest label",
            ),
        ] = None,
        target_recall: Annotated[float, Query(gt=0, le=1)] = TARGET_RECALL,
    ) -> ThresholdProposal:
        """The F1-max and target-recall thresholds on the product's labelled verdicts of one model version."""
        with db.session(engine) as session:
            if session.scalar(select(ProductType.name).where(ProductType.name == product)) is None:
                raise ApiError(404, f"no product type {product!r}")
            active = active_model_version(session, product)
            chosen = version or (active.version if active else labels.newest_labelled_model_version(session, product))
            rows = (
                []
                if chosen is None
                else labels.list_labels(session, product_type=product, model_version=chosen, limit=None)
            )
            registered = model_version(session, product, chosen) if chosen else None
        current = registered.threshold if registered else (rows[0].inspection.threshold if rows else None)
        proposal = propose_threshold(
            [row.inspection.score for row in rows],
            [labels.is_defective(row.label.kind) for row in rows],
            current_threshold=current,
            target_recall=target_recall,
            min_per_class=MIN_PER_CLASS,
        )
        counts = {kind.value: 0 for kind in LabelKind}
        for row in rows:
            counts[LabelKind(row.label.kind).value] += 1
        fields = asdict(proposal)
        return ThresholdProposal(
            product_type=product, model_version=chosen, current_threshold=current, labels=counts, **fields
        )

    @router.get(REVIEW_PATH, include_in_schema=False, response_model=None)
    def review_page(
        key: Annotated[str | None, Security(auth.header)], session: Annotated[str | None, Security(auth.cookie)]
    ) -> FileResponse | RedirectResponse:
        """The review page for a logged-in person; the login page for anyone else."""
        return auth.page(key, session, static / "review.html")

    return router
