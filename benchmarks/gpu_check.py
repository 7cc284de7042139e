"""The GPU check, once benchmarks/gpu_check.sh has set up its environment: the gpu tests, then
``diffqc bench triton --device cuda`` at 256x256 and at full 4096x3000 frames, in one table.

    make gpu-check                                     # on a machine with one NVIDIA GPU (docs/gpu.md)
    .gpu-venv/bin/python -m benchmarks.gpu_check       # again, once the environment exists

The tests (tests/gpu/test_gpu.py) check float32 on CUDA within 1e-4 of the CPU, fp16 verdicts equal to
the CPU's on the test split, and Triton's KIND_GPU instances; each records what it measured, which the
table shows. Exit status 1 when a test failed or a step did not finish within its time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from diffqc.core.precision import Precision

ROOT = Path(__file__).resolve().parents[1]
# (size, concurrencies, images per measurement)
BENCHES = (("256x256", (1, 8, 32), 64), ("4096x3000", (1, 4), 8))
console = Console()


@dataclass
class Row:
    check: str
    result: str
    figures: str


def _run(command: list[str], timeout_s: float) -> str | None:
    """Run ``command`` with its output on the terminal; None when it succeeded, else what went wrong."""
    console.print(f"[bold]$ {' '.join(command)}[/bold]")
    try:
        code = subprocess.run(command, cwd=ROOT, timeout=timeout_s).returncode
    except subprocess.TimeoutExpired:
        return f"did not finish within {timeout_s:.0f} s"
    return None if code == 0 else f"exit status {code} (its output is above)"


def _device_rows() -> list[Row]:
    import torch

    if not torch.cuda.is_available():
        return [Row("CUDA", "missing", f"torch {torch.__version__} sees no CUDA device: nothing to check")]
    props = torch.cuda.get_device_properties(0)
    return [Row("CUDA", "ok", f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}")]


def _test_rows(junit: Path) -> list[Row]:
    rows = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"
        if case.find("skipped") is not None:
            outcome = "skipped"
        figures = ", ".join(f"{p.get('name')} {p.get('value')}" for p in case.iter("property"))
        seconds = float(case.get("time", 0))
        rows.append(Row(f"test {case.get('name')}", outcome, f"{figures}{', ' if figures else ''}{seconds:.1f} s"))
    return rows


def _bench_rows(results: Path) -> list[Row]:
    return [
        Row(
            f"bench {run['size']} {run['path']} x{run['concurrency']}",
            "measured",
            f"{run['images_per_s']:.1f} images/s, p50 {run['p50_ms']:.0f} ms, p95 {run['p95_ms']:.0f} ms "
            f"({run['device']}, {run['precision']})",
        )
        for run in json.loads(results.read_text())
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", default="fp32", choices=list(Precision), help="of the benchmark")
    parser.add_argument("--test-timeout-s", type=float, default=300)
    parser.add_argument("--bench-timeout-s", type=float, default=150)
    args = parser.parse_args()
    # gpu_check.sh passes when it started (the installs count toward the 8 minutes); else from here.
    started = float(os.environ.get("GPU_CHECK_STARTED", time.time()))
    rows = _device_rows()
    if rows[0].result != "ok":
        _print(rows, started)
        return 1
    failed = False
    with tempfile.TemporaryDirectory() as work:
        junit, results = Path(work) / "gpu.xml", Path(work) / "bench.json"
        pytest = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p", "no:cacheprovider"]
        problem = _run([*pytest, f"--junitxml={junit}"], args.test_timeout_s)
        rows += _test_rows(junit) if junit.exists() else [Row("pytest -m gpu", "failed", str(problem))]
        failed |= problem is not None
        for size, concurrencies, images in BENCHES:
            command = [sys.executable, "-m", "diffqc.cli", "bench", "triton", "--device", "cuda"]
            command += ["--precision", args.precision, "--size", size, "--images", str(images), "--json", str(results)]
            command += [arg for c in concurrencies for arg in ("--concurrency", str(c))]
            problem = _run(command, args.bench_timeout_s)
            if problem:
                rows.append(Row(f"bench {size}", "failed", problem))
            failed |= problem is not None
        if results.exists():
            rows += _bench_rows(results)
    _print(rows, started)
    return 1 if failed else 0


def _print(rows: list[Row], started: float) -> None:
    table = Table("check", "result", "figures", title=f"GPU check, {time.time() - started:.0f} s in all")
    for row in rows:
        table.add_row(row.check, row.result, row.figures)
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
