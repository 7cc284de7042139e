"""``diffqc`` on the base install (the services image, no torch): every ``--help`` works, a command
that needs the detector says which extra to install (one line, exit 1), and staging a model for
Triton needs no torch either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each invocation through typer's test runner, in one interpreter where `import torch` fails.
WITHOUT_TORCH = """
import json, sys
for name in ("torch", "diffusers", "safetensors", "sklearn", "onnx", "onnxruntime"):
    sys.modules[name] = None  # what the base install lacks: importing it raises ImportError
from typer.testing import CliRunner
from diffqc.cli import app
results = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args, prog_name="diffqc")
    results.append({"code": r.exit_code, "output": r.output, "exception": type(r.exception).__name__})
print(json.dumps(results))
"""
HELP = [
    [],
    ["train"],
    ["distill"],
    ["onboard"],
    ["evaluate"],
    ["detect"],
    ["export"],
    ["demo"],
    ["data", "synth"],
    ["data", "elpv"],
    ["infra", "up"],
    ["triton", "serve"],
    ["bench", "triton"],
    ["bench", "pipeline"],
    ["dlq", "list"],
    ["dlq", "replay"],
]


def _without_torch(*invocations: list[str]) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, json.dumps(invocations)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_without_torch_every_help_works_and_a_detector_command_names_the_extra(tmp_path):
    model = ROOT / "diffqc" / "detector" / "default_models" / "brushed_metal"
    repo = tmp_path / "repo"
    *helps, train, detect, onnx, staged = _without_torch(
        *([*args, "--help"] for args in HELP),
        ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "model")],
        ["detect", "--model", str(model), "--out", str(tmp_path / "out"), str(tmp_path / "a.png")],
        ["export", "--model", str(model), "--repo", str(repo), "--format", "onnx"],
        ["export", "--model", str(model), "--repo", str(repo)],
    )
    for args, result in zip(HELP, helps, strict=True):
        assert (result["code"], result["exception"]) == (0, "NoneType"), (args, result["output"])
        assert "Usage: diffqc" in result["output"]
    assert "--data" in helps[HELP.index(["train"])]["output"]

    for result, command in ((train, "train"), (detect, "detect")):
        assert (result["code"], result["exception"]) == (1, "SystemExit"), result["output"]
        assert result["output"].strip() == f"diffqc {command} needs the detector extra: pip install 'diffqc[detector]'"
    assert (onnx["code"], onnx["exception"]) == (1, "SystemExit"), onnx["output"]
    assert "diffqc export --format onnx needs the onnx extra: pip install 'diffqc[onnx]'" in onnx["output"]

    assert staged["code"] == 0, staged["output"]
    # Version 1 is the python export's: the refused onnx export staged nothing before it.
    assert [p.name for p in (repo / "diffqc_detector").iterdir() if p.is_dir()] == ["1"]
    assert (repo / "diffqc_detector" / "1" / "artifacts" / "brushed_metal" / "metadata.json").is_file()
