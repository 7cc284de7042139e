"""How serious a defect is: the severity of its alert.

The rule, from the two things the verdict measures — how far the score is past the calibrated
threshold and how much of the part the defect regions cover:

- CRITICAL: score >= 2 x threshold, or the regions cover >= 5 % of the frame;
- MAJOR: score >= 1.25 x threshold, or the regions cover >= 1 % of the frame;
- MINOR: any other defect (the score is just past the threshold and the defect is small).

A threshold <= 0 has no meaningful ratio, and a frame of unknown size no meaningful coverage: that
part of the rule is then skipped. The bridge can request a line stop for chosen severities
(DIFFQC_BRIDGE_LINE_STOP_SEVERITIES, CRITICAL by default).

A part that could not be inspected (a NOT_INSPECTED alert) is MAJOR: nothing says it is defective,
but nothing says it is good either, so it must be held and checked by hand; it is not CRITICAL, so
a run of dead letters (a model missing, a camera sending garbage) does not stop the line by default.
"""

from __future__ import annotations

import enum


class Severity(enum.StrEnum):
    MINOR = "MINOR"
    MAJOR = "MAJOR"
    CRITICAL = "CRITICAL"


NOT_INSPECTED_SEVERITY = Severity.MAJOR

# (severity, minimum score/threshold ratio, minimum share of the frame's area), most severe first.
RULES: tuple[tuple[Severity, float, float], ...] = (
    (Severity.CRITICAL, 2.0, 0.05),
    (Severity.MAJOR, 1.25, 0.01),
)


def severity(score: float, threshold: float, defect_area_px: int, frame_area_px: int) -> Severity:
    ratio = score / threshold if threshold > 0 else None
    coverage = defect_area_px / frame_area_px if frame_area_px > 0 else None
    for level, min_ratio, min_coverage in RULES:
        if (ratio is not None and ratio >= min_ratio) or (coverage is not None and coverage >= min_coverage):
            return level
    return Severity.MINOR
