"""The detector: diffusion reconstruction anomaly detection trained on good images only.

    from diffqc.detector import Detector, train_detector
    detector = train_detector("data/pcb", minutes=5)       # or Detector.load("model/")
    detector.save("model/")
    student = distill_detector(detector, minutes=5)       # one-step consistency student
    result = detector.predict(batch, product="default")   # Prediction: anomaly_map, components, score

See docs/detector.md for the design, the artifact format and the benchmark.
"""

from diffqc.core.components import COMPONENTS, MAP_COMPONENTS
from diffqc.core.errors import ArtifactError, DetectorError, InputError, ProductError, TrainingDataError
from diffqc.detector.config import DetectorConfig
from diffqc.detector.detector import DEFAULT_PRODUCT, Detector
from diffqc.detector.distill import distill_detector
from diffqc.detector.fit import train_detector
from diffqc.detector.outputs import Prediction

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
