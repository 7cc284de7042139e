"""Preprocessing: letterbox geometry, colour, tiles in the blob store, alignment, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from sqlalchemy.orm import Session

from diffqc.core.tiles import tile_windows
from diffqc.data.images import ImageLimits, read_image, write_image
from diffqc.preprocess import (
    FrameImageError,
    Letterbox,
    Preprocessor,
    PreprocessSpec,
    SpecError,
    UnknownProduct,
    decode_image,
    prepare_frame,
    to_channels,
)
from diffqc.store.blobs import BlobNotFound, FileBlobStore, get_array, put_array
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import ProductType
from diffqc.v1.frame_pb2 import Frame


@pytest.fixture
def blobs(tmp_path):
    return FileBlobStore(tmp_path / "blobs")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _frame(blobs, array: np.ndarray, product="pcb", **fields) -> Frame:
    return Frame(
        frame_id="f-1", line_id="L1", product_type=product, image=blobs.put(_png(array), "image/png"), **fields
    )


def _stitch(prepared, blobs) -> np.ndarray:
    shape = prepared.normalized_shape
    out = np.full((shape.channels, shape.height, shape.width), np.nan, dtype=np.float32)
    for tile in prepared.tiles:
        out[:, tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] = get_array(blobs, tile.tensor)
    return out


def test_letterbox_keeps_the_aspect_ratio_and_centres_the_frame():
    box = Letterbox.fit(3000, 4096, 256, 256)  # a 4096x3000 line-scan frame into 256x256
    assert box.scale == pytest.approx(0.0625)
    assert (box.new_w, box.new_h) == (256, 188)  # 3000 * 0.0625 = 187.5 -> 188
    assert (box.pad_left, box.pad_top) == (0, 34)  # (256 - 188) // 2
    # The whole content area maps back onto the whole frame, its first pixel onto the first 16x16.
    assert box.box_to_original(0, 34, 256, 34 + 188) == (0, 0, 4096, 3000)
    assert box.box_to_original(0, 34, 1, 35) == (0, 0, 16, 16)
    assert box.area_to_original(1) == round(4096 / 256 * 3000 / 188)
    tall = Letterbox.fit(200, 100, 128, 128)
    assert (tall.scale, tall.new_h, tall.new_w, tall.pad_top, tall.pad_left) == (0.64, 128, 64, 0, 32)


def test_a_frame_is_resized_padded_converted_and_tiled_into_the_blob_store(blobs):
    rng = np.random.default_rng(0)
    image = (rng.random((200, 300, 3)) * 255).astype(np.uint8)
    spec = PreprocessSpec.from_dict({"height": 128, "width": 128, "channels": 1, "tile": 64, "overlap": 16}, "pcb")
    prepared = prepare_frame(_frame(blobs, image), spec, blobs)

    assert prepared.scale == pytest.approx(128 / 300)
    assert (prepared.pad_left, prepared.pad_top) == (0, 21)  # content 128x85, centred: (128 - 85) // 2
    assert (prepared.normalized_shape.height, prepared.normalized_shape.width, prepared.normalized_shape.channels) == (
        128,
        128,
        1,
    )
    assert prepared.tile_overlap == 16 and not prepared.aligned
    windows = tile_windows(128, 128, 64, 16)
    assert len(prepared.tiles) == len(windows) == 9
    for index, (tile, (y0, x0, h, w)) in enumerate(zip(prepared.tiles, windows, strict=True)):
        assert (tile.index, tile.y, tile.x, tile.height, tile.width) == (index, y0, x0, h, w)
        tensor = get_array(blobs, tile.tensor)
        assert tensor.dtype == np.float32 and tensor.shape == (1, 64, 64)
        assert tile.tensor.media_type == "application/x-npy"
    # The tiles put back together are the normalized image: the resized luma, edge-padded.
    full = _stitch(prepared, blobs)[0]
    assert not np.isnan(full).any() and full.min() >= 0 and full.max() <= 1
    luma = np.asarray(Image.fromarray(image).convert("F").resize((128, 85), Image.Resampling.BILINEAR)) / 255.0
    np.testing.assert_allclose(full[21:106], luma, atol=2e-3)
    np.testing.assert_array_equal(full[:21], np.repeat(full[21:22], 21, axis=0))  # top padding = first row
    np.testing.assert_array_equal(full[106:], np.repeat(full[105:106], 22, axis=0))
    # The frame travels unchanged, its missing shape filled in from the image.
    assert prepared.frame.frame_id == "f-1"
    assert (prepared.frame.shape.height, prepared.frame.shape.width, prepared.frame.shape.channels) == (200, 300, 3)


def test_a_frame_already_in_spec_reaches_the_detector_exactly_as_read_image_reads_it(blobs, tmp_path):
    rng = np.random.default_rng(1)
    path = write_image(tmp_path / "part.png", rng.random((64, 96, 3)).astype(np.float32))
    frame = Frame(frame_id="f-2", product_type="pcb", image=blobs.put(path.read_bytes(), "image/png"))
    spec = PreprocessSpec.from_dict({"height": 64, "width": 96, "channels": 3}, "pcb")
    prepared = prepare_frame(frame, spec, blobs)
    assert len(prepared.tiles) == 1 and prepared.scale == 1.0 and prepared.tile_overlap == 0
    tensor = get_array(blobs, prepared.tiles[0].tensor)
    np.testing.assert_array_equal(tensor, read_image(path).transpose(2, 0, 1))
    # Content-addressed: preparing it again writes the same blob.
    assert prepare_frame(frame, spec, blobs).tiles[0].tensor.sha256 == prepared.tiles[0].tensor.sha256


def test_colour_conversion_both_ways():
    red = np.zeros((2, 2, 3), dtype=np.float32)
    red[..., 0] = 1.0
    assert to_channels(red, 1)[0, 0, 0] == pytest.approx(0.299)
    gray = np.full((2, 2, 1), 0.25, dtype=np.float32)
    np.testing.assert_array_equal(to_channels(gray, 3), np.full((2, 2, 3), 0.25, dtype=np.float32))


def test_alignment_registers_a_shifted_part_onto_its_reference(blobs):
    texture = skdata.brick().astype(np.float32) / 255.0
    reference = texture[100:228, 100:228]
    moved = texture[103:231, 98:226]  # the same part, 3 px up and 2 px right in the camera's view
    spec = PreprocessSpec.from_dict(
        {
            "height": 128,
            "width": 128,
            "channels": 1,
            "align": {"reference": put_array(blobs, reference).uri, "max_shift": 8},
        },
        "pcb",
    )
    frame = _frame(blobs, np.round(moved * 255).astype(np.uint8))
    prepared = prepare_frame(frame, spec, blobs, reference=reference)
    assert prepared.aligned
    aligned = get_array(blobs, prepared.tiles[0].tensor)[0]
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(aligned[inner] - reference[inner]).max() < 0.01  # 8-bit rounding only
    assert np.abs(moved[inner] - reference[inner]).mean() > 0.05  # unaligned, they differ a lot

    too_far = PreprocessSpec.from_dict(
        {**{"height": 128, "width": 128, "channels": 1}, "align": {"reference": "unused", "max_shift": 1}}, "pcb"
    )
    unaligned = prepare_frame(frame, too_far, blobs, reference=reference)
    assert not unaligned.aligned
    np.testing.assert_allclose(get_array(blobs, unaligned.tiles[0].tensor)[0], np.round(moved * 255) / 255, atol=1e-6)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not an image", "not a recognised image format"),
        (_png(np.zeros((32, 32, 3), dtype=np.uint8))[:60], "corrupt or truncated"),
    ],
)
def test_an_unreadable_image_names_the_blob_and_the_problem(blobs, data, reason):
    frame = Frame(frame_id="f-3", product_type="pcb", image=blobs.put(data, "image/png"))
    spec = PreprocessSpec.from_dict({"height": 32, "width": 32, "channels": 3}, "pcb")
    with pytest.raises(FrameImageError) as err:
        prepare_frame(frame, spec, blobs)
    assert frame.image.uri in str(err.value) and reason in str(err.value)


def test_a_decompression_bomb_is_refused_from_its_header():
    with pytest.raises(FrameImageError, match="exceeds the limit"):
        decode_image(_png(np.zeros((100, 100), dtype=np.uint8)), "blob://x", ImageLimits(max_pixels=5000))


def test_a_missing_blob_and_a_shape_mismatch_are_errors(blobs):
    frame = _frame(blobs, np.zeros((32, 32, 3), dtype=np.uint8))
    spec = PreprocessSpec.from_dict({"height": 32, "width": 32, "channels": 3}, "pcb")
    frame.shape.height, frame.shape.width = 40, 32
    with pytest.raises(FrameImageError, match="the frame says 32x40"):
        prepare_frame(frame, spec, blobs)
    frame.image.uri = frame.image.uri[:-6] + "000000"
    with pytest.raises(BlobNotFound):
        prepare_frame(frame, spec, blobs)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "preprocessing spec: empty"),
        ({"height": 64, "width": 64}, "channels: Field required"),
        ({"height": 64, "width": 64, "channels": 2}, "channels: must be 1"),
        ({"height": 64, "width": 0, "channels": 3}, "width: Input should be greater than or equal to 1"),
        ({"height": 64, "width": 64, "channels": 3.5}, "channels: Input should be a valid integer"),
        ({"height": 64, "width": 64, "channels": 3, "tile": 32, "overlap": 32}, "overlap (32) must be smaller"),
        ({"height": 64, "width": 64, "channels": 3, "align": True}, "align: needs a reference"),
        (
            {"height": 64, "width": 64, "channels": 3, "align": {"reference": "r", "upsample": 0}},
            "align.upsample: Input",
        ),
        ({"height": 64, "width": 64, "channels": 3, "size": 3}, "size: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_spec_says_what_is_wrong(spec, message):
    with pytest.raises(SpecError) as err:
        PreprocessSpec.from_dict(spec, "pcb")
    assert "product type 'pcb'" in str(err.value) and message in str(err.value)


def test_the_preprocessor_reads_the_spec_from_postgres_and_refuses_unknown_products(postgres_url, blobs):
    engine = make_engine(postgres_url)
    upgrade(engine)
    reference = np.full((48, 48), 0.5, dtype=np.float32)
    with Session(engine) as session, session.begin():
        session.add(
            ProductType(
                name="pcb",
                preprocessing={"height": 48, "width": 48, "channels": 1, "align": put_array(blobs, reference).uri},
            )
        )
        session.add(ProductType(name="bare", preprocessing={}))
    preprocessor = Preprocessor(engine, blobs)
    prepared = preprocessor.prepare(_frame(blobs, np.full((96, 96, 3), 128, dtype=np.uint8)))
    assert prepared.scale == 0.5 and len(prepared.tiles) == 1 and prepared.aligned
    with pytest.raises(UnknownProduct, match="unknown product type 'bolts'"):
        preprocessor.prepare(_frame(blobs, np.zeros((8, 8, 3), dtype=np.uint8), product="bolts"))
    with pytest.raises(SpecError, match="product type 'bare': preprocessing spec: empty"):
        preprocessor.prepare(_frame(blobs, np.zeros((8, 8, 3), dtype=np.uint8), product="bare"))
    engine.dispose()
