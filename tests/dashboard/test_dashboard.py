"""The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against the
gateway in front of the real pipeline: a person logs in with an API key, then it shows a defect's
heatmap and the line's control chart with its SPC signals, a new upload appears without a reload, and
an operator's acknowledgement of a signal shows to everyone."""

from __future__ import annotations

import io
import os
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from diffqc.core import clock
from diffqc.data.mvtec import list_samples
from diffqc.store.engine import make_engine
from tests.helpers.gateway_stack import (
    API_KEY,
    DRIFT,
    SPC_BASELINE,
    VIEWER_KEY,
    capture_times,
    parts_by_verdict,
    upload,
)
from tests.helpers.verdicts import store_inspections, verdict

pytestmark = pytest.mark.timeout(300)


def test_the_dashboard_shows_heatmaps_the_control_chart_and_new_uploads_live(stack, browser, tiny_artifact, tmp_path):
    samples = list_samples(tiny_artifact[1], "test")
    good = [s.path.read_bytes() for s in samples if s.label == 0]
    defective = [s.path.read_bytes() for s in samples if s.label == 1]
    line = f"L-{uuid.uuid4().hex[:6]}"
    # Two good parts in turn fix the limits (two the tiny detector passes: a part judged defective never
    # enters the baseline); then one of them nine times in a row, on one side of the centre line
    # (Western Electric rule 4 from the eighth), then the defective parts and those it flagged.
    candidates = good + [s.path.read_bytes() for s in list_samples(tiny_artifact[1], "train")][:20]
    times = capture_times(SPC_BASELINE + 11 + len(defective) + len(candidates))
    with stack.client() as client:
        passing, flagged = parts_by_verdict(client, candidates, f"{line}-probe")
        sequence = [passing[i % 2] for i in range(SPC_BASELINE + 1)] + [passing[0]] * 9 + defective + flagged
        results = []
        for image, when in zip(sequence, times, strict=False):
            response = upload(client, image, line, wait=True, capture_time=when)
            assert response.status_code == 200, (response.text, stack.log_tails())
            results.append(response.json()["inspection"])
        defects = [r for r in results if r["verdict"] == "defect"]
        assert defects, f"the tiny detector judged no uploaded part defective: {[r['score'] for r in results]}"
        spc = client.get(f"/api/lines/{line}/spc").json()["charts"][0]
        heatmap_width = Image.open(io.BytesIO(client.get(defects[-1]["heatmap_url"]).content)).size[0]

        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _log_in(page, stack.url)
        page.select_option("[data-testid=line-select]", line)

        # A defect's card, with the frame and its heatmap overlay loaded.
        card = page.locator(f"[data-inspection-id='{defects[-1]['inspection_id']}']")
        expect(card).to_be_visible(timeout=15_000)
        expect(card).to_have_attribute("data-verdict", "defect")
        heatmap = card.locator("[data-testid=heatmap]")
        heatmap.evaluate("img => img.decode()")  # resolves once the PNG is loaded and decoded
        assert heatmap.evaluate("img => img.naturalWidth") == heatmap_width
        assert card.locator("[data-testid=frame-image]").evaluate("img => img.decode().then(() => img.naturalWidth)")

        # The score chart: one point per inspection, the control limits, the SPC signals marked.
        chart = page.locator("[data-testid=chart]")
        expect(chart.locator("circle")).to_have_count(len(results))
        assert spc["limits_fixed"]
        for limit in ("UCL", "CL", "LCL"):
            expect(chart.locator(f"[data-testid={limit}]")).to_have_count(1)
        signalled = {s["sample_index"] for s in spc["signals"] if s["rule"] != "pchart"}
        assert SPC_BASELINE + 9 in signalled, spc["signals"]  # the ninth point of the run
        expect(chart.locator("[data-testid=signal-point]")).to_have_count(len(signalled))
        # The EWMA and CUSUM charts of the monitored points, and the model version the chart's phase is of.
        expect(chart.locator("[data-testid=ewma-chart] polyline")).to_have_count(3)  # the EWMA and its two limits
        expect(chart.locator("[data-testid=cusum-chart] polyline")).to_have_count(4)  # C+, -C-, +-h
        expect(chart.locator("[data-testid=limits]")).to_contain_text(f"model {spc['model_version']} from #0")
        expect(chart.locator("[data-testid=signals] li").first).to_contain_text(spc["signals"][-1]["rule"])

        # A new upload appears without a reload.
        page.evaluate("window.__notReloaded = true")
        response = upload(client, good[0], line, wait=True, capture_time=times[-1])
        assert response.status_code == 200, response.text
        expect(page.locator(f"[data-frame-id='{response.json()['frame_id']}']")).to_be_visible(timeout=15_000)
        expect(chart.locator("circle")).to_have_count(len(results) + 1)
        assert page.evaluate("window.__notReloaded") is True

        # An operator acknowledges the newest signal from the chart; the viewer then sees who did and why.
        expect(page.locator("[data-testid=ack-button]")).to_have_count(0)  # a viewer may not acknowledge
        operator = browser.new_page()  # a context of its own: its own session cookie
        operator.on("pageerror", lambda exc: errors.append(str(exc)))
        operator.goto(stack.url + "/login")
        operator.fill("[data-testid=api-key]", API_KEY)
        operator.click("[data-testid=login]")
        expect(operator.locator("[data-testid=who]")).to_have_text("test-operator (operator)")
        operator.select_option("[data-testid=line-select]", line)
        newest = operator.locator("[data-testid=signals] li").first
        expect(newest.locator("[data-testid=ack-button]")).to_be_visible(timeout=15_000)
        signal_id = newest.get_attribute("data-signal-id")
        signal = operator.locator(f"[data-signal-id='{signal_id}']")
        signal.locator("[data-testid=ack-button]").click()
        signal.locator("[data-testid=ack-cause]").fill("nozzle worn")
        signal.locator("[data-testid=ack-action]").fill("nozzle replaced, first part checked")
        signal.locator("[data-testid=ack-submit]").click()
        acknowledged = "acknowledged by test-operator: nozzle worn"
        expect(signal.locator("[data-testid=ack]")).to_have_text(acknowledged)
        expect(page.locator(f"[data-signal-id='{signal_id}'] [data-testid=ack]")).to_have_text(acknowledged)
        operator.close()
        assert errors == []
        # For a look when it fails; DIFFQC_SCREENSHOTS_DIR=docs/img refreshes the picture in docs/spc.md.
        page.screenshot(path=Path(os.environ.get("DIFFQC_SCREENSHOTS_DIR", tmp_path)) / "dashboard.png", full_page=True)

        # Logging out ends the session: the dashboard sends the browser back to the login page.
        page.click("[data-testid=logout]")
        expect(page).to_have_url(stack.url + "/login")
        page.goto(stack.url + "/")
        expect(page).to_have_url(stack.url + "/login")
        page.close()


def _log_in(page, url: str) -> None:
    """The dashboard sends a visitor without a session to the login page; a wrong key is refused there,
    a viewer's key opens the dashboard with an HttpOnly, SameSite=Strict session cookie."""
    page.goto(url + "/")
    expect(page).to_have_url(url + "/login")
    page.fill("[data-testid=api-key]", "dqc_00000000_" + "x" * 43)
    page.click("[data-testid=login]")
    expect(page.locator("[data-testid=login-error]")).to_contain_text("API key not accepted")
    page.fill("[data-testid=api-key]", VIEWER_KEY)
    page.click("[data-testid=login]")
    expect(page).to_have_url(url + "/")
    expect(page.locator("[data-testid=who]")).to_have_text("test-viewer (viewer)")
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("diffqc_session", True, "Strict")
    assert "diffqc_session" not in page.evaluate("document.cookie")  # scripts never see it


def test_a_line_whose_good_parts_drift_shows_a_banner_with_the_recommendation(stack, browser):
    """The drift state comes from the stored inspections: a shift of the good parts' scores after the
    reference raises the banner, named by product type and with what to do."""
    line = f"D-{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(5)
    scores = np.r_[rng.normal(0.2, 0.02, DRIFT["reference_size"]), rng.normal(0.6, 0.02, 3 * DRIFT["window"])]
    start = clock.now() - timedelta(hours=1)
    parts = [
        verdict(score=float(s), threshold=5.0, line=line, defect=False, captured=start + timedelta(seconds=i))
        for i, s in enumerate(scores)
    ]
    engine = make_engine(stack.pipeline.database_url)
    try:
        store_inspections(engine, parts)
    finally:
        engine.dispose()
    page = browser.new_page()
    _log_in(page, stack.url)
    page.select_option("[data-testid=line-select]", line)
    banner = page.locator("[data-testid=drift-banner]")
    expect(banner).to_have_count(1, timeout=15_000)
    expect(banner).to_have_attribute("data-product-type", "pcb")
    expect(banner).to_contain_text("Drift on pcb (model 1)")
    expect(banner).to_contain_text("Recommended: recalibrate")  # only the score moved: no component scores here
    page.close()
