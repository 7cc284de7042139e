"""Good-part score streams shaped like the shipped pcb detector's (benchmarks/drift.py scores the real
ones): correlated pixel and structural z-scores, a concentration with a floor most parts sit on, no
process deviation, and the score their weighted sum. ``shift`` moves the pixel component as a
brightness change does (and the score with it); ``offset`` moves the score alone, as a changed
process weight in scoring would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from diffqc.drift import DriftSample

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
WEIGHTS = {"pixel": 0.5, "structural": 0.3, "concentration": 0.2}


def good_parts(
    rng: np.random.Generator,
    n: int,
    start: int = 0,
    shift: float = 0.0,
    offset: float = 0.0,
    version: str | None = "1",
    line_speed: float = 0.0,
) -> list[DriftSample]:
    pixel = rng.standard_normal(n)
    structural = 0.6 * pixel + 0.8 * rng.standard_normal(n)
    concentration = np.maximum(rng.standard_normal(n), -0.7)
    pixel = pixel + shift
    score = sum(w * c for w, c in zip(WEIGHTS.values(), (pixel, structural, concentration), strict=True)) + offset
    return [
        DriftSample(
            T0 + timedelta(seconds=start + i),
            float(score[i]),
            "pass",
            {
                "pixel": float(pixel[i]),
                "structural": float(structural[i]),
                "concentration": float(concentration[i]),
                "process": line_speed,
            },
            f"insp-{start + i}",
            version,
        )
        for i in range(n)
    ]
