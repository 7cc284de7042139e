"""The review page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against the
gateway in front of the real pipeline: an operator opens it from the dashboard, sees each verdict's frame
with its regions boxed, its heatmap, on a click the model's reconstruction of a good part, and its score
against the threshold, labels verdicts (a confirmed defect with its class and note, a false alarm, a missed
defect) and the labels show to a viewer, who has no label buttons. ``DIFFQC_SCREENSHOTS_DIR=docs/img``
refreshes the pictures in docs/review.md."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from diffqc.data.mvtec import list_samples
from tests.helpers.browser import log_in
from tests.helpers.gateway_stack import API_KEY, VIEWER_KEY, capture_times, upload

pytestmark = pytest.mark.timeout(300)


def test_an_operator_labels_verdicts_on_the_review_page(stack, browser, tiny_artifact, tmp_path):
    test_set = list_samples(tiny_artifact[1], "test")
    images = [s.path.read_bytes() for s in test_set if s.label == 1] + [
        s.path.read_bytes() for s in [*test_set, *list_samples(tiny_artifact[1], "train")[:4]] if s.label == 0
    ]
    line = f"R-{uuid.uuid4().hex[:6]}"
    with stack.client() as client:
        results = []
        for image, when in zip(images, capture_times(len(images)), strict=True):
            response = upload(client, image, line, wait=True, capture_time=when)
            assert response.status_code == 200, (response.text, stack.log_tails())
            results.append(response.json()["inspection"])
    defects = [r for r in results if r["verdict"] == "defect"]
    passes = [r for r in results if r["verdict"] == "pass"]
    assert defects and passes, f"the tiny detector's verdicts: {[(r['verdict'], r['score']) for r in results]}"

    errors: list[str] = []
    page = log_in(browser, stack.url, API_KEY)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.click("[data-testid=review-link]")
    expect(page).to_have_url(stack.url + "/review")
    expect(page.locator("[data-testid=who]")).to_have_text("test-operator (operator)")
    page.select_option("[data-testid=line-select]", line)

    # A defect verdict: the frame with its regions boxed, the heatmap, the score against the threshold.
    defect = defects[0]
    card = page.locator(f"[data-testid=review-item][data-inspection-id='{defect['inspection_id']}']")
    expect(card).to_be_visible(timeout=15_000)
    assert card.locator("[data-testid=frame-image]").evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert card.locator("[data-testid=heatmap]").evaluate("img => img.decode().then(() => img.naturalWidth)")
    expect(card.locator("[data-testid=region-box]")).to_have_count(len(defect["regions"]))
    expect(card.locator("[data-testid=score]")).to_contain_text(
        f"score {defect['score']:.3f} > threshold {defect['threshold']:.3f}"
    )
    expect(card.locator("[data-testid=label]")).to_have_text("not labelled")
    expect(card.locator("[data-testid=label-missed_defect]")).to_have_count(0)  # not an answer to a defect verdict

    # On a click, the model's reconstruction of the part (computed by Triton), as large as the heatmap.
    card.locator("[data-testid=show-reconstruction]").click()
    reconstruction = card.locator("[data-testid=reconstruction-image]")
    expect(reconstruction).to_be_visible(timeout=30_000)
    size = "img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])"
    assert reconstruction.evaluate(size) == card.locator("[data-testid=heatmap]").evaluate(size)
    shots = Path(os.environ.get("DIFFQC_SCREENSHOTS_DIR", tmp_path))
    card.screenshot(path=shots / "review_reconstruction.png")

    # Labelled a confirmed scratch, with a note.
    card.locator("[data-testid=defect-class]").fill("scratch")
    card.locator("[data-testid=label-note-input]").fill("scratch across the pad, seen under the microscope")
    card.locator("[data-testid=label-confirmed_defect]").click()
    card = page.locator(f"[data-inspection-id='{defect['inspection_id']}']")
    expect(card.locator("[data-testid=label]")).to_contain_text("Confirmed defect · scratch — by test-operator")
    expect(card.locator("[data-testid=label-note]")).to_have_text("scratch across the pad, seen under the microscope")

    # A class that is not a token is refused in the page, and nothing is stored.
    missed = page.locator(f"[data-inspection-id='{passes[0]['inspection_id']}']")
    missed.locator("[data-testid=defect-class]").fill("Bent Pin")
    missed.locator("[data-testid=label-missed_defect]").click()
    expect(missed.locator("[data-testid=label]")).to_have_text("not labelled")
    missed.locator("[data-testid=defect-class]").fill("bent_pin")
    missed.locator("[data-testid=label-note-input]").fill("passed, found at final test")
    missed.locator("[data-testid=label-missed_defect]").click()
    expect(missed.locator("[data-testid=label]")).to_contain_text("Missed defect · bent_pin — by test-operator")
    if len(defects) > 1:
        alarm = page.locator(f"[data-inspection-id='{defects[1]['inspection_id']}']")
        alarm.locator("[data-testid=label-note-input]").fill("flux residue")
        alarm.locator("[data-testid=label-false_alarm]").click()
        expect(alarm.locator("[data-testid=label]")).to_contain_text("False alarm — by test-operator")
    for good in passes[1:3]:
        page.locator(f"[data-inspection-id='{good['inspection_id']}'] [data-testid=label-confirmed_good]").click()
        expect(page.locator(f"[data-inspection-id='{good['inspection_id']}'] [data-testid=label]")).to_contain_text(
            "Confirmed good"
        )

    # The labels are stored as shown, and the proposal panel answers that there are too few of them.
    with stack.client() as client:
        stored = client.get(f"/api/inspection/{defect['inspection_id']}/label").json()
        assert (stored["kind"], stored["defect_class"], stored["labelled_by"]) == (
            "confirmed_defect",
            "scratch",
            "test-operator",
        )
        assert client.get(f"/api/inspection/{passes[0]['inspection_id']}/label").json()["kind"] == "missed_defect"
    expect(page.locator("[data-testid=proposal-reason]")).to_contain_text("not enough labels: ")
    page.select_option("[data-testid=show-select]", "unlabelled")
    expect(page.locator(f"[data-inspection-id='{defect['inspection_id']}']")).to_have_count(0)
    page.select_option("[data-testid=show-select]", "all")
    assert errors == []
    page.screenshot(path=shots / "review_page.png")

    # A viewer sees the labels and no label buttons.
    viewer = log_in(browser, stack.url, VIEWER_KEY)
    viewer.goto(stack.url + "/review")
    viewer.select_option("[data-testid=line-select]", line)
    seen = viewer.locator(f"[data-inspection-id='{defect['inspection_id']}'] [data-testid=label]")
    expect(seen).to_contain_text("Confirmed defect · scratch — by test-operator")
    expect(viewer.locator("[data-testid=label-form]")).to_have_count(0)
    viewer.close()
    page.close()
