"""The ``process`` score component: the frame's process-context deviation, and how it joins the
detector's image score. The one definition of "process" (``diffqc.core.components``).

Process deviation
    For each process parameter of the frame that has a nominal range [lo, hi] for the product:
    0 inside the range (bounds included), otherwise the distance to the nearer bound in range
    widths: (lo - v) / (hi - lo) below, (v - hi) / (hi - lo) above. The frame's deviation is the
    largest over its parameters (one parameter far out is what matters). Parameters without a
    range are ignored (and logged once per product and name); when none is left the deviation is "not measured".

Fusion
    The plant's reference weights are pixel 0.4, structural 0.3, concentration 0.2, process 0.1.
    The detector (``diffqc.core.components.fuse_components``) already fused the three image
    components into ``s = (0.4 z_pixel + 0.3 z_structural + 0.2 z_concentration) / 0.9`` (the
    weighted mean without process), and the product's threshold T was calibrated on that ``s``.
    With process the detector's rule is the weighted mean over all four,
    ``F = (0.9 s + 0.1 d) / 1.0``. Comparing F with T would shift every verdict (for d = 0,
    F = 0.9 s), so scoring reports the same weighted sum on the scale T was calibrated on:

        score = F / 0.9 = s + (w_p / (1 - w_p)) * d        (w_p = 0.1: s + d / 9)

    i.e. ``F > 0.9 T`` exactly when ``score > T``. Consequences: a frame whose parameters are
    all in range (d = 0), or that has none, gets exactly the detector's score and verdict; a
    parameter one range width out adds 1/9 to the score (the score is in good-image standard
    deviations). The image components themselves are not re-weighted here: the detector's score
    is the maximum over tiles, which the per-component maxima could not reproduce.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
_warned: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class ProcessDeviation:
    value: float | None  # None: no parameter of the frame has a nominal range
    per_parameter: dict[str, float] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # parameters without a (valid) range, or with a non-finite value


def _bounds(value: Any) -> tuple[float, float] | None:
    """[lo, hi] (or {"min", "max"}) as floats with lo < hi, or None when malformed."""
    if isinstance(value, Mapping):
        value = [value.get("min"), value.get("max")]
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    try:
        lo, hi = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return None
    return lo, hi


def parameter_deviation(value: float, lo: float, hi: float) -> float:
    """0 inside [lo, hi]; outside, the distance to the nearer bound in range widths."""
    width = hi - lo
    if value < lo:
        return (lo - value) / width
    if value > hi:
        return (value - hi) / width
    return 0.0


def process_deviation(
    parameters: Mapping[str, float], nominal_ranges: Mapping[str, Any] | None, product: str = ""
) -> ProcessDeviation:
    """The frame's process deviation against ``nominal_ranges`` ({name: [lo, hi]}); see the module doc."""
    ranges = nominal_ranges or {}
    per: dict[str, float] = {}
    ignored: list[str] = []
    for name, raw in sorted(parameters.items()):
        bounds = _bounds(ranges.get(name)) if name in ranges else None
        value = float(raw)
        if bounds is None or not math.isfinite(value):
            ignored.append(name)
            why = (
                "a non-finite value"
                if bounds is not None
                else "a malformed nominal range (expected [lo, hi] with lo < hi)"
                if name in ranges
                else "no nominal range"
            )
            _warn_once(product, name, f"process parameter {name!r} of product {product!r} has {why}; ignored")
            continue
        per[name] = parameter_deviation(value, *bounds)
    return ProcessDeviation(max(per.values()) if per else None, per, tuple(ignored))


def _warn_once(product: str, name: str, message: str) -> None:
    if (product, name) in _warned:
        log.debug(message)
        return
    _warned.add((product, name))
    log.warning(message + " (reported once per product and parameter)")


def with_process(image_score: float, process: float | None, process_weight: float = 0.1) -> float:
    """The detector's image score fused with the process deviation; see the module doc."""
    if not 0 <= process_weight < 1:
        raise ValueError(f"process_weight must be in [0, 1), got {process_weight}")
    if process is None or process_weight == 0:
        return float(image_score)
    return float(image_score) + process_weight / (1.0 - process_weight) * float(process)
