"""Labels at the gateway, against the real uvicorn process, Postgres and blob store: an operator labels a
verdict (audited, relabelling replaces it), viewers read labels and the threshold proposal they support,
a kind that does not fit the verdict or a class that is not a safe token is refused naming why. The
labelled false alarm and miss then land in `diffqc labels export` and move the proposed threshold.
(The pipeline is not needed: the verdicts are stored rows, as scoring writes them.)"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.data.mvtec import list_samples
from diffqc.detector.label_calibration import propose_threshold
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from tests.helpers.gateway_stack import ADMIN_KEY, API_KEY, VIEWER_KEY, gateway_alone
from tests.helpers.inspections import add_inspection, add_product

pytestmark = pytest.mark.timeout(120)

# The widget line's verdicts (threshold 0.5): ten confirmed defects and a false alarm at 0.58 among the
# defect verdicts; ten confirmed good parts and a part that passed at 0.45 but was found bad.
CONFIRMED_DEFECTS = [0.52, 0.56, 0.6, 0.64, 0.68, 0.72, 0.76, 0.8, 0.84, 0.88]
FALSE_ALARM = 0.58
MISSED_DEFECT = 0.45
CONFIRMED_GOOD = [0.04, 0.08, 0.12, 0.16, 0.2, 0.24, 0.28, 0.32, 0.36, 0.4]


@dataclass
class Gateway:
    url: str
    database_url: str
    blob_root: Path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """The gateway process alone over a throwaway database and blob store, with stored verdicts."""
    root = tmp_path_factory.mktemp("gateway-review")
    with gateway_alone(root) as (url, database_url):
        engine = make_engine(database_url)
        upgrade(engine)
        blobs = FileBlobStore(root / "blobs")
        add_product(engine, "pcb")
        add_product(engine, "widget", threshold=0.5)
        add_inspection(engine, blobs, "i-defect", 0.8, index=1)
        add_inspection(engine, blobs, "i-pass", 0.2, index=2)
        add_inspection(engine, blobs, "i-other-line", 0.9, line="L2", index=3)
        scores = [*CONFIRMED_DEFECTS, FALSE_ALARM, MISSED_DEFECT, *CONFIRMED_GOOD]
        for n, score in enumerate(scores):
            add_inspection(engine, blobs, f"w-{n:02d}", score, line="LW", product="widget", index=10 + n)
        engine.dispose()
        yield Gateway(url, database_url, root / "blobs")


def _client(url: str, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": key} if key else {})


@pytest.fixture(scope="module")
def operator(gateway):
    with _client(gateway.url, API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def viewer(gateway):
    with _client(gateway.url, VIEWER_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def admin(gateway):
    with _client(gateway.url, ADMIN_KEY) as client:
        yield client


def _label(client: httpx.Client, inspection: str, kind: str, defect_class: str | None = None, note: str = ""):
    return client.put(
        f"/api/inspection/{inspection}/label", json={"kind": kind, "defect_class": defect_class, "note": note}
    )


def _audited(admin: httpx.Client, subject: str) -> list[dict]:
    rows = admin.get("/api/audit", params={"limit": 1000}).json()
    return [row for row in rows if row["action"] == "inspection.label" and row["subject"] == subject]


def test_an_operator_labels_a_verdict_viewers_read_it_and_the_audit_log_keeps_each_change(operator, viewer, admin):
    assert viewer.get("/api/inspection/i-defect/label").json() is None  # not labelled yet
    done = _label(operator, "i-defect", "confirmed_defect", "scratch", "deep scratch at J3")
    assert done.status_code == 200, done.text
    label = done.json()
    assert {k: label[k] for k in ("inspection_id", "frame_id", "line_id", "product_type", "verdict", "score")} == {
        "inspection_id": "i-defect",
        "frame_id": "frame-i-defect",
        "line_id": "L1",
        "product_type": "pcb",
        "verdict": "defect",
        "score": 0.8,
    }
    assert (label["kind"], label["defect_class"], label["note"], label["defective"], label["labelled_by"]) == (
        "confirmed_defect",
        "scratch",
        "deep scratch at J3",
        True,
        "test-operator",
    )
    assert viewer.get("/api/inspection/frame-i-defect/label").json() == label  # by frame id too

    # An admin looks again: a false alarm. The label is replaced, the audit log has both.
    relabelled = _label(admin, "i-defect", "false_alarm", None, "reflection on the solder")
    assert relabelled.status_code == 200, relabelled.text
    assert (relabelled.json()["kind"], relabelled.json()["defective"], relabelled.json()["labelled_by"]) == (
        "false_alarm",
        False,
        "test-admin",
    )
    assert viewer.get("/api/inspection/i-defect/label").json()["kind"] == "false_alarm"
    newest, first = _audited(admin, "i-defect")
    assert (first["actor"], first["details"]["kind"], first["details"]["replaced"]) == (
        "test-operator",
        "confirmed_defect",
        None,
    )
    assert (newest["actor"], newest["details"]["kind"], newest["details"]["note"]) == (
        "test-admin",
        "false_alarm",
        "reflection on the solder",
    )
    assert newest["details"]["replaced"]["kind"] == "confirmed_defect"
    assert newest["details"]["key_id"].startswith("env:")
    assert admin.get("/api/audit/verify").json()["intact"] is True

    listed = viewer.get("/api/labels", params={"line": "L1"}).json()
    assert [row["inspection_id"] for row in listed] == ["i-defect"]
    assert viewer.get("/api/labels", params={"product_type": "widget", "line": "L1"}).json() == []


def test_a_viewer_may_read_but_not_label_and_nobody_without_credentials_may_do_either(gateway, viewer):
    refused = _label(viewer, "i-pass", "confirmed_good")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "role operator required: API key 'test-viewer' has role viewer"
    with _client(gateway.url, None) as anonymous:
        assert _label(anonymous, "i-pass", "confirmed_good").status_code == 401
        for path in ("/api/inspection/i-pass/label", "/api/labels", "/api/products/pcb/threshold-proposal"):
            assert anonymous.get(path).status_code == 401, path
    assert viewer.get("/api/inspection/i-pass/label").json() is None


@pytest.mark.parametrize(
    "inspection, body, status, problem",
    [
        (
            "i-pass",
            {"kind": "false_alarm"},
            422,
            "kind false_alarm does not fit inspection 'i-pass': it passed (score 0.2 <= threshold 0.5); "
            "label it missed_defect or confirmed_good",
        ),
        (
            "i-other-line",
            {"kind": "missed_defect", "defect_class": "dent"},
            422,
            "it was judged defective (score 0.9 > threshold 0.5); label it confirmed_defect or false_alarm",
        ),
        ("i-pass", {"kind": "missed_defect"}, 422, "a missed_defect label needs a defect_class"),
        (
            "i-pass",
            {"kind": "missed_defect", "defect_class": "../etc"},
            422,
            "defect_class '../etc' must be 1-40 characters of a-z, 0-9 and _",
        ),
        ("i-pass", {"kind": "missed_defect", "defect_class": "good"}, 422, "is the folder of good parts"),
        ("i-pass", {"kind": "confirmed_good", "defect_class": "dust"}, 422, "defect_class is for confirmed_defect"),
        ("i-pass", {"kind": "fine"}, 422, "kind: Input should be 'confirmed_defect', 'false_alarm', "),
        ("i-pass", {"kind": "confirmed_good", "note": "n" * 1001}, 422, "note: String should have at most 1000"),
        ("i-pass", {"kind": "confirmed_good", "note": "a\x1b[31m"}, 422, "note contains control characters"),
        ("nope", {"kind": "confirmed_good"}, 404, "no inspection with inspection id or frame id 'nope'"),
    ],
)
def test_a_label_that_does_not_fit_is_refused_naming_why_and_nothing_is_audited(
    operator, viewer, admin, inspection, body, status, problem
):
    before = len(admin.get("/api/audit", params={"limit": 1000}).json())
    refused = operator.put(f"/api/inspection/{inspection}/label", json=body)
    assert refused.status_code == status, refused.text
    assert problem in refused.json()["detail"]
    assert len(admin.get("/api/audit", params={"limit": 1000}).json()) == before
    if status == 422:
        assert viewer.get(f"/api/inspection/{inspection}/label").json() is None


def test_bad_queries_are_refused_naming_them(viewer):
    unknown = viewer.get("/api/inspection/nope/label")
    assert (unknown.status_code, unknown.json()["detail"]) == (
        404,
        "no inspection with inspection id or frame id 'nope'",
    )
    too_many = viewer.get("/api/labels", params={"inspection_id": [f"i-{n}" for n in range(101)]})
    assert too_many.status_code == 422 and "inspection_id" in too_many.json()["detail"]
    no_product = viewer.get("/api/products/lawnmower/threshold-proposal")
    assert (no_product.status_code, no_product.json()["detail"]) == (404, "no product type 'lawnmower'")
    assert viewer.get("/api/products/pcb/threshold-proposal", params={"target_recall": 1.5}).status_code == 422


def test_too_few_labels_get_an_explicit_answer_instead_of_a_threshold(viewer):
    proposal = viewer.get("/api/products/pcb/threshold-proposal")
    assert proposal.status_code == 200, proposal.text
    body = proposal.json()
    assert (body["enough_labels"], body["f1_max"], body["at_target_recall"]) == (False, None, None)
    assert body["reason"].startswith("not enough labels: ")
    assert body["reason"].endswith("labelled parts, need at least 10 of each")
    assert (body["model_version"], body["current_threshold"]) == ("1", 0.5)


def test_a_labelled_false_alarm_and_miss_land_in_the_export_and_move_the_proposed_threshold(
    gateway, operator, viewer, tmp_path
):
    ids = {score: f"w-{n:02d}" for n, score in enumerate([*CONFIRMED_DEFECTS, FALSE_ALARM, MISSED_DEFECT])}
    for score in CONFIRMED_DEFECTS:
        assert _label(operator, ids[score], "confirmed_defect", "scratch").status_code == 200
    assert _label(operator, ids[FALSE_ALARM], "false_alarm", None, "flux residue").status_code == 200
    assert _label(operator, ids[MISSED_DEFECT], "missed_defect", "bent_pin", "found at final test").status_code == 200
    for n in range(len(CONFIRMED_GOOD)):
        assert _label(operator, f"w-{12 + n:02d}", "confirmed_good").status_code == 200

    # The proposal: the miss at 0.45 pulls the threshold below it; the false alarm is the price.
    proposal = viewer.get("/api/products/widget/threshold-proposal").json()
    assert proposal["labels"] == {"confirmed_defect": 10, "false_alarm": 1, "missed_defect": 1, "confirmed_good": 10}
    assert (proposal["enough_labels"], proposal["defective"], proposal["good"]) == (True, 11, 11)
    assert (proposal["model_version"], proposal["current_threshold"]) == ("1", 0.5)
    current = proposal["current"]
    assert (current["true_positives"], current["false_negatives"], current["false_positives"]) == (10, 1, 1)
    for point in (proposal["f1_max"], proposal["at_target_recall"]):
        assert point["threshold"] == pytest.approx(0.425)  # between the miss (0.45) and the best good part (0.40)
        assert (point["recall"], point["fpr"]) == pytest.approx((1.0, 1 / 11))
    expected = propose_threshold(
        [*CONFIRMED_DEFECTS, MISSED_DEFECT, FALSE_ALARM, *CONFIRMED_GOOD], [True] * 11 + [False] * 11, 0.5
    )
    assert proposal["f1_max"]["f1"] == pytest.approx(expected.f1_max.f1)

    # The export: the false alarm is a good part, the miss a bent_pin; list_samples reads the layout.
    out = tmp_path / "widget-set"
    env = {"DIFFQC_DATABASE_URL": gateway.database_url, "DIFFQC_BLOB_ROOT": str(gateway.blob_root)}
    result = CliRunner().invoke(app, ["labels", "export", "--out", str(out), "--product", "widget"], env=env)
    assert result.exit_code == 0, result.output
    assert "exported 22 labelled frames of widget" in result.output
    assert Counter(s.defect_type for s in list_samples(out, "test")) == {"good": 11, "scratch": 10, "bent_pin": 1}
    with (out / "labels.csv").open() as handle:
        rows = {row["inspection_id"]: row for row in csv.DictReader(handle)}
    alarm, miss = rows[ids[FALSE_ALARM]], rows[ids[MISSED_DEFECT]]
    assert (alarm["kind"], alarm["verdict"], alarm["file"].split("/")[:2]) == (
        "false_alarm",
        "defect",
        ["test", "good"],
    )
    assert (miss["kind"], miss["verdict"], miss["file"].split("/")[:2]) == (
        "missed_defect",
        "pass",
        ["test", "bent_pin"],
    )
    assert (float(miss["score"]), float(miss["threshold"]), miss["model_version"], miss["labelled_by"]) == (
        0.45,
        0.5,
        "1",
        "test-operator",
    )
    assert (out / miss["file"]).read_bytes() == FileBlobStore(gateway.blob_root).get_digest(
        _frame_digest(gateway, ids[MISSED_DEFECT])
    )
    assert not (out / "ground_truth").exists() and not (out / "train").exists()


def _frame_digest(gateway: Gateway, inspection_id: str) -> str:
    engine = make_engine(gateway.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                text("SELECT image_sha256 FROM frames WHERE id = :id"), {"id": f"frame-{inspection_id}"}
            ).scalar_one()
    finally:
        engine.dispose()


def test_the_review_page_is_for_logged_in_people(gateway, viewer):
    with _client(gateway.url, None) as anonymous:
        page = anonymous.get("/review")
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        assert anonymous.get("/static/review.js").status_code == 200
    page = viewer.get("/review")
    assert page.status_code == 200 and '<script src="/static/review.js">' in page.text
