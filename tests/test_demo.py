"""``make run``: the demo runs the whole pipeline with the shipped models and cleans up after itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest


@pytest.mark.timeout(600)
def test_the_demo_inspects_every_frame_of_a_four_product_line_with_the_shipped_models(local_stack, tmp_path):
    before = {p.pid for p in psutil.process_iter()}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffqc.cli",
            "demo",
            "--frames",
            "12",
            "--defect-rate",
            "0.25",
            "--out",
            str(tmp_path),
            "--summary",
            str(tmp_path / "summary.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "product types brushed_metal, moulded_plastic, pcb, woven_fabric" in out
    assert "ingested 12/12 frames on 4 lines" in out
    assert "stopped every server and service" in out
    assert (tmp_path / "scores.png").stat().st_size > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["frames_in"], summary["frames_scored"], summary["defective_parts"]) == (12, 12, 3)
    caught, alarms = round(summary["recall"] * 3), round(summary["fpr"] * 9)
    assert f"defective parts caught: {caught}/3; false alarms: {alarms}/9" in out
    products = summary["products"]
    assert {p: f["frames_scored"] for p, f in products.items()} == dict.fromkeys(products, 3) and len(products) == 4
    # The products the shipped models separate well (docs/detector.md) catch their defect; woven fabric's
    # model is the weak one (recall 57% at FPR 3%), so its defect may pass. False alarms are a rate (3% by
    # design), measured over many parts by `make run`, not asserted on nine.
    for strong in ("pcb", "brushed_metal"):
        assert products[strong]["recall"] == 1.0, strong
    assert 0 < summary["latency_ms_p50"] <= summary["latency_ms_p95"]
    # The bridge delivered one alert per defect verdict to the MES, each once.
    found = summary["defects_found"]
    assert summary["alerts_delivered"] == summary["alert_deliveries"] == found >= 2
    assert f"alerts delivered to the MES: {found} in {found} deliveries" in out
    lines = ("pcb", "brushed-metal", "moulded-plastic", "woven-fabric")
    assert all((tmp_path / f"spc-line-{p}.png").stat().st_size > 0 for p in lines)
    # The report shows every defective part's heatmap and a few good ones of each product.
    report = (tmp_path / "report.html").read_text()
    shown = [p.name for p in (tmp_path / "heatmaps").iterdir()]
    assert len(shown) >= 3 + 4 and all(f'src="heatmaps/{name}"' in report for name in shown)
    leftovers = [
        p
        for p in psutil.process_iter(["pid", "cmdline"])
        if p.pid not in before
        and any(
            s in " ".join(p.info["cmdline"] or []) for s in ("tansu", "victoria-metrics", "tritonserver", "services.")
        )
    ]
    assert leftovers == []
