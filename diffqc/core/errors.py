"""Errors of the detector and its artifacts, torch-free: the platform catches them too.

Each message names the file or parameter at fault and what to do.
"""

from __future__ import annotations


class DetectorError(ValueError):
    """Base class: bad input to the detector (a ValueError, so callers may catch either)."""


class InputError(DetectorError):
    """An image the model cannot process: channel count, size, or value range."""


class ArtifactError(DetectorError):
    """A model artifact that is missing, damaged or incompatible with this version of diffqc."""


class ProductError(DetectorError):
    """A product type the model was not trained for."""


class TrainingDataError(DetectorError):
    """A training folder that cannot train a model (empty, mixed channel counts, too few images)."""
