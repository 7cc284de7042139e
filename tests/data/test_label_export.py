"""`diffqc labels export` against a real PostgreSQL database and blob store: good parts (confirmed good and
false alarms) in test/good, defects (confirmed and missed) in test/<class>, the camera's bytes under names
made from the inspection id alone, a manifest of who labelled what; a frame whose image is gone is left
out and named, and an ambiguous or empty export is refused naming why."""

from __future__ import annotations

import csv
import io
import json
import zlib

import pytest
from PIL import Image
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.data.label_export import file_stem
from diffqc.data.mvtec import has_masks, list_samples
from diffqc.store import db, labels
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from tests.helpers.inspections import add_inspection, add_product, png


@pytest.fixture
def store(postgres_url, tmp_path):
    engine = make_engine(postgres_url)
    upgrade(engine)
    add_product(engine, "pcb")
    add_product(engine, "can")
    yield engine, FileBlobStore(tmp_path / "blobs")
    engine.dispose()


@pytest.fixture
def export(postgres_url, tmp_path):
    def export(*args: str):
        env = {"DIFFQC_DATABASE_URL": postgres_url, "DIFFQC_BLOB_ROOT": str(tmp_path / "blobs")}
        return CliRunner().invoke(app, ["labels", "export", *args], env=env)

    return export


def _label(engine, inspection: str, kind: str, defect_class: str | None = None, note: str = "", actor: str = "anna"):
    with db.session(engine, write=True) as session:
        labels.set_label(session, inspection, kind, defect_class, note, actor)


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png(7))).convert("RGB").save(out, format="JPEG")
    return out.getvalue()


def test_good_parts_and_defects_land_in_their_folders_with_a_manifest(store, export, tmp_path):
    engine, blobs = store
    add_inspection(engine, blobs, "alarm", 0.7, index=1)
    add_inspection(engine, blobs, "miss", 0.3, index=2)
    add_inspection(engine, blobs, "caught", 0.9, index=3, image=_jpeg())
    add_inspection(engine, blobs, "fine", 0.1, index=4)
    add_inspection(engine, blobs, "unlabelled", 0.2, index=5)
    _label(engine, "alarm", "false_alarm", None, '=HYPERLINK("http://x")')
    _label(engine, "miss", "missed_defect", "bent_pin", actor="=cmd|' /C calc'!A0")
    _label(engine, "caught", "confirmed_defect", "scratch")
    _label(engine, "fine", "confirmed_good")

    out = tmp_path / "set"
    result = export("--out", str(out))  # one product labelled: no --product needed
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"exported 4 labelled frames of pcb to {out}: bent_pin 1, good 2, scratch 1"
    samples = list_samples(out, "test")
    assert [(s.defect_type, s.path.name) for s in samples] == [
        ("good", f"{file_stem('alarm')}.png"),
        ("good", f"{file_stem('fine')}.png"),
        ("bent_pin", f"{file_stem('miss')}.png"),
        ("scratch", f"{file_stem('caught')}.jpg"),  # the camera's JPEG, as it was sent
    ]
    assert not has_masks(samples) and not (out / "ground_truth").exists()
    assert (out / "test" / "good" / f"{file_stem('alarm')}.png").read_bytes() == png(zlib.crc32(b"alarm"))

    with (out / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["inspection_id"], r["kind"], r["defect_class"], r["verdict"]) for r in rows] == [
        ("alarm", "false_alarm", "", "defect"),
        ("caught", "confirmed_defect", "scratch", "defect"),
        ("fine", "confirmed_good", "", "pass"),
        ("miss", "missed_defect", "bent_pin", "pass"),
    ]
    assert rows[3]["labelled_by"] == "'=cmd|' /C calc'!A0"  # a spreadsheet shows it, never runs it
    assert "note" not in rows[0]  # free text stays out of the CSV
    records = json.loads((out / "labels.json").read_text())
    assert records[0]["note"] == '=HYPERLINK("http://x")' and records[0]["labelled_at"]
    manifest = json.loads((out / "dataset.json").read_text())
    assert (manifest["product_type"], manifest["samples"], manifest["missing"]) == (
        "pcb",
        {"bent_pin": 1, "good": 2, "scratch": 1},
        [],
    )

    # A later export replaces the earlier one: a relabelled part moves, nothing stale stays.
    _label(engine, "caught", "false_alarm")
    assert export("--out", str(out)).exit_code == 0
    assert sorted(p.name for p in (out / "test").iterdir()) == ["bent_pin", "good"]


def test_a_frame_whose_image_is_gone_is_named_and_the_others_are_exported(store, export, tmp_path):
    engine, blobs = store
    add_inspection(engine, blobs, "kept", 0.9, index=1)
    add_inspection(engine, None, "gone", 0.8, index=2)  # its image never reached this blob store
    _label(engine, "kept", "confirmed_defect", "scratch")
    _label(engine, "gone", "confirmed_defect", "scratch")
    out = tmp_path / "set"
    result = export("--out", str(out))
    assert result.exit_code == 0, result.output
    assert "left out inspection gone: " in result.output
    assert [s.path.name for s in list_samples(out, "test")] == [f"{file_stem('kept')}.png"]
    (missing,) = json.loads((out / "dataset.json").read_text())["missing"]
    assert (missing["inspection_id"], missing["frame_id"]) == ("gone", "frame-gone")


def test_file_names_come_from_the_inspection_id_made_safe(store, export, tmp_path):
    engine, blobs = store
    hostile = "../../etc/passwd .ü"
    add_inspection(engine, blobs, hostile, 0.9, index=1)
    _label(engine, hostile, "confirmed_defect", "scratch")
    out = tmp_path / "set"
    assert export("--out", str(out)).exit_code == 0
    (sample,) = list_samples(out, "test")
    assert sample.path.parent == out / "test" / "scratch"
    assert sample.path.name.startswith("______etc_passwd___-") and sample.path.name == f"{file_stem(hostile)}.png"
    assert file_stem("a/b") != file_stem("a_b")  # the hash keeps two ids apart


def test_an_ambiguous_or_empty_export_is_refused_naming_why(store, export, tmp_path):
    engine, blobs = store
    out = tmp_path / "set"
    empty = export("--out", str(out), "--product", "pcb")
    assert (empty.exit_code, empty.output.strip()) == (1, "no labelled inspections of product type 'pcb' to export")
    add_inspection(engine, blobs, "p", 0.9, index=1)
    add_inspection(engine, blobs, "c", 0.9, product="can", index=2)
    _label(engine, "p", "confirmed_defect", "scratch")
    _label(engine, "c", "false_alarm")
    several = export("--out", str(out))
    assert several.exit_code == 2
    assert "labels of 2 product types (can, pcb): an MVTec data set holds one, choose it with --product" in (
        several.output
    )
    assert not out.exists()
    assert export("--out", str(out), "--product", "can", "--line", "L1").exit_code == 0
    assert [s.defect_type for s in list_samples(out, "test")] == ["good"]

    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    refused = export("--out", str(foreign), "--product", "pcb")
    assert refused.exit_code == 2 and "was not built by diffqc" in refused.output
    assert (foreign / "holiday.jpg").read_bytes() == b"x"
