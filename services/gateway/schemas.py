"""The JSON bodies of the API (they are the OpenAPI schemas at /docs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, Field

from diffqc.security.api_keys import Role

PLAIN_TEXT = r"^[^\x00-\x1f\x7f]+$"  # what ingestion accepts as an id: no control characters
# Path parameters of every route: bounded and without control characters before any query sees them.
InspectionId = Annotated[str, Path(max_length=128, pattern=PLAIN_TEXT, description="An inspection id or a frame id")]
LineId = Annotated[str, Path(max_length=64, pattern=PLAIN_TEXT)]


class Problem(BaseModel):
    detail: str = Field(description="What is wrong with the request, or which dependency failed")


class Region(BaseModel):
    x: int = Field(description="Left edge, in pixels of the original frame")
    y: int = Field(description="Top edge")
    width: int
    height: int
    area_px: int = Field(description="Pixels of the region above the region level")
    peak_score: float = Field(description="Highest anomaly-map value in the region")


class InspectionResult(BaseModel):
    inspection_id: str
    frame_id: str
    plant_id: str
    line_id: str
    station_id: str
    camera_id: str
    product_type: str
    work_order: str | None
    lot: str | None
    captured_at: datetime
    inspected_at: datetime
    model_version: str
    verdict: Literal["pass", "defect", "not_inspected"] = Field(
        description="not_inspected: a stage dead-lettered the frame, the part must be checked by hand (score and "
        "threshold are 0)"
    )
    not_inspected_reason: str | None = Field(
        None, description="Why the part was not inspected: dead-lettered at <stage>: <reason> (not_inspected only)"
    )
    score: float = Field(description="Fused anomaly score; defect when score > threshold")
    threshold: float
    components: dict[str, float] = Field(description="Component scores: pixel, structural, concentration, process")
    regions: list[Region] = Field(description="Defect regions (defects only)")
    latency_ms: float = Field(description="Ingestion to verdict")
    heatmap_url: str | None = Field(description="The heatmap overlay PNG (anomaly map over the frame, regions boxed)")
    image_url: str = Field(description="The original frame image as uploaded")
    reconstruction_url: str | None = Field(
        description="The model's reconstruction of the frame as a good part, computed on request (not inspected: none)"
    )


class UploadResult(BaseModel):
    frame_id: str = Field(description="The frame's id (assigned by ingestion when the upload had none)")
    status: Literal["accepted", "duplicate"] = Field(
        description="accepted: stored and queued for inspection; duplicate: this frame id was ingested before"
    )
    result_url: str = Field(description="Where the inspection result appears (GET)")
    inspection: InspectionResult | None = Field(
        None, description="The verdict, with wait=true once it exists within the wait timeout"
    )


class LineSummary(BaseModel):
    line_id: str
    inspections: int
    defects: int
    last_inspected_at: datetime


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: str
    ingestion: str


class Login(BaseModel):
    api_key: str = Field(min_length=1, max_length=200, description="An API key; the session gets its role")


class SessionInfo(BaseModel):
    name: str = Field(description="Name of the API key the session (or request) authenticated with")
    role: Role
    expires_at: datetime | None = Field(None, description="When the session ends (in the answer to a login)")


class NewKey(BaseModel):
    name: str = Field(
        min_length=1, max_length=100, pattern=r"^[^:\x00-\x1f\x7f]+$", description="Who or what holds the key"
    )
    role: Role


class KeyInfo(BaseModel):
    id: str
    name: str
    role: Role
    prefix: str = Field(description="The key's first characters after dqc_: which key a client holds")
    created_at: datetime
    revoked_at: datetime | None


class CreatedKey(KeyInfo):
    key: str = Field(description="The API key itself: shown this once, stored only as a salted hash")


class AuditRow(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="Name of the API key (or CLI user, or service) that acted")
    action: str = Field(description="inspection.upload, key.create, key.revoke, line.stop ...")
    subject: str = Field(description="What it acted on: a frame id, a key id, a line id")
    details: dict[str, Any]
    prev_hash: str
    hash: str = Field(description="sha256(prev_hash + canonical JSON of id, at, actor, action, subject, details)")


class ChainStatus(BaseModel):
    intact: bool
    rows_checked: int = Field(description="Rows verified before the first break (all rows when intact)")
    first_broken_id: int | None = None
    reason: str | None = None
