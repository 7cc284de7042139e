"""``diffqc data``: the commands write data sets and a preview, and explain bad arguments."""

from __future__ import annotations

from typer.testing import CliRunner

from diffqc.data.cli import app
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples

runner = CliRunner()


def test_synth_writes_products_and_preview(tmp_path):
    result = runner.invoke(
        app,
        [
            "synth",
            "--out",
            str(tmp_path),
            "--products",
            "pcb,woven_fabric",
            "--n-train",
            "2",
            "--n-test-good",
            "1",
            "--n-test-defect",
            "4",
            "--size",
            "64",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("pcb", "woven_fabric"):
        assert len(list_samples(tmp_path / name, "test")) == 5
    assert read_image(tmp_path / "preview.png").shape[2] == 3


def test_textures_with_explicit_preview_path(tmp_path):
    sheet = tmp_path / "sheets" / "tex.png"
    result = runner.invoke(
        app,
        [
            "textures",
            "--out",
            str(tmp_path),
            "--textures",
            "grass",
            "--n-train",
            "2",
            "--n-test-good",
            "1",
            "--n-test-defect",
            "2",
            "--crop",
            "32",
            "--preview",
            str(sheet),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sheet.is_file() and len(list_samples(tmp_path / "grass", "train")) == 2


def test_unknown_product_is_explained(tmp_path):
    result = runner.invoke(app, ["synth", "--out", str(tmp_path), "--products", "pcb,wood"])
    assert result.exit_code != 0
    assert "unknown product wood" in result.output


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "pcb").mkdir()
    (tmp_path / "pcb" / "mine.txt").write_text("x")
    result = runner.invoke(
        app, ["synth", "--out", str(tmp_path), "--products", "pcb", "--n-train", "1", "--size", "64"]
    )
    assert result.exit_code == 1
    assert "not built by diffqc" in result.output


def test_registered_under_the_main_command():
    from diffqc.cli import app as main

    result = runner.invoke(main, ["data", "--help"])
    assert result.exit_code == 0 and "synth" in result.output and "elpv" in result.output
