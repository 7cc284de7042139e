"""The platform core and every service process load without torch, diffusers or timm: a services
image needs none of them, and a service starts in a fraction of the time."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "timm", "matplotlib", "safetensors")
SERVICES = ("ingestion", "preprocessing", "inference", "scoring", "bridge", "gateway")


def loaded_after_import(module: str) -> list[str]:
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [m for m in out.strip().split(",") if m]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_process_loads_no_torch(service):
    assert loaded_after_import(f"services.{service}.__main__") == []


def test_the_core_loads_no_torch():
    modules = [
        "diffqc.core." + m
        for m in (
            "artifact",
            "backoff",
            "clock",
            "components",
            "errors",
            "precision",
            "process",
            "regions",
            "tiles",
            "validation",
        )
    ]
    assert loaded_after_import("diffqc.core") == []
    for module in modules:
        assert loaded_after_import(module) == [], module


def test_a_service_answers_help_without_loading_torch():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "services.scoring", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "DIFFQC_* environment variables" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    assert not {m for m in HEAVY if m in imported}, "importtime shows a heavy package"
    assert "diffqc.runtime.startup" in imported  # the log is the service's own
