"""Tiny detectors on tiny procedural data sets: every test here runs in seconds on one core."""

from __future__ import annotations

import pytest
import torch

from diffqc.data.synth import generate_product
from tests.helpers.models import tiny_config


@pytest.fixture(autouse=True)
def _one_thread():
    # Other work shares the machine's two cores; tiny models gain nothing from more threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def metal_data(tmp_path_factory):
    """Grayscale brushed metal (a texture: not aligned), 64x64."""
    return generate_product("brushed_metal", tmp_path_factory.mktemp("data"), 16, 4, 4, size=(64, 64), seed=1)


@pytest.fixture(scope="session")
def pcb_data(tmp_path_factory):
    """RGB PCB in a jig (aligned), 64x64."""
    return generate_product("pcb", tmp_path_factory.mktemp("data"), 16, 4, 4, size=(64, 64), seed=1)


@pytest.fixture(scope="session")
def metal_model(metal_data, tmp_path_factory):
    from diffqc.detector.fit import train_detector

    torch.set_num_threads(1)
    detector = train_detector(metal_data, tiny_config(), steps=40, progress=False, log=lambda _m: None)
    return detector.save(tmp_path_factory.mktemp("models") / "metal")
