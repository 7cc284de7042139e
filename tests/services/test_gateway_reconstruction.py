"""The review page's reconstruction at the gateway (the real uvicorn process, Postgres, blob store and a real
Triton): a viewer gets the reconstruction of an inspected frame by the version that judged it, in the
heatmap's geometry; what cannot be reconstructed is refused naming why (not inspected, version not served,
image pruned, Triton down); computing more at once than the setting allows is refused with 429."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import select, update

from diffqc.data.mvtec import list_samples
from diffqc.infra.postgres import throwaway_database
from diffqc.serving.register import register_version
from diffqc.serving.repository import MODEL_NAME, stage_version
from diffqc.settings import Settings
from diffqc.store import db
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Frame, Inspection, Verdict
from services.gateway.errors import ApiError
from services.gateway.reconstruction import Reconstructions
from tests.helpers.gateway_stack import VIEWER_KEY, gateway_alone
from tests.helpers.inspections import add_inspection, add_product
from tests.helpers.models import TINY_PRODUCT as PRODUCT

pytestmark = pytest.mark.timeout(180)
PATH = "/api/inspection/{}/reconstruction.png"


def _stored_verdicts(database_url: str, root: Path, artifact: Path, image: bytes) -> None:
    """The tiny product registered as Triton serves it (version 1) and verdicts of it: one by version 1, one
    by a version Triton does not serve, one whose image is gone, one not inspected."""
    engine = make_engine(database_url)
    upgrade(engine)
    stage_version(artifact, root / "repo")
    register_version(root / "repo" / MODEL_NAME / "1", engine)
    add_product(engine, PRODUCT, version="7")
    blobs = FileBlobStore(root / "blobs")
    add_inspection(engine, blobs, "r-judged", 0.9, product=PRODUCT, image=image, index=1)
    add_inspection(engine, blobs, "r-unserved", 0.9, product=PRODUCT, version="7", image=image, index=2)
    add_inspection(engine, None, "r-pruned", 0.9, product=PRODUCT, image=image, index=3)
    add_inspection(engine, blobs, "r-not-inspected", 0.9, product=PRODUCT, image=image, index=4)
    with db.session(engine, write=True) as session:
        session.execute(
            update(Inspection)
            .where(Inspection.id == "r-not-inspected")
            .values(verdict=Verdict.NOT_INSPECTED, not_inspected_reason="dead-lettered")
        )
    engine.dispose()


@pytest.fixture(scope="module")
def image(tiny_artifact) -> bytes:
    return list_samples(tiny_artifact[1], "test")[0].path.read_bytes()


def test_a_viewer_sees_the_reconstruction_and_what_cannot_be_reconstructed_is_named(
    triton, tiny_artifact, image, tmp_path
):
    settings, _ = triton
    with gateway_alone(tmp_path, {"DIFFQC_TRITON_GRPC_URL": settings.grpc_url}) as (url, database_url):
        _stored_verdicts(database_url, tmp_path, tiny_artifact[0], image)
        with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": VIEWER_KEY}) as viewer:
            listed = viewer.get("/api/inspection/result/r-judged").json()
            assert listed["reconstruction_url"] == PATH.format("r-judged")
            response = viewer.get(listed["reconstruction_url"])
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "image/png"
            with Image.open(io.BytesIO(response.content)) as picture:
                assert picture.size == (64, 64)  # the tiny product's normalized geometry, as its heatmap
            assert viewer.get(PATH.format("r-judged")).content == response.content  # the same picture again

            refused = {name: viewer.get(PATH.format(name)) for name in ("r-unserved", "r-pruned", "r-not-inspected")}
            assert refused["r-unserved"].status_code == 409
            assert "model version '7' cannot reconstruct" in refused["r-unserved"].json()["detail"]
            assert refused["r-pruned"].status_code == 404
            assert "gone from the blob store" in refused["r-pruned"].json()["detail"]
            assert refused["r-not-inspected"].status_code == 409
            assert "not inspected (dead-lettered)" in refused["r-not-inspected"].json()["detail"]
            assert viewer.get("/api/inspection/result/r-not-inspected").json()["reconstruction_url"] is None
            assert viewer.get(PATH.format("nobody")).status_code == 404
        assert httpx.get(url + PATH.format("r-judged")).status_code == 401


def test_triton_down_is_a_503_naming_it(tiny_artifact, image, tmp_path):
    with gateway_alone(tmp_path, {"DIFFQC_TRITON_GRPC_URL": "127.0.0.1:1"}) as (url, database_url):
        _stored_verdicts(database_url, tmp_path, tiny_artifact[0], image)
        response = httpx.get(url + PATH.format("r-judged"), headers={"X-API-Key": VIEWER_KEY}, timeout=60)
    assert response.status_code == 503
    assert "Triton at 127.0.0.1:1 unavailable" in response.json()["detail"]


def test_more_reconstructions_at_once_than_the_setting_allows_are_refused_with_429(
    triton, tiny_artifact, image, tmp_path
):
    with throwaway_database() as database_url:
        _stored_verdicts(database_url, tmp_path, tiny_artifact[0], image)
        engine = make_engine(database_url)
        settings = Settings(triton={"grpc_url": triton[0].grpc_url}, gateway={"reconstructions_at_once": 1})
        reconstructions = Reconstructions(settings, engine, FileBlobStore(tmp_path / "blobs"))
        try:
            with db.session(engine) as session:
                frame_sha = session.scalar(select(Frame.image_sha256).where(Frame.id == "frame-r-judged"))
            args = (frame_sha, "frame.png", PRODUCT, "1")
            assert reconstructions.slots.acquire(blocking=False)  # one being computed
            with pytest.raises(ApiError) as busy:
                reconstructions.png(*args)
            assert busy.value.status_code == 429 and busy.value.headers == {"Retry-After": "5"}
            reconstructions.slots.release()
            assert reconstructions.png(*args).startswith(b"\x89PNG")
        finally:
            reconstructions.close()
            engine.dispose()
