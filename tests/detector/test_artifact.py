"""The artifact round trip and its compatibility checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from diffqc.core.artifact import FILES, FORMAT_VERSION
from diffqc.core.errors import ArtifactError
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector import Detector


def _batch(data):
    return np.stack([read_image(s.path).transpose(2, 0, 1) for s in list_samples(data, "test")[:3]])


def test_round_trip_gives_identical_predictions(metal_model, metal_data, tmp_path):
    det = Detector.load(metal_model)
    copy = det.save(tmp_path / "copy")
    again = Detector.load(copy)
    assert sorted(p.name for p in copy.iterdir()) == sorted(FILES)
    x = _batch(metal_data)
    a, b = det.predict(x), again.predict(x)
    for name in ("anomaly_map", "components", "score"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert again.cfg == det.cfg
    assert again.threshold() == det.threshold()


def test_metadata_records_what_made_the_model(metal_model):
    meta = json.loads((metal_model / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "ddim"
    assert meta["products"] == ["brushed_metal"]
    assert len(meta["training_data"]["brushed_metal"]["fingerprint"]) == 64
    assert {"torch", "diffusers", "diffqc", "numpy"} <= set(meta["versions"])
    assert meta["components"] == ["pixel", "structural", "concentration", "process"]
    thresholds = json.loads((metal_model / "thresholds.json").read_text())
    assert thresholds["brushed_metal"]["method"] == "fpr" and thresholds["brushed_metal"]["target_fpr"] == 0.03


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_newer_format_is_refused_with_a_clear_message(metal_model, tmp_path):
    bad = _copy(metal_model, tmp_path / "m")
    meta = json.loads((bad / "metadata.json").read_text())
    meta["format_version"] = "2.0"
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format 2.0"):
        Detector.load(bad)


def test_missing_or_damaged_files_are_named(metal_model, tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        Detector.load(tmp_path / "nowhere")
    bad = _copy(metal_model, tmp_path / "m")
    (bad / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing weights.safetensors"):
        Detector.load(bad)
    bad2 = _copy(metal_model, tmp_path / "m2")
    (bad2 / "weights.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ArtifactError, match="cannot read tensors"):
        Detector.load(bad2)


def test_weights_that_do_not_match_the_config_are_refused(metal_model, tmp_path):
    bad = _copy(metal_model, tmp_path / "m")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["block_out_channels"] = [16, 48]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="does not match config.json"):
        Detector.load(bad)


def test_unknown_kind_is_refused(metal_model, tmp_path):
    bad = _copy(metal_model, tmp_path / "m")
    meta = json.loads((bad / "metadata.json").read_text())
    meta["kind"] = "mystery"
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="kind 'mystery'"):
        Detector.load(bad)
