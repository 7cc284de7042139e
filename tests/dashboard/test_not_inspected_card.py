"""A part that was not inspected, on the dashboard and the review page (headless Chromium against the gateway
in front of the real pipeline): its card says so with the reason instead of a score, and offers no label."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.scoring.not_inspected import NOT_INSPECTED_VERSION, FailClosed
from diffqc.scoring.scorer import inspection_id
from diffqc.settings import KafkaSettings
from diffqc.store.engine import make_engine
from diffqc.store.inspections import ensure_frame
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from tests.helpers.gateway_stack import API_KEY
from tests.helpers.models import TINY_PRODUCT

pytestmark = pytest.mark.timeout(300)

REASON = "dead-lettered at preprocessing: rejected: the image is truncated"


def _not_inspected(database_url: str, line: str) -> str:
    """A frame ingested on ``line``, dead-lettered on its way and recorded by the fail-closed stage; its inspection
    id."""
    frame = Frame(
        frame_id=f"f-{uuid.uuid4().hex[:8]}",
        plant_id="P1",
        line_id=line,
        station_id="S1",
        camera_id="C1",
        product_type=TINY_PRODUCT,
        capture_time=clock.to_timestamp(clock.now()),
    )
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            ensure_frame(session, frame)
        FailClosed(engine, KafkaSettings(), lambda verdict: None).record(InferenceResult(frame=frame), REASON)
    finally:
        engine.dispose()
    return inspection_id(frame.frame_id, NOT_INSPECTED_VERSION)


def test_a_part_that_was_not_inspected_shows_why_and_offers_no_label(stack, browser):
    line = f"N-{uuid.uuid4().hex[:6]}"
    inspection = _not_inspected(stack.pipeline.database_url, line)
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(stack.url + "/login")
    page.fill("[data-testid=api-key]", API_KEY)  # an operator: the review page would offer labels
    page.click("[data-testid=login]")
    expect(page).to_have_url(stack.url + "/")

    page.select_option("[data-testid=line-select]", line)
    card = page.locator(f"[data-testid=inspection][data-inspection-id='{inspection}']")
    expect(card).to_have_attribute("data-verdict", "not_inspected")
    expect(card.locator(".badge")).to_have_text("not inspected")
    expect(card.locator("[data-testid=not-inspected-reason]")).to_contain_text(f"check by hand: {REASON}")

    page.goto(stack.url + "/review")
    page.select_option("[data-testid=line-select]", line)
    item = page.locator(f"[data-testid=review-item][data-inspection-id='{inspection}']")
    expect(item.locator("[data-testid=not-inspected-reason]")).to_contain_text(REASON)
    expect(item.locator("[data-testid=score]")).to_have_count(0)
    expect(item.locator("[data-testid=label-form]")).to_have_count(0)
    page.close()
