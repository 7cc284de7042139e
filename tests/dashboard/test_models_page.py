"""The models page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against the
gateway process over Postgres (the registry, the paired trial scores and the training jobs are all the page
reads; Triton polls its repository here, so lifecycle changes touch the registry only): an admin opens it
from the dashboard, sees each product's versions with their stages, a shadow version's trial against
production with its recommendation, promotes a candidate, is told why a refused action was refused, and
starts and cancels a retraining; a viewer sees the same page without any of those buttons.
``DIFFQC_SCREENSHOTS_DIR=docs/img`` refreshes the picture in docs/models.md."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from diffqc.store import db, labels, training_jobs, trials
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import ModelCanary, ModelVersion, ProductType
from tests.helpers.browser import log_in
from tests.helpers.gateway_stack import ADMIN_KEY, VIEWER_KEY, gateway_alone
from tests.helpers.inspections import add_inspection

pytestmark = pytest.mark.timeout(120)

PRODUCTION_THRESHOLD, SHADOW_THRESHOLD = 0.5, 0.45
# (product, version, stage, threshold, parent, replaced, trained by)
VERSIONS = [
    ("pcb", "1", "archived", 0.55, None, None, "onboard"),
    ("pcb", "2", "production", PRODUCTION_THRESHOLD, "1", "1", "training job"),
    ("pcb", "3", "shadow", SHADOW_THRESHOLD, "2", None, "training job"),
    ("pcb", "4", "candidate", 0.47, "2", None, "training job"),
    ("gear", "1", "production", PRODUCTION_THRESHOLD, None, None, "onboard"),
    ("gear", "2", "shadow", SHADOW_THRESHOLD, "1", None, "training job"),
]
PCB_FRAMES, GEAR_FRAMES = 150, 40  # enough paired frames for a recommendation on pcb; too few on gear


def _trial_rows(product: str, frames: int, defective: int, rng: np.random.Generator) -> list[dict]:
    """Paired scores on ``frames`` frames, the first ``defective`` of them defective parts both versions flag;
    on good parts the shadow version scores lower against its threshold (fewer false alarms)."""
    good = rng.gamma(8.0, 0.09, frames - defective)  # production's score / threshold
    ratios = np.concatenate([rng.uniform(1.3, 2.6, defective), good])
    shadow = np.concatenate([ratios[:defective] * 1.1, good * 0.85])
    return [
        {
            "frame_id": f"frame-{product}-{i}",  # the frame id add_inspection gives inspection f"{product}-{i}"
            "candidate_version": "2" if product == "gear" else "3",
            "product_type": product,
            "line_id": "L1",
            "production_version": "1" if product == "gear" else "2",
            "production_score": float(p * PRODUCTION_THRESHOLD),
            "production_defect": bool(p > 1),
            "candidate_score": float(s * SHADOW_THRESHOLD),
            "candidate_defect": bool(s > 1),
            "canary": False,
        }
        for i, (p, s) in enumerate(zip(ratios, shadow, strict=True))
    ]


def _label(engine, row: dict, kind: str, defect_class: str | None) -> None:
    """The frame's inspection by production, labelled by an inspector."""
    inspection_id = row["frame_id"].removeprefix("frame-")
    add_inspection(
        engine,
        None,
        inspection_id,
        row["production_score"],
        threshold=PRODUCTION_THRESHOLD,
        product=row["product_type"],
        version=row["production_version"],
    )
    with db.session(engine, write=True) as session:
        labels.set_label(session, inspection_id, kind, defect_class, "", "test-operator")


def _seed(engine) -> None:
    """Both products' registries, the paired scores of their shadow versions (some pcb frames labelled), a
    canary of each shadow version, and a gear retraining a trainer is running."""
    rng = np.random.default_rng(7)
    with Session(engine) as session, session.begin():
        session.add_all([ProductType(name="pcb"), ProductType(name="gear")])
        session.flush()
        for product, version, stage, threshold, parent, replaced, trained_by in VERSIONS:
            session.add(
                ModelVersion(
                    product_type=product,
                    version=version,
                    artifact_uri="file:///unused",
                    threshold=threshold,
                    stage=stage,
                    active=stage == "production",
                    parent_version=parent,
                    replaced_version=replaced,
                    trained_by=trained_by,
                )
            )
        for product, version, line in [("pcb", "3", "L1"), ("gear", "2", "L2")]:
            session.add(
                ModelCanary(
                    product_type=product,
                    version=version,
                    line_id=line,
                    share=0.1,
                    max_excess_alarm_rate=0.02,
                    min_frames=200,
                    started_by="test-admin",
                )
            )
    pcb = _trial_rows("pcb", PCB_FRAMES, 12, rng)
    with db.session(engine, write=True) as session:
        trials.record(session, pcb)
        trials.record(session, _trial_rows("gear", GEAR_FRAMES, 3, rng))
    for row in pcb[:4]:
        _label(engine, row, "confirmed_defect", "scratch")
    alarms = [row for row in pcb[12:] if row["production_defect"]][:3]  # production's false alarms
    for row in alarms + [row for row in pcb[12:] if not row["production_defect"]][:3]:
        _label(engine, row, "false_alarm" if row["production_defect"] else "confirmed_good", None)
    with db.session(engine, write=True) as session:
        job = training_jobs.request_job(session, "gear", {"steps": 50}, "test-admin")
        training_jobs.claim_next(session, "trainer-1")
        training_jobs.beat(session, job.id, "trainer-1", progress=0.4, message="fine-tuning: step 20 of 50")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    env = {"DIFFQC_TRITON_MODEL_CONTROL": "poll"}
    with gateway_alone(tmp_path_factory.mktemp("models-page"), env) as (url, database_url):
        engine = make_engine(database_url)
        upgrade(engine)
        _seed(engine)
        yield url, engine
        engine.dispose()


ADMIN_BUTTONS = ["promote", "archive", "rollback", "canary-form", "stop-canary", "retrain", "cancel-job"]


def test_an_admin_compares_promotes_and_retrains_on_the_models_page(gateway, browser, tmp_path):
    url, engine = gateway
    with db.session(engine) as session:
        pcb_trial, gear_trial = trials.compare(session, "pcb", "3"), trials.compare(session, "gear", "2")
    assert (pcb_trial.recommendation, gear_trial.recommendation) == ("promote", "collect"), pcb_trial.reason

    errors: list[str] = []
    page = log_in(browser, url, ADMIN_KEY)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    dialogs: list[str] = []

    def accept(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.click("[data-testid=models-link]")
    expect(page).to_have_url(url + "/models")
    expect(page.locator("[data-testid=who]")).to_have_text("test-admin (admin)")

    # Each product's versions with their stages and lineage.
    pcb = page.locator("[data-testid=product][data-product-type=pcb]")
    expect(pcb.locator("[data-testid=stage]")).to_have_text(["archived", "production", "shadow", "candidate"])
    expect(pcb.locator("[data-testid=version][data-version='2'] td")).to_contain_text(
        ["2", "production", "0.5000", "1", "1", "training job"]
    )
    expect(pcb.locator("[data-version='2'] [data-testid=rollback]")).to_have_text("Roll back to 1")
    canary = pcb.locator("[data-testid=canary][data-line=L1]")
    expect(canary).to_contain_text("line L1: version 3 judges 10.0 % of its frames")
    expect(canary.locator("[data-testid=stop-canary]")).to_be_visible()

    # The shadow version's trial: the recommendation and its reason, the figures, both distributions.
    trial = pcb.locator("[data-testid=comparison][data-version='3']")
    expect(trial.locator("[data-testid=recommendation]")).to_have_attribute("data-recommendation", "promote")
    expect(trial.locator("[data-testid=recommendation]")).to_have_text(f"Promote: {pcb_trial.reason}")
    expect(trial.locator("[data-testid=trial-frames]")).to_contain_text(
        f"{PCB_FRAMES} paired frames (0 of them judged by the candidate in a canary); "
        f"the verdicts agree on {pcb_trial.agreement * 100:.1f} %"
    )
    expect(trial.locator("[data-testid=trial-alarms] td")).to_have_text(
        ["alarm rate", f"{pcb_trial.alarms.candidate * 100:.1f} %", f"{pcb_trial.alarms.production * 100:.1f} %"]
    )
    expect(trial.locator("[data-testid=trial-recall] td")).to_have_text(
        ["recall (4 labelled defective)", "100.0 %", "100.0 %"]
    )
    expect(trial.locator("[data-testid=bar-candidate]")).to_have_count(
        sum(n > 0 for n in pcb_trial.candidate_histogram)
    )
    expect(trial.locator("[data-testid=bar-production]")).to_have_count(
        sum(n > 0 for n in pcb_trial.production_histogram)
    )
    expect(trial.locator("[data-testid=threshold-line]")).to_have_count(1)
    gear = page.locator("[data-testid=product][data-product-type=gear]")
    expect(gear.locator("[data-testid=recommendation]")).to_have_text(f"Collect more frames: {gear_trial.reason}")
    running = gear.locator("[data-testid=job]")
    expect(running).to_have_attribute("data-status", "running")
    expect(running.locator("[data-testid=job-message]")).to_have_text("fine-tuning: step 20 of 50")
    assert running.locator("[data-testid=job-progress]").evaluate("bar => bar.value") == pytest.approx(0.4)
    assert errors == []
    shots = Path(os.environ.get("DIFFQC_SCREENSHOTS_DIR", tmp_path))
    page.screenshot(path=shots / "models_page.png", full_page=True)

    # Promoting the candidate, after a confirmation: its badge says shadow, and the registry agrees.
    pcb.locator("[data-version='4'] [data-testid=promote]").click()
    expect(pcb.locator("[data-version='4'] [data-testid=stage]")).to_have_text("shadow")
    expect(page.locator("[data-testid=message]")).to_have_text("version 4 of pcb is now shadow")
    assert dialogs[-1] == "Promote pcb version 4 from candidate to shadow?"
    with httpx.Client(base_url=url, headers={"X-API-Key": VIEWER_KEY}) as client:
        stages = {
            v["version"]: v["stage"] for v in client.get("/api/models", params={"product": "pcb"}).json()["versions"]
        }
    assert stages == {"1": "archived", "2": "production", "3": "shadow", "4": "shadow"}

    # A refused action says why: line L1 already runs version 3's canary.
    form = pcb.locator("[data-version='4'] [data-testid=canary-form]")
    form.locator("[data-testid=canary-line]").fill("L1")
    form.locator("[data-testid=start-canary]").click()
    expect(page.locator("[data-testid=message]")).to_have_text(
        "refused (409): line 'L1' already runs a canary of 'pcb': stop it first"
    )

    # Stopping that canary lets version 4 run one on the line; a rollback restores version 1.
    canary.locator("[data-testid=stop-canary]").click()
    expect(pcb.locator("[data-testid=canary]")).to_have_count(0)
    form.locator("[data-testid=canary-line]").fill("L1")
    form.locator("[data-testid=canary-share]").fill("0.2")
    form.locator("[data-testid=start-canary]").click()
    expect(pcb.locator("[data-testid=canary]")).to_contain_text("line L1: version 4 judges 20.0 % of its frames")
    pcb.locator("[data-version='2'] [data-testid=rollback]").click()
    expect(pcb.locator("[data-testid=stage]")).to_have_text(["production", "archived", "shadow", "shadow"])
    expect(page.locator("[data-testid=message]")).to_have_text("version 1 of pcb is production again")
    pcb.locator("[data-version='3'] [data-testid=archive]").click()
    expect(pcb.locator("[data-version='3'] [data-testid=stage]")).to_have_text("archived")
    expect(pcb.locator("[data-testid=comparison]")).to_have_attribute("data-version", "4")  # shadow versions only

    # Retraining: queued, then cancelled before any trainer took it.
    pcb.locator("[data-testid=retrain]").click()
    job = pcb.locator("[data-testid=job]").first
    expect(job.locator("[data-testid=job-status]")).to_have_text("queued")
    job.locator("[data-testid=cancel-job]").click()
    expect(job.locator("[data-testid=job-status]")).to_have_text("cancelled")
    expect(job.locator("[data-testid=job-message]")).to_have_text("cancelled by test-admin before it started")
    expect(job.locator("[data-testid=cancel-job]")).to_have_count(0)
    assert errors == []
    page.close()


def test_a_viewer_sees_the_models_page_without_its_buttons(gateway, browser):
    url, _engine = gateway
    page = log_in(browser, url, VIEWER_KEY)
    page.goto(url + "/models")
    expect(page.locator("[data-testid=who]")).to_have_text("test-viewer (viewer)")
    gear = page.locator("[data-testid=product][data-product-type=gear]")
    expect(gear.locator("[data-testid=stage]")).to_have_text(["production", "shadow"])
    expect(gear.locator("[data-testid=comparison][data-version='2'] [data-testid=recommendation]")).to_be_visible()
    expect(gear.locator("[data-testid=job]")).to_have_attribute("data-status", "running")
    expect(gear.locator("[data-testid=canary][data-line=L2]")).to_be_visible()
    for testid in ADMIN_BUTTONS:
        expect(page.locator(f"[data-testid={testid}]")).to_have_count(0)
    page.close()
