"""The detector: diffusion reconstruction anomaly detection trained on good images only.

    from diffqc.detector import Detector, train_detector
    detector = train_detector("data/pcb", minutes=5)       # or Detector.load("model/")
    detector.save("model/")
    student = distill_detector(detector, minutes=5)       # one-step consistency student
    result = detector.predict(batch, product="default")   # Prediction: anomaly_map, components, score

See docs/detector.md for the design, the artifact format and the benchmark.

What needs torch is imported on first use, so that the torch-free parts of the package (its
configuration, its command line's ``--help``) import on the base install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from diffqc.core.components import COMPONENTS, MAP_COMPONENTS
from diffqc.core.errors import ArtifactError, DetectorError, InputError, ProductError, TrainingDataError
from diffqc.detector.config import DetectorConfig
from diffqc.detector.outputs import Prediction

if TYPE_CHECKING:
    from diffqc.detector.detector import DEFAULT_PRODUCT, Detector
    from diffqc.detector.distill import distill_detector
    from diffqc.detector.fit import train_detector

_NEEDS_TORCH = {
    "DEFAULT_PRODUCT": "diffqc.detector.detector",
    "Detector": "diffqc.detector.detector",
    "distill_detector": "diffqc.detector.distill",
    "train_detector": "diffqc.detector.fit",
}


def __getattr__(name: str) -> Any:
    if name not in _NEEDS_TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_NEEDS_TORCH[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "COMPONENTS",
    "DEFAULT_PRODUCT",
    "MAP_COMPONENTS",
    "ArtifactError",
    "Detector",
    "DetectorConfig",
    "DetectorError",
    "InputError",
    "Prediction",
    "ProductError",
    "TrainingDataError",
    "distill_detector",
    "train_detector",
]
