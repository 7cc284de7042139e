"""The MVTec AD layout: round trip, deterministic order, masks, and errors naming the folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffqc.data.images import read_image, read_mask, write_image
from diffqc.data.mvtec import (
    DatasetError,
    Sample,
    building,
    has_masks,
    list_samples,
    sample_mask,
    write_sample,
)

rng = np.random.default_rng(1)


def _img(c=1):
    return rng.random((16, 20, c)).astype(np.float32)


def _mask():
    m = np.zeros((16, 20), bool)
    m[3:7, 4:9] = True
    return m


def test_round_trip_paths_labels_and_masks(tmp_path):
    written = [
        write_sample(tmp_path, "train", "good", "000", _img()),
        write_sample(tmp_path, "test", "good", "000", _img()),
        write_sample(tmp_path, "test", "scratch", "000", _img(), _mask()),
        write_sample(tmp_path, "test", "crack", "000", _img(), _mask()),
    ]
    assert written[2] == Sample(
        tmp_path / "test/scratch/000.png", 1, "scratch", tmp_path / "ground_truth/scratch/000_mask.png"
    )
    assert list_samples(tmp_path, "train") == [written[0]]
    test = list_samples(tmp_path, "test")
    # good first, then defect types alphabetically
    assert [s.defect_type for s in test] == ["good", "crack", "scratch"]
    assert [s.label for s in test] == [0, 1, 1]
    assert set(test) == set(written[1:])
    assert np.array_equal(read_mask(test[2].mask_path), _mask())
    assert read_image(test[1].path).shape == (16, 20, 1)
    assert has_masks(test)


def test_order_is_natural_and_ignores_non_images(tmp_path):
    for name in ("img10", "img2", "img1"):
        write_sample(tmp_path, "train", "good", name, _img())
    (tmp_path / "train/good/notes.txt").write_text("not an image")
    (tmp_path / "train/good/.hidden.png").write_bytes(b"")
    assert [s.path.name for s in list_samples(tmp_path, "train")] == ["img1.png", "img2.png", "img10.png"]


def test_defects_without_masks_are_image_level(tmp_path):
    write_sample(tmp_path, "test", "good", "0", _img())
    write_sample(tmp_path, "test", "defect", "0", _img())
    test = list_samples(tmp_path, "test")
    assert test[1].mask_path is None and not has_masks(test)
    assert sample_mask(test[1]) is None
    assert not sample_mask(test[0]).any() and sample_mask(test[0]).shape == (16, 20)
    assert not has_masks([test[0]])  # no defective sample at all: no pixel metrics either


def test_a_mask_for_one_defect_only_is_not_enough(tmp_path):
    write_sample(tmp_path, "test", "a", "0", _img(), _mask())
    write_sample(tmp_path, "test", "a", "1", _img())
    assert not has_masks(list_samples(tmp_path, "test"))


@pytest.mark.parametrize(
    ("setup", "split", "expected"),
    [
        (lambda r: None, "train", "data set folder"),
        (lambda r: r.mkdir(), "train", "'train' split folder"),
        (lambda r: (r / "train").mkdir(parents=True), "train", "training folder"),
        (lambda r: (r / "train/good").mkdir(parents=True), "train", "no images"),
        (lambda r: (r / "test").mkdir(parents=True), "test", "no class folders"),
        (lambda r: (r / "test/good").mkdir(parents=True), "test", "no images"),
    ],
)
def test_missing_or_empty_folders_are_named(tmp_path, setup, split, expected):
    root = tmp_path / "ds"
    setup(root)
    with pytest.raises(DatasetError, match=expected) as err:
        list_samples(root, split)
    assert str(root) in str(err.value)


def test_empty_defect_folder_is_named(tmp_path):
    write_sample(tmp_path, "test", "good", "0", _img())
    (tmp_path / "test/crack").mkdir()
    with pytest.raises(DatasetError, match=str(tmp_path / "test/crack")):
        list_samples(tmp_path, "test")


def test_write_sample_refuses_inconsistent_input(tmp_path):
    with pytest.raises(ValueError, match="good images only"):
        write_sample(tmp_path, "train", "scratch", "0", _img())
    with pytest.raises(ValueError, match="cannot have a defect mask"):
        write_sample(tmp_path, "test", "good", "0", _img(), _mask())
    with pytest.raises(ValueError, match="mask shape"):
        write_sample(tmp_path, "test", "scratch", "0", _img(), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="plain file name"):
        write_sample(tmp_path, "test", "scratch", "../0", _img())
    with pytest.raises(ValueError, match="split"):
        write_sample(tmp_path, "val", "good", "0", _img())
    with pytest.raises(ValueError, match="split"):
        list_samples(tmp_path, "val")


def test_a_corrupt_image_is_named_when_read(tmp_path):
    write_sample(tmp_path, "train", "good", "0", _img())
    (tmp_path / "train/good/1.png").write_bytes(b"garbage")
    bad = list_samples(tmp_path, "train")[1]
    with pytest.raises(ValueError, match="1.png"):
        read_image(bad.path)


def test_building_replaces_atomically_and_protects_foreign_folders(tmp_path):
    target = tmp_path / "ds"
    with building(target, {"v": 1}) as out:
        write_image(out / "train/good/a.png", _img())
    with building(target, {"v": 2}) as out:
        write_image(out / "train/good/b.png", _img())
    assert [p.name for p in (target / "train/good").iterdir()] == ["b.png"]  # no stale files
    assert json.loads((target / "dataset.json").read_text()) == {"v": 2}

    with pytest.raises(RuntimeError), building(target, {"v": 3}) as out:
        write_image(out / "train/good/c.png", _img())
        raise RuntimeError("crash mid-build")
    assert [p.name for p in (target / "train/good").iterdir()] == ["b.png"]  # old data set intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary folder left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("x")
    with pytest.raises(DatasetError, match="not built by diffqc"), building(foreign, {}):
        pass
