"""The score-component registry: one definition of each component, in Triton's SCORES order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffqc.core.components import (
    COMPONENTS,
    DEFAULT_SCORE_WEIGHTS,
    IMAGE_COMPONENTS,
    ImageEvidence,
    fuse_components,
    measure_components,
)
from diffqc.detector.config import DetectorConfig


def test_the_registry_is_the_plants_reference_order_and_weights():
    assert COMPONENTS == ("pixel", "structural", "concentration", "process")
    assert DEFAULT_SCORE_WEIGHTS == {"pixel": 0.4, "structural": 0.3, "concentration": 0.2, "process": 0.1}
    assert IMAGE_COMPONENTS == ("pixel", "structural", "concentration")  # process: measured by the platform
    assert DetectorConfig().score.weights == DEFAULT_SCORE_WEIGHTS


def test_components_are_measured_from_the_maps_and_process_is_left_to_the_platform():
    amap = np.zeros((32, 32), np.float32)
    amap[10:14, 10:14] = 3.0  # one 16 px region, 2.0 above the level
    structural = np.full((32, 32), 0.5, np.float32)
    raw = measure_components([ImageEvidence(amap, structural, region_level=1.0)])
    assert raw.shape == (1, len(COMPONENTS))
    assert raw[0].tolist() == pytest.approx([3.0, 0.5, math.log1p(16 * 2.0), 0.0])


def test_fusion_standardizes_and_weights_only_the_image_components():
    raw = np.array([[3.0, 2.0, 1.0, 9.0]])
    z, score = fuse_components(
        raw, np.array([1.0, 0.0, 0.0, 0.0]), np.array([2.0, 1.0, 1.0, 1.0]), DEFAULT_SCORE_WEIGHTS
    )
    assert z[0].tolist() == [1.0, 2.0, 1.0, 0.0]
    assert score[0] == pytest.approx((0.4 * 1 + 0.3 * 2 + 0.2 * 1) / 0.9)
    with pytest.raises(ValueError, match="image component"):
        fuse_components(raw, np.zeros(4), np.ones(4), {"process": 1.0})
