"""The rule for tests of real components: skip with what to install, except under CI=true."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` (what to install) when a system server is missing — never in CI."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true and a required component is missing: {reason}")
        pytest.skip(reason)
