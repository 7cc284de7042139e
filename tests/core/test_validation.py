"""One validation style: every hand-written document's errors read ``<where>: <key path>: <message>``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from diffqc.core.errors import ArtifactError
from diffqc.core.validation import dotted, render_errors, validate
from diffqc.detector.config import DetectorConfig

ROOT = Path(__file__).resolve().parents[2]


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sizes: tuple[int, ...] = ()


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inner: Inner = Inner()
    level: int = 0

    @field_validator("level")
    @classmethod
    def _small(cls, level: int) -> int:
        if level > 3:
            raise ValueError(f"must be at most 3, got {level}")
        return level


def test_locations_read_as_key_paths():
    assert dotted(("model", "block_out_channels", 1)) == "model.block_out_channels[1]"
    assert dotted(()) == ""
    assert dotted(("ranges", "", "[key]")) == "ranges.'' (key)"


def test_every_error_is_on_one_line_with_its_key_and_a_validators_own_text():
    with pytest.raises(ValidationError) as err:
        Outer.model_validate({"inner": {"sizes": [1, "x"], "typo": 1}, "level": 9})
    assert render_errors(err.value, "doc.yaml") == (
        "doc.yaml: inner.sizes[1]: Input should be a valid integer, unable to parse string as an integer; "
        "inner.typo: Extra inputs are not permitted; level: must be at most 3, got 9"
    )
    with pytest.raises(ValidationError) as err:
        Outer.model_validate([1])
    assert render_errors(err.value, "doc.yaml") == "doc.yaml: Input should be a valid dictionary or instance of Outer"


def test_validate_raises_the_callers_error_type():
    assert validate(Outer, {"level": 2}, "doc", KeyError).level == 2
    assert validate(TypeAdapter(list[int]), [1, "2"], "doc", KeyError) == [1, 2]
    with pytest.raises(LookupError, match=r"^doc: level: must be at most 3") as err:
        validate(Outer, {"level": 7}, "doc", LookupError)
    assert err.value.__cause__ is None


def test_the_shipped_artifacts_configs_load_unchanged():
    paths = sorted((ROOT / "diffqc/detector/default_models").glob("*/config.json"))
    assert paths
    for path in paths:
        stored = json.loads(path.read_text())
        loaded = json.loads(json.dumps(DetectorConfig.from_dict(stored, str(path)).to_dict()))
        for section, values in stored.items():
            assert {k: loaded[section][k] for k in values} == values, path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"recon": {"step": 5}}, "config override: recon.step: Extra inputs are not permitted"),
        ({"model": {"block_out_channels": [16, "wide"]}}, "config override: model.block_out_channels[1]: Input should"),
        ({"recon": {"steps": "many"}}, "config override: recon.steps: Input should be a valid integer"),
        ({"reconstruction": {"steps": 5}}, "config override: unknown section 'reconstruction'"),
    ],
)
def test_a_bad_config_names_its_section_and_key(overrides, message):
    with pytest.raises(ArtifactError) as err:
        DetectorConfig().with_overrides(overrides)
    assert str(err.value).startswith(message)
    with pytest.raises(ArtifactError, match=r"^m/config.json: tile: Input should be a valid dictionary"):
        DetectorConfig.from_dict({"tile": 3}, "m/config.json")


def test_a_config_set_after_construction_stays_plain_json():
    cfg = DetectorConfig().with_overrides({"model": {"block_out_channels": [16, 32]}})
    assert cfg.model.block_out_channels == (16, 32) and cfg.model.multiple == 4
    cfg.recon.steps, cfg.model.block_out_channels = np.int64(5), [8, 16, 16]
    assert type(cfg.recon.steps) is int and cfg.model.multiple == 8
    assert DetectorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="step"):
        cfg.recon.step = 5  # a misspelt attribute is refused, not silently added
