"""The contact sheet: one row per data set, good examples then one per defect type."""

from __future__ import annotations

import numpy as np
import pytest

from diffqc.data.images import read_image
from diffqc.data.preview import contact_sheet
from diffqc.data.synth import generate_product


def test_sheet_has_a_row_per_dataset_and_red_mask_rings(tmp_path):
    a = generate_product("moulded_plastic", tmp_path, 2, 2, 4, size=64)
    b = generate_product("brushed_metal", tmp_path, 2, 2, 4, size=64)
    sheet = read_image(contact_sheet([a, b], tmp_path / "p.png", n_good=2, tile=64))
    # 2 good + 4 defect types per row, 2 rows
    assert sheet.shape[1] > 6 * 64 and 2 * 64 < sheet.shape[0] < 3 * 100
    red = (sheet[:, :, 0] > 0.9) & (sheet[:, :, 1] < 0.3) & (sheet[:, :, 2] < 0.3)
    assert red.sum() > 50  # the mask outlines are drawn


def test_nothing_to_preview(tmp_path):
    with pytest.raises(ValueError, match="no data sets"):
        contact_sheet([], tmp_path / "p.png")
    assert not np.any([p.suffix == ".png" for p in tmp_path.iterdir()])
