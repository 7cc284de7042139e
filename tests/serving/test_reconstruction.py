"""The reconstruction of an inspected frame on demand: prepared as the pipeline prepares it (letterboxed,
tiled by the product's spec), every tile through the served model, stitched and cropped to the heatmap's
geometry; it equals what the in-process detector reconstructs from the same tiles."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import update

from diffqc.core.tiles import stitch
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector.detector import Detector
from diffqc.preprocess import Preprocessor, normalize
from diffqc.preprocess.prepare import cut_tiles
from diffqc.serving.client import InferenceRejected, TritonDetector
from diffqc.serving.reconstruction import reconstruct_frame, reconstruction_png
from diffqc.serving.register import register_version
from diffqc.serving.repository import MODEL_NAME, stage_version
from diffqc.store import db
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.models import ProductType
from tests.helpers.models import TINY_PRODUCT as PRODUCT

# 96x96 normalized, cut into 64x64 tiles overlapping by 32: four tiles, stitched.
TILED = {"height": 96, "width": 96, "tile": 64, "overlap": 32}


@pytest.fixture
def preprocessor(tiny_artifact, tmp_path):
    """The tiny product registered (version 1, as the triton fixture serves it) with a tiled spec."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    stage_version(tiny_artifact[0], tmp_path / "repo")
    register_version(tmp_path / "repo" / MODEL_NAME / "1", engine)
    with db.session(engine, write=True) as session:
        row = session.get(ProductType, PRODUCT)
        session.execute(
            update(ProductType).where(ProductType.name == PRODUCT).values(preprocessing={**row.preprocessing, **TILED})
        )
    yield Preprocessor(engine, FileBlobStore(tmp_path / "blobs"))
    engine.dispose()


def test_a_tiled_letterboxed_frame_is_reconstructed_as_the_in_process_detector_does(
    triton, tiny_artifact, preprocessor
):
    artifact, data = tiny_artifact
    image = read_image(list_samples(data, "test")[0].path)[:48]  # 64 wide, 48 high: letterboxed into 96x96
    with ThreadPoolExecutor(4) as pool:
        served = reconstruct_frame(image, PRODUCT, "1", preprocessor, TritonDetector(triton[0]), pool)

    spec = preprocessor.spec(PRODUCT)
    normalized, box, _ = normalize(image, spec)
    tiles = cut_tiles(normalized, spec)
    assert len(tiles) == 4
    detector = Detector.load(artifact)
    local = [detector.predict(t[None], PRODUCT, return_reconstruction=True).reconstruction[0] for _, t in tiles]
    expected = stitch([w for w, _ in tiles], local, (96, 96), 32).transpose(1, 2, 0)[box.content]
    assert served.shape == (72, 96, 3)  # the padding rows are cropped: the heatmap's pixels
    assert np.abs(served - expected).max() <= 1e-4


def test_the_png_has_the_heatmaps_size_and_a_version_triton_does_not_serve_is_refused(
    triton, tiny_artifact, preprocessor
):
    data = tiny_artifact[1]
    encoded = list_samples(data, "test")[0].path.read_bytes()
    detector = TritonDetector(triton[0], max_attempts=1)
    with ThreadPoolExecutor(4) as pool:
        png = reconstruction_png(encoded, "frame.png", PRODUCT, "1", preprocessor, detector, pool)
        with Image.open(io.BytesIO(png)) as picture:
            assert (picture.format, picture.size, picture.mode) == ("PNG", (96, 96), "RGB")
        with pytest.raises(InferenceRejected, match="7"):
            reconstruction_png(encoded, "frame.png", PRODUCT, "7", preprocessor, detector, pool)
