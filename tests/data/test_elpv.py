"""The ELPV benchmark builder on the real data set (optional package; required under CI)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from diffqc.data.elpv import ElpvNotInstalledError, build_elpv_benchmark, labels_file, read_labels
from diffqc.data.images import read_image
from diffqc.data.mvtec import has_masks, list_samples

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
installed = importlib.util.find_spec("elpv_dataset") is not None
needs_elpv = pytest.mark.skipif(not installed and not IN_CI, reason="pip install elpv-dataset")


@needs_elpv
def test_benchmark_uses_mono_cells_only_with_disjoint_good_splits(tmp_path):
    files, prob, kind = read_labels(labels_file())
    mono_good = {f.name for f, p, k in zip(files, prob, kind, strict=True) if k == "mono" and p == 0}
    mono_bad = {f.name for f, p, k in zip(files, prob, kind, strict=True) if k == "mono" and p == 1}

    path = build_elpv_benchmark(tmp_path, n_train=20, seed=0, n_test_defect=10)
    train, test = list_samples(path, "train"), list_samples(path, "test")
    good_test = [s for s in test if s.label == 0]
    bad_test = [s for s in test if s.label == 1]
    assert len(train) == 20 and len(bad_test) == 10
    assert len(good_test) == round(0.25 * len(mono_good))  # a quarter of the good cells held out
    assert {s.path.name for s in train} <= mono_good and {s.path.name for s in good_test} <= mono_good
    assert not {s.path.name for s in train} & {s.path.name for s in good_test}
    assert {s.path.name for s in bad_test} <= mono_bad and {s.defect_type for s in bad_test} == {"defect"}
    assert not has_masks(test)  # image-level labels only
    assert read_image(train[0].path).shape == (300, 300, 1)
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["license"] == "CC BY-NC-SA 4.0" and manifest["masks"] is False


@needs_elpv
def test_default_trains_on_all_remaining_good_cells_deterministically(tmp_path):
    a = build_elpv_benchmark(tmp_path / "a", n_test_defect=1)
    b = build_elpv_benchmark(tmp_path / "b", n_test_defect=1)
    names = [s.path.name for s in list_samples(a, "train")]
    assert names == [s.path.name for s in list_samples(b, "train")]
    held_out = sum(1 for s in list_samples(a, "test") if s.label == 0)
    assert len(names) + held_out == 588  # every good mono cell, used once
    assert np.array_equal(read_image(list_samples(a, "train")[0].path), read_image(list_samples(b, "train")[0].path))


def test_missing_package_gives_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # makes the import fail
    with pytest.raises(ElpvNotInstalledError, match="pip install elpv-dataset"):
        build_elpv_benchmark(tmp_path)
