"""The picture of docs/review.md's reconstruction: defective synthetic parts of each shipped product, what the
shipped model reconstructs (the review page's "what a good part looks like here") and the anomaly map.

    .venv/bin/python -m benchmarks.reconstruction_figure            # writes docs/img/reconstructions.png

The model runs in process here; the gateway gets the same reconstruction from Triton (equal to 1e-5,
tests/serving/test_triton_detector.py).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffqc.data.images import read_image  # noqa: E402
from diffqc.data.mvtec import list_samples  # noqa: E402
from diffqc.data.synth import generate_product  # noqa: E402
from diffqc.detector.default import DEFAULT_PRODUCT_TYPES, default_model_path  # noqa: E402
from diffqc.detector.detector import Detector  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img/reconstructions.png"))
    args = parser.parse_args()
    fig, axes = plt.subplots(len(DEFAULT_PRODUCT_TYPES), 3, figsize=(7.5, 2.5 * len(DEFAULT_PRODUCT_TYPES)))
    with tempfile.TemporaryDirectory() as tmp:
        for row, product in zip(axes, DEFAULT_PRODUCT_TYPES, strict=True):
            data = generate_product(product, Path(tmp), n_train=1, n_test_good=0, n_test_defect=1, seed=7)
            sample = next(s for s in list_samples(data, "test") if s.label == 1)
            image = read_image(sample.path)
            detector = Detector.load(default_model_path(product))
            result = detector.predict(image.transpose(2, 0, 1)[None], product, return_reconstruction=True)
            assert result.reconstruction is not None
            panels = [
                (image, f"{product}: {sample.defect_type}"),
                (result.reconstruction[0].transpose(1, 2, 0), "reconstruction"),
                (result.anomaly_map[0, 0], f"anomaly map (score {result.score[0]:.2f})"),
            ]
            for ax, (picture, title) in zip(row, panels, strict=True):
                ax.imshow(picture.squeeze(), cmap="inferno" if picture.ndim == 2 else "gray")
                ax.set_title(title, fontsize=9)
                ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
