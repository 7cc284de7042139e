import io

import numpy as np
from PIL import Image

from diffqc.data.synth import product_design, render_sample
from diffqc.demo.line import png_bytes, production_line
from diffqc.detector.default import DESIGN_SEED

SIZES = {"pcb": (128, 128), "moulded_plastic": (128, 128)}


def _first_parts(seed: int) -> dict[str, tuple[int, np.ndarray]]:
    parts: dict[str, tuple[int, np.ndarray]] = {}
    stream = production_line(list(SIZES), SIZES, frames=4, defect_rate=0.0, seed=seed, run_id="t")
    for i, (request, part) in enumerate(stream):
        parts.setdefault(part.product_type, (i, np.asarray(Image.open(io.BytesIO(request.image_data)))))
    return parts


def _png_pixels(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png_bytes(image))))


def test_the_demo_seed_varies_the_parts_but_never_the_designs_the_shipped_models_learned():
    # seed 7 once drew new PCB layouts and mouldings: every good part of them was flagged (FPR 100%).
    seed0, seed7 = _first_parts(0), _first_parts(7)
    for product, size in SIZES.items():
        index, pixels = seed7[product]
        assert not np.array_equal(pixels, seed0[product][1]), "the seed must vary the parts"
        shipped = render_sample(
            product, "demo", index, size=size, seed=7, design=product_design(product, size, DESIGN_SEED)
        )
        own = render_sample(product, "demo", index, size=size, seed=7)
        assert np.array_equal(pixels, _png_pixels(shipped.image)), f"{product}: not the shipped design"
        assert not np.array_equal(pixels, _png_pixels(own.image)), f"{product}: seed 7 drew its own design"
