"""One error table per service decides both the gRPC status and the stream's retry-or-dead-letter."""

from __future__ import annotations

import grpc

from diffqc.preprocess import FrameImageError, SpecError, UnknownProduct
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import poison_errors, status_of
from services.preprocessing.service import ERRORS


def test_the_most_specific_class_in_the_table_decides_the_status():
    assert status_of(ERRORS, UnknownProduct("x")) is grpc.StatusCode.NOT_FOUND  # a SpecError, listed itself
    assert status_of(ERRORS, SpecError("x")) is grpc.StatusCode.FAILED_PRECONDITION
    assert status_of(ERRORS, KeyError("x")) is None


def test_everything_but_an_unavailable_dependency_is_poison():
    poison = poison_errors(ERRORS)
    assert FrameImageError in poison and SpecError in poison
    assert DependencyUnavailable not in poison  # retried for as long as the outage lasts
