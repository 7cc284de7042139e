"""A synthetic production line for the demo and the pipeline benchmark.

One line per product type, one camera per line; parts arrive interleaved across lines with about
``defect_rate`` of them defective (each product's defect types in turn). Every frame comes with its
ground truth, so the demo can score the platform's verdicts.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from PIL import Image

from diffqc.core import clock
from diffqc.data.synth import product_design, render_sample, synthetic_product
from diffqc.detector.default import DESIGN_SEED
from diffqc.v1 import ingestion_pb2
from diffqc.v1.frame_pb2 import Frame

PLANT = "plant-1"
PARTS_PER_LOT = 25


@dataclass(frozen=True)
class Part:
    """What the generator knows about a frame: its line, product and true condition."""

    frame_id: str
    line_id: str
    product_type: str
    truth: str  # "good" or the defect type
    lot: str

    @property
    def defective(self) -> bool:
        return self.truth != "good"


def png_bytes(image: np.ndarray) -> bytes:
    pixels = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def line_of(product: str) -> str:
    return f"line-{product.replace('_', '-')}"


def plan_parts(products: Sequence[str], frames: int, defect_rate: float, seed: int) -> list[tuple[str, str]]:
    """(product, truth) for each frame, in arrival order: products take turns, the defective parts
    (``round(frames * defect_rate)`` of them) are spread at random positions."""
    rng = np.random.default_rng(seed)
    n_defect = round(frames * defect_rate)
    defective = set(rng.choice(frames, size=n_defect, replace=False).tolist()) if n_defect else set()
    turns: dict[str, int] = {}
    plan = []
    for i in range(frames):
        product = products[i % len(products)]
        if i in defective:
            defects = sorted(synthetic_product(product).defects)
            plan.append((product, defects[turns.get(product, 0) % len(defects)]))
            turns[product] = turns.get(product, 0) + 1
        else:
            plan.append((product, "good"))
    return plan


def production_line(
    products: Sequence[str], sizes: dict[str, tuple[int, int]], frames: int, defect_rate: float, seed: int, run_id: str
) -> Iterator[tuple[ingestion_pb2.IngestRequest, Part]]:
    """The camera frames of the line, rendered lazily (one at a time) with their ground truth."""
    start = clock.now()
    # The seed varies the parts (placement, lighting, noise, defects), never the designs the shipped models learned.
    designs = {product: product_design(product, sizes[product], DESIGN_SEED) for product in products}
    for i, (product, truth) in enumerate(plan_parts(products, frames, defect_rate, seed)):
        defect = None if truth == "good" else truth
        rendered = render_sample(product, "demo", i, defect, size=sizes[product], seed=seed, design=designs[product])
        line, lot = line_of(product), f"LOT-{i // PARTS_PER_LOT + 1:03d}"
        capture = clock.to_timestamp(start + timedelta(milliseconds=i))  # distinct: a score point's time is its key
        frame = Frame(
            frame_id=f"{run_id}-{i:05d}",
            plant_id=PLANT,
            line_id=line,
            station_id="station-1",
            camera_id=f"{line}-cam-1",
            product_type=product,
            work_order="WO-1001",
            lot=lot,
            capture_time=capture,
            process_parameters={"line_speed_m_min": 12.0},
        )
        yield (
            ingestion_pb2.IngestRequest(frame=frame, image_data=png_bytes(rendered.image)),
            Part(frame.frame_id, line, product, truth, lot),
        )
