"""``diffqc bench triton``: the detector in-process vs through Triton, side by side in one run.

Both paths get the same images, one image per request, from each number of concurrent callers
(default 1 and 8). Through Triton the callers' requests meet in the dynamic batcher; in-process they
contend for the same cores. Throughput ratios (Triton / in-process) are what the target is about:
at concurrency 8 the Triton path should reach >= 0.85 of in-process throughput.

``--device cuda`` runs both on the GPU: the in-process detector with ``Detector.to``, Triton from
a copy of the repository with the GPU model config (KIND_GPU instances, ``--precision``).
``--size 4096x3000`` measures full camera frames; ``--json`` keeps the rows for a report.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from diffqc.core.artifact import read_metadata
from diffqc.core.precision import Precision
from diffqc.data.synth import render_sample
from diffqc.extras import require_extra
from diffqc.infra.ports import free_port
from diffqc.infra.services import PROJECT_ROOT
from diffqc.infra.triton import triton_server
from diffqc.serving.client import TritonDetector
from diffqc.serving.model_config import render_config
from diffqc.serving.repository import MODEL_NAME, versions, write_config
from diffqc.settings import TritonSettings

console = Console()
# Rendering a synthetic part costs seconds per megapixel: a few distinct frames are measured in turn,
# and larger frames repeat a render of RENDER_SIDE pixels a side.
RENDER_SIDE = 512
DISTINCT_FRAMES = 8


class BenchDevice(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class Run:
    path: str
    concurrency: int
    images_per_s: float
    p50_ms: float
    p95_ms: float
    size: str = ""
    device: str = "cpu"
    precision: str = "fp32"


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` (as cameras name frames: 4096x3000) -> (height, width)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 4096x3000; got {text!r}") from None
    if width < 1 or height < 1:
        raise typer.BadParameter(f"expected a positive WIDTHxHEIGHT; got {text!r}")
    return height, width


def bench_frames(product: str, size: tuple[int, int], count: int) -> list[np.ndarray]:
    """``count`` (1, C, H, W) float32 frames of ``product``, DISTINCT_FRAMES different ones in turn;
    a frame larger than RENDER_SIDE repeats a render of that side."""
    render = (min(size[0], RENDER_SIDE), min(size[1], RENDER_SIDE))
    distinct = min(count, DISTINCT_FRAMES)
    frames = []
    for i in range(distinct):
        image = render_sample(product, "bench", i, size=render).image
        reps = (math.ceil(size[0] / render[0]), math.ceil(size[1] / render[1]), 1)
        frames.append(np.tile(image, reps)[: size[0], : size[1]].transpose(2, 0, 1)[None].astype(np.float32))
    return [frames[i % distinct] for i in range(count)]


def _artifact_serving(version_dir: Path, product: str | None) -> tuple[Path, str]:
    """The artifact of ``version_dir`` that serves ``product`` (None: the first artifact's first product)."""
    artifacts = sorted(p for p in (version_dir / "artifacts").iterdir() if p.is_dir())
    for artifact in artifacts:
        products = read_metadata(artifact)["products"]
        if product is None or product in products:
            return artifact, product or products[0]
    raise typer.BadParameter(f"no artifact in {version_dir} serves product {product!r}", param_hint="--product")


def _gpu_repository(repo: Path, work: Path, precision: Precision) -> Path:
    """A copy of ``repo`` (artifacts resolved from their links) whose detector config is the GPU one."""
    copy = work / "repo"
    shutil.copytree(repo, copy)
    write_config(copy / MODEL_NAME, render_config("gpu", precision=precision))
    return copy


def _measure(path: str, call: Callable[[np.ndarray], object], images: list[np.ndarray], concurrency: int) -> Run:
    call(images[0])  # warm-up: first-call allocations are not what a line sees
    latencies: list[float] = []

    def timed(image: np.ndarray) -> None:
        started = time.perf_counter()
        call(image)
        latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(timed, images))
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return Run(path, concurrency, len(images) / wall, float(np.percentile(ms, 50)), float(np.percentile(ms, 95)))


def triton(
    repo: Annotated[Path, typer.Option(help="Model repository to serve")] = PROJECT_ROOT / "model-repository",
    images: Annotated[int, typer.Option(min=1, help="Images per measurement")] = 32,
    device: Annotated[BenchDevice, typer.Option(help="cuda: the detector and Triton's instances on the GPU")] = (
        BenchDevice.cpu
    ),
    precision: Annotated[Precision, typer.Option(help="With --device cuda: fp16/bf16 autocast")] = Precision.fp32,
    size: Annotated[str | None, typer.Option(help="WIDTHxHEIGHT (default: the model's, else 256x256)")] = None,
    concurrency: Annotated[list[int] | None, typer.Option(min=1, help="Concurrent callers (repeat; default 1, 8)")] = (
        None
    ),
    product: Annotated[str | None, typer.Option(help="Product type (default: the first artifact's)")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also append the rows to this JSON file")] = None,
) -> None:
    """Throughput and p50/p95 latency, in-process vs Triton, at each concurrency."""
    require_extra("detector", "diffqc bench triton")
    from diffqc.detector.detector import Detector

    if precision is not Precision.fp32 and device is not BenchDevice.cuda:
        raise typer.BadParameter("applies on the GPU: add --device cuda", param_hint="--precision")
    version_dir = repo / MODEL_NAME / str(versions(repo / MODEL_NAME)[-1])
    artifact, product = _artifact_serving(version_dir, product)
    try:
        detector = Detector.load(artifact).to(device.value, precision)
    except RuntimeError as exc:  # no CUDA: said in one line, with the fix
        console.print(f"[red]diffqc bench triton --device {device.value}:[/red] {exc}")
        raise typer.Exit(1) from None
    aligned = detector.products[product].image_size
    shape = parse_size(size) if size else tuple(aligned or (256, 256))
    if aligned and tuple(aligned) != shape:
        raise typer.BadParameter(f"{product!r} is aligned at {aligned[1]}x{aligned[0]}: choose another product")
    batch = bench_frames(product, (shape[0], shape[1]), images)
    label = f"{shape[1]}x{shape[0]}"
    console.print(
        f"{images} images of {product!r} at {label}, one per request, on {device.value} ({precision}); model {artifact}"
    )
    with tempfile.TemporaryDirectory() as work:
        served_repo = repo if device is BenchDevice.cpu else _gpu_repository(repo, Path(work), precision)
        grpc_port = free_port()
        server = triton_server(served_repo, free_port(), grpc_port, free_port(), Path(work), Path(work) / "triton.log")
        server.start()
        try:
            served = TritonDetector(TritonSettings(grpc_url=f"127.0.0.1:{grpc_port}", timeout_s=300))
            runs = []
            for callers in concurrency or [1, 8]:
                runs.append(_measure("in-process", lambda x: detector.predict(x, product), batch, callers))
                runs.append(_measure("triton", lambda x: served.detect(x, product), batch, callers))
        finally:
            server.stop()
    runs = [replace(run, size=label, device=device.value, precision=precision.value) for run in runs]
    if json_path:
        previous = json.loads(json_path.read_text()) if json_path.exists() else []
        json_path.write_text(json.dumps(previous + [asdict(run) for run in runs], indent=2) + "\n")
    table = Table("path", "concurrency", "images/s", "p50 ms", "p95 ms", "throughput vs in-process")
    for run in runs:
        base = next(r for r in runs if r.path == "in-process" and r.concurrency == run.concurrency)
        table.add_row(
            run.path,
            str(run.concurrency),
            f"{run.images_per_s:.2f}",
            f"{run.p50_ms:.0f}",
            f"{run.p95_ms:.0f}",
            f"{run.images_per_s / base.images_per_s:.2f}",
        )
    console.print(table)
