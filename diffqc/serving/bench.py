"""``diffqc bench triton``: the detector in-process vs through Triton, side by side in one run.

Both paths get the same images, one image per request, from 1 and from 8 concurrent callers.
Through Triton the 8 callers' requests meet in the dynamic batcher; in-process they contend for
the same cores. Throughput ratios (Triton / in-process) are what the target is about: at
concurrency 8 the Triton path should reach >= 0.85 of in-process throughput.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from diffqc.data.synth import render_sample
from diffqc.extras import require_extra
from diffqc.infra.ports import free_port
from diffqc.infra.services import PROJECT_ROOT
from diffqc.infra.triton import triton_server
from diffqc.serving.client import TritonDetector
from diffqc.serving.repository import MODEL_NAME, versions
from diffqc.settings import TritonSettings

console = Console()


@dataclass
class Run:
    path: str
    concurrency: int
    images_per_s: float
    p50_ms: float
    p95_ms: float


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
    images: Annotated[int, typer.Option(help="Images per measurement")] = 32,
) -> None:
    """Throughput and p50/p95 latency, in-process vs Triton, at concurrency 1 and 8."""
    require_extra("detector", "diffqc bench triton")
    from diffqc.detector.detector import Detector

    version_dir = repo / MODEL_NAME / str(versions(repo / MODEL_NAME)[-1])
    artifact = sorted((version_dir / "artifacts").iterdir())[0]
    detector = Detector.load(artifact)
    product = detector.product_names[0]
    size = detector.products[product].image_size or (256, 256)
    batch = [
        render_sample(product, "bench", i, size=(size[0], size[1])).image.transpose(2, 0, 1)[None].astype(np.float32)
        for i in range(images)
    ]
    console.print(f"{images} images of {product!r} at {size[1]}x{size[0]}, one per request; model {artifact}")
    with tempfile.TemporaryDirectory() as work:
        grpc_port = free_port()
        server = triton_server(repo, free_port(), grpc_port, free_port(), Path(work), Path(work) / "triton.log")
        server.start()
        try:
            served = TritonDetector(TritonSettings(grpc_url=f"127.0.0.1:{grpc_port}", timeout_s=120))
            runs = []
            for concurrency in (1, 8):
                runs.append(_measure("in-process", lambda x: detector.predict(x, product), batch, concurrency))
                runs.append(_measure("triton", lambda x: served.detect(x, product), batch, concurrency))
        finally:
            server.stop()
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
