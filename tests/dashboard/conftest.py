"""What the dashboard tests share: one headless Chromium, and one gateway in front of the real pipeline
(starting a pipeline costs tens of seconds; each test keeps to lines of its own)."""

from __future__ import annotations

import pytest

from tests.helpers.browser import chromium
from tests.helpers.gateway_stack import DASHBOARD_ENV, gateway_stack


@pytest.fixture(scope="package")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture(scope="package")
def stack(tiny_artifact, tmp_path_factory):
    with gateway_stack(tmp_path_factory.mktemp("dashboard"), tiny_artifact[0], gateway_env=DASHBOARD_ENV) as stack:
        yield stack
