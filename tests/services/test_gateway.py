"""The gateway as a real uvicorn process in front of the real pipeline: uploads end as inspections
whose verdict, heatmap and image the API serves; the SPC chart is the store's; every malformed
request is a 4xx naming the problem and leaves nothing behind."""

from __future__ import annotations

import io
import uuid

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from PIL import Image
from schemathesis.checks import positive_data_acceptance
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.data.mvtec import list_samples
from diffqc.settings import SpcSettings
from diffqc.spc import chart_from_history
from diffqc.store.engine import make_engine
from diffqc.store.models import Frame, Inspection
from tests.helpers.gateway_stack import (
    ADMIN_KEY,
    API_KEY,
    UPLOAD,
    capture_times,
    gateway_stack,
    parts_by_verdict,
    upload,
    wait_until,
)

pytestmark = pytest.mark.timeout(300)

INGESTION_IMAGE_LIMIT = 1024 * 1024
UPLOAD_LIMIT = 2 * 1024 * 1024
BASELINE = 5


@pytest.fixture(scope="module")
def stack(tiny_artifact, tmp_path_factory):
    with gateway_stack(
        tmp_path_factory.mktemp("gateway"),
        tiny_artifact[0],
        service_env={"DIFFQC_INGESTION_MAX_IMAGE_BYTES": str(INGESTION_IMAGE_LIMIT)},
        gateway_env={"DIFFQC_GATEWAY_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "DIFFQC_SPC_BASELINE_SIZE": str(BASELINE)},
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(stack):
    with stack.client() as client:
        yield client


@pytest.fixture(scope="module")
def images(tiny_artifact):
    """label -> encoded PNGs of the tiny product (test split)."""
    found: dict[int, list[bytes]] = {0: [], 1: []}
    for sample in list_samples(tiny_artifact[1], "test"):
        found[sample.label].append(sample.path.read_bytes())
    return found


@pytest.fixture(scope="module")
def engine(stack):
    engine = make_engine(stack.pipeline.database_url)
    yield engine
    engine.dispose()


def _frames(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Frame))


def _line() -> str:
    return f"L-{uuid.uuid4().hex[:6]}"


def test_an_upload_with_wait_returns_the_verdict_the_api_then_serves(client, images, engine, stack):
    image = images[1][0]
    response = upload(client, image, _line(), wait=True)
    assert response.status_code == 200, (response.text, stack.log_tails())
    body = response.json()
    inspection = body["inspection"]
    assert body["status"] == "accepted" and inspection["frame_id"] == body["frame_id"]

    with Session(engine) as session:
        row = session.scalars(select(Inspection).where(Inspection.frame_id == body["frame_id"])).one()
    assert (inspection["inspection_id"], inspection["verdict"], inspection["threshold"]) == (
        row.id,
        row.verdict.value,
        row.threshold,
    )
    assert inspection["score"] == pytest.approx(row.score)
    assert set(inspection["components"]) == {"pixel", "structural", "concentration", "process"}

    # The result by inspection id and by frame id, the heatmap and the original image.
    by_id = client.get(f"/api/inspection/result/{row.id}").json()
    assert by_id == client.get(body["result_url"]).json() == inspection
    heatmap = client.get(inspection["heatmap_url"])
    assert heatmap.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(heatmap.content)).size[0] > 0
    original = client.get(inspection["image_url"])
    assert original.content == image and original.headers["content-type"] == "image/png"


def test_an_upload_without_wait_is_accepted_then_inspected_and_a_resend_is_a_duplicate(client, images, engine):
    line, frame_id = _line(), f"gw-{uuid.uuid4().hex[:8]}"
    first = upload(client, images[0][0], line, frame_id=frame_id)
    assert first.status_code == 202 and first.json()["status"] == "accepted"
    assert first.json()["inspection"] is None
    result = wait_until(
        lambda: (r := client.get(first.json()["result_url"])).status_code == 200 and r.json(),
        what="the inspection of an upload",
    )
    assert result["frame_id"] == frame_id and result["line_id"] == line

    again = upload(client, images[0][0], line, frame_id=frame_id, wait=True)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert again.json()["inspection"] == result
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Inspection).where(Inspection.frame_id == frame_id)) == 1


def test_recent_inspections_and_the_line_spc_chart_come_from_the_store(client, images, engine, tiny_artifact):
    line = _line()
    candidates = images[0] + [s.path.read_bytes() for s in list_samples(tiny_artifact[1], "train")][:20]
    good, _ = parts_by_verdict(client, candidates, f"{line}-probe")
    # Two good parts that pass in turn fix the limits; then one of them nine times in a row, all on one side
    # of the centre line (Western Electric rule 4 from the eighth), then the defective parts.
    sequence = [good[i % 2] for i in range(BASELINE + 1)] + [good[0]] * 9 + images[1]
    times = capture_times(len(sequence))
    frame_ids = []
    for i, (image, when) in enumerate(zip(sequence, times, strict=True)):
        response = upload(client, image, line, wait=True, capture_time=when, lot=f"LOT-{i // 3}")
        assert response.status_code == 200, response.text
        frame_ids.append(response.json()["frame_id"])

    recent = client.get("/api/inspections", params={"line": line, "limit": 3}).json()
    assert [r["frame_id"] for r in recent] == frame_ids[::-1][:3]  # newest first, this line only
    assert line in [summary["line_id"] for summary in client.get("/api/lines").json()]

    spc = client.get(f"/api/lines/{line}/spc")
    assert spc.status_code == 200, spc.text
    (chart,) = spc.json()["charts"]
    with Session(engine) as session:
        scores = dict(
            session.execute(
                select(Inspection.frame_id, Inspection.score).where(Inspection.frame_id.in_(frame_ids))
            ).all()
        )
    # The chart runs over the line's scores in capture order, with its limits fixed by the baseline ...
    assert chart["sample_count"] == len(sequence) and chart["limits_fixed"]
    np.testing.assert_allclose([p["score"] for p in chart["points"]], [scores[f] for f in frame_ids])
    assert [p["monitored"] for p in chart["points"]] == [False] * BASELINE + [True] * (len(sequence) - BASELINE)
    baseline = np.array([scores[f] for f in frame_ids[:BASELINE]])
    assert chart["center_line"] == pytest.approx(baseline.mean())
    assert chart["sigma"] == pytest.approx(np.abs(np.diff(baseline)).mean() / 1.128)
    # ... every monitored score beyond 3 sigma is a rule 1 signal ...
    beyond = {
        p["sample_index"]
        for p in chart["points"]
        if p["monitored"] and not (chart["lower_control_limit"] <= p["score"] <= chart["upper_control_limit"])
    }
    assert beyond == {s["sample_index"] for s in chart["signals"] if s["rule"] == "we1"}
    assert ("we4", BASELINE + 9) in {(s["rule"], s["sample_index"]) for s in chart["signals"]}
    # ... and it is the chart the bridge's monitor builds from the same rows.
    with Session(engine) as session:
        rows = session.execute(
            select(Frame.captured_at, Inspection.score, Inspection.verdict, Frame.lot)
            .join(Inspection, Inspection.frame_id == Frame.id)
            .where(Frame.line_id == line)
            .order_by(Frame.captured_at)
        ).all()
    history = [(t, score, verdict.value, lot) for t, score, verdict, lot in rows]  # aware UTC: UTCDateTime
    expected = chart_from_history(line, chart["product_type"], history, SpcSettings(baseline_size=BASELINE))
    assert [(s["rule"], s["sample_index"]) for s in chart["signals"]] == [
        (s.rule, s.sample_index) for s in expected.signals
    ]
    assert client.get(f"/api/lines/{line}/spc", params={"product_type": "bolts"}).status_code == 404


@pytest.fixture(scope="module")
def api_schema(stack):
    return schemathesis.openapi.from_url(f"{stack.url}/openapi.json", headers={"X-API-Key": ADMIN_KEY})


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_every_endpoint_answers_as_its_openapi_spec_says(api_schema):
    """Generated requests (valid and invalid, a few per endpoint, with an admin key) get documented statuses,
    content types and bodies, never a 5xx. (Driven by hand: schemathesis' lazy pytest loader breaks on pytest 9.)"""
    operations = _operations(api_schema)
    assert {op.path for op in operations} >= {
        "/api/inspection/upload",
        "/api/inspection/result/{inspection_id}",
        "/api/inspection/{inspection_id}/heatmap.png",
        "/api/lines/{line}/spc",
        "/api/inspections",
        "/api/keys",
        "/api/keys/{key_id}",
        "/api/audit",
        "/api/session",
        "/health",
    }
    for operation in operations:
        try:
            _conforms(operation)
        except Exception as exc:
            raise AssertionError(f"{operation.method.upper()} {operation.path}: {exc}") from exc


def _conforms(operation) -> None:
    # A schema cannot say "a decodable PNG", "a signal of the path's line", "a window holding enough
    # good parts" or "a registered model version in the right stage": generated images, signal ids,
    # windows and versions are rightly refused, so such a schema-valid request may be a 4xx (each real
    # refusal is tested above, in test_gateway_spc_actions.py and tests/store/test_trials.py).
    refusable = (
        "/api/inspection/upload",
        "/api/spc/{line}/signals/ack",
        "/api/spc/{line}/{product_type}/rebase",
        "/api/models/{product}/{version}/comparison",
        "/api/models/{product}/{version}/promote",
        "/api/models/{product}/rollback",
        "/api/models/{product}/{version}/archive",
        "/api/models/{product}/{version}/canary",
        "/api/models/{product}/canaries/{line}/stop",
        "/api/alerts/failed",  # a made-up page_token
        "/api/alerts/redrive",  # neither or both of alert_ids and all
    )
    excluded = [positive_data_acceptance] if operation.path in refusable else []

    @given(case=operation.as_strategy())
    @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def conforms(case):
        case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, timeout=30, excluded_checks=excluded)

    conforms()


def _png(nbytes: int) -> bytes:
    """An incompressible PNG of at least ``nbytes`` bytes."""
    side = int((nbytes / 3) ** 0.5) + 8
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _multipart(client, fields: dict, image: bytes | None, headers=None, **kwargs):
    files = {"image": ("frame.png", image, "image/png")} if image is not None else None
    return client.post(
        "/api/inspection/upload", headers={"X-API-Key": API_KEY, **(headers or {})}, data=fields, files=files, **kwargs
    )


def _chunked(parts):
    yield from parts  # a generator body: httpx sends it chunked, without a Content-Length


BAD_UPLOADS = {
    # case: (change to a good upload, status, what the message must say)
    "not an image": ({"image": b"GIF89a this is not a frame"}, 422, "unsupported image format: GIF"),
    "text as image": ({"image": b"hello, world"}, 422, "unsupported image format"),
    "truncated png": ({"image": "truncated"}, 422, "truncated PNG"),
    "image over ingestion's limit": ({"image": "large"}, 422, f"over the limit of {INGESTION_IMAGE_LIMIT} bytes"),
    "missing image": ({"image": None}, 422, "missing image: send the image file as the multipart field 'image'"),
    "missing line": ({"line_id": None}, 422, "missing metadata field: line_id"),
    "missing product": ({"product_type": None}, 422, "missing metadata field: product_type"),
    "blank camera": ({"camera_id": "  "}, 422, "missing required metadata: camera_id"),
    "unknown product": ({"product_type": "bolts"}, 422, "unknown product type 'bolts'"),
    "control characters": ({"station_id": "S\x07"}, 422, "station_id 'S\\x07' contains control characters"),
    "process parameters not JSON": ({"process_parameters": "{oven"}, 422, "process_parameters is not valid JSON"),
    "process parameters not numbers": (
        {"process_parameters": '{"oven": "hot"}'},
        422,
        "process_parameters must be a JSON object of numbers",
    ),
    "process parameter not finite": (
        {"process_parameters": '{"oven": NaN}'},
        422,
        "process parameter 'oven' is nan, not a finite number",
    ),
    "bad capture time": ({"capture_time": "yesterday"}, 422, "capture_time"),
    "missing API key": ({"api_key": None}, 401, "missing credentials: send an API key in header X-API-Key"),
    "wrong API key": ({"api_key": "guess"}, 401, "API key not accepted (header X-API-Key"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_malformed_upload_is_a_4xx_naming_the_problem_and_stores_nothing(case, client, images, engine):
    change, status, message = BAD_UPLOADS[case]
    good = images[0][0]
    image = {"truncated": good[: len(good) // 2], "large": _png(INGESTION_IMAGE_LIMIT + 1000)}.get(
        change.get("image"), change.get("image", good)
    )
    fields = {
        "plant_id": "P1",
        "line_id": "L-bad",
        "station_id": "S1",
        "camera_id": "C1",
        "product_type": "pcb",
        "frame_id": f"bad-{uuid.uuid4().hex[:8]}",
    }
    fields.update({k: v for k, v in change.items() if k not in ("image", "api_key")})
    fields = {k: v for k, v in fields.items() if v is not None}
    headers = {"X-API-Key": change["api_key"]} if change.get("api_key") else {}
    before = _frames(engine)
    if "api_key" in change and change["api_key"] is None:
        with httpx.Client(base_url=client.base_url, timeout=30) as anonymous:
            response = anonymous.post(UPLOAD, data=fields, files={"image": ("f.png", image, "image/png")})
    else:
        response = _multipart(client, fields, image, headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"]
    assert _frames(engine) == before  # nothing stored
    assert client.get(f"/api/inspection/result/{fields.get('frame_id')}").status_code == 404


def test_an_oversize_body_is_refused_before_it_is_read(client, images, engine):
    fields = {"plant_id": "P1", "line_id": "L-big", "station_id": "S1", "camera_id": "C1", "product_type": "pcb"}
    big = _png(UPLOAD_LIMIT + 1000)
    before = _frames(engine)
    with_length = _multipart(client, fields, big)
    assert with_length.status_code == 413
    assert with_length.json()["detail"] == (
        f"request body is over the upload limit of {UPLOAD_LIMIT} bytes (DIFFQC_GATEWAY_MAX_UPLOAD_BYTES)"
    )
    # Without a Content-Length the limit is counted as the body streams in.
    request = client.build_request(
        "POST",
        "/api/inspection/upload",
        headers={"X-API-Key": API_KEY},
        data=fields,
        files={"image": ("f.png", big, "image/png")},
    )
    body = request.read()
    streamed = client.post(
        "/api/inspection/upload",
        content=_chunked([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"X-API-Key": API_KEY, "content-type": request.headers["content-type"]},
    )
    assert streamed.status_code == 413 and "upload limit" in streamed.json()["detail"]
    assert _frames(engine) == before
    # The gateway goes on serving: the next good upload is accepted.
    assert upload(client, images[0][0], "L-big").status_code == 202


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/api/inspection/result/no-such-id", 404, "no inspection or frame with id 'no-such-id'"),
        ("/api/inspection/no-such-id/heatmap.png", 404, "no inspection or frame with id 'no-such-id'"),
        ("/api/inspection/no-such-id/image", 404, "no inspection or frame with id 'no-such-id'"),
        ("/api/lines/no-such-line/spc", 404, "line 'no-such-line' has no inspections"),
        ("/api/inspections?limit=0", 422, "limit: Input should be greater than or equal to 1"),
        ("/api/inspections?limit=many", 422, "limit: Input should be a valid integer"),
    ],
)
def test_a_bad_read_is_a_4xx_naming_the_problem(client, path, status, message):
    response = client.get(path)
    assert response.status_code == status and response.json()["detail"].startswith(message)


def test_ingestion_down_is_a_503_naming_it_and_uploads_work_again_after(stack, client, images):
    assert client.get("/health").json() == {"status": "ok", "database": "ok", "ingestion": "ok"}
    stack.pipeline.stop_service("ingestion")
    try:
        response = upload(client, images[0][0], "L-down")
        assert response.status_code == 503
        assert f"ingestion at {stack.pipeline.address('ingestion')} failed: UNAVAILABLE" in response.json()["detail"]
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["ingestion"].startswith("unavailable")
    finally:
        stack.pipeline.start_service("ingestion")
    # A client retrying after the 503 gets through within seconds of ingestion's return.
    wait_until(
        lambda: upload(client, images[0][0], "L-down").status_code == 202,
        timeout_s=10,
        what="an accepted upload after ingestion came back",
    )
