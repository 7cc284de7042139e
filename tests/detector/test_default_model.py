"""The default artifact shipped in the package loads and finds a defect it has never seen."""

from __future__ import annotations

import numpy as np

from diffqc.data.synth import render_sample
from diffqc.detector import Detector
from diffqc.detector.default import default_model_path


def test_default_model_detects_a_pcb_defect():
    det = Detector.load(default_model_path())
    assert det.product_names == ["pcb"]
    good = [render_sample("pcb", "test_good", i, seed=0).image for i in range(2)]
    bad = render_sample("pcb", "test_defect", 0, "solder_bridge", seed=0)
    x = np.stack([*good, bad.image]).transpose(0, 3, 1, 2)
    result = det.predict(x, "pcb")
    amap, score = result.anomaly_map, result.score
    assert score[2] > det.threshold() > score[:2].max()
    # The map peaks inside the defect.
    peak = np.unravel_index(np.argmax(amap[2, 0]), amap.shape[2:])
    ys, xs = np.nonzero(bad.mask)
    assert ys.min() - 8 <= peak[0] <= ys.max() + 8 and xs.min() - 8 <= peak[1] <= xs.max() + 8
