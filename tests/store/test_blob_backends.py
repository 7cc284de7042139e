"""The blob store's contract on both backends, the file store and the S3 store (against moto's S3 server
over HTTP): round trips, idempotent puts, missing blobs, size limits, references of another store
refused; the S3 store's bucket, its outages and the errors S3 answers; the factory the services use."""

from __future__ import annotations

import hashlib
import shutil
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from diffqc.core import clock
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import BlobSettings, ServiceSettings, Settings, SettingsError
from diffqc.store.blobs import BlobNotFound, BlobRefused, BlobStore, BlobTooLarge, FileBlobStore, make_blob_store
from diffqc.store.s3_blobs import S3BlobStore
from diffqc.v1.common_pb2 import BlobRef

CREDENTIALS = {"access_key_id": "test", "secret_access_key": "test"}


def new_bucket() -> str:
    return f"blobs-{uuid.uuid4().hex[:16]}"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path) -> BlobStore:
    if request.param == "file":
        return FileBlobStore(tmp_path / "blobs")
    s3 = S3BlobStore(new_bucket(), endpoint_url=request.getfixturevalue("s3_endpoint"), **CREDENTIALS)
    s3.ensure_bucket()
    return s3


def test_a_put_is_idempotent_and_a_get_reads_by_reference_uri_or_digest(store):
    ref = store.put(b"image bytes", "image/png")
    assert store.put(b"image bytes", "image/png") == ref  # content-addressed: the same reference
    assert (ref.sha256, ref.size_bytes, ref.media_type) == (digest(b"image bytes"), 11, "image/png")
    assert ref.uri == store.uri_of(ref.sha256) and ref.uri.endswith(f"/sha256/{ref.sha256[:2]}/{ref.sha256}")
    for reference in (ref, ref.uri, BlobRef(sha256=ref.sha256), BlobRef(uri=ref.uri)):
        assert store.get(reference) == b"image bytes"
    assert store.get_digest(ref.sha256) == b"image bytes"
    assert [(b.sha256, b.size_bytes) for b in store.blobs()] == [(ref.sha256, 11)]


def test_a_missing_blob_is_not_found_rather_than_refused(store):
    missing = digest(b"never stored")
    with pytest.raises(BlobNotFound, match=f"blob sha256:{missing} does not exist") as absent:
        store.get_digest(missing)
    assert not isinstance(absent.value, BlobRefused)
    with pytest.raises(BlobNotFound):
        store.get(store.uri_of(missing))


def test_a_blob_over_the_readers_limit_is_refused(store):
    ref = store.put(b"x" * 1000, "image/png")
    assert store.get(ref, max_bytes=1000) == b"x" * 1000
    with pytest.raises(BlobTooLarge, match=f"blob {ref.uri} is 1000 bytes, over the limit of 999 bytes"):
        store.get(ref, max_bytes=999)
    with pytest.raises(BlobTooLarge, match="over the limit of 10 bytes"):
        store.get_digest(ref.sha256, max_bytes=10)


def test_a_reference_of_another_backend_or_bucket_or_a_doctored_one_is_refused(store, tmp_path):
    ref = store.put(b"x", "image/png")
    key = f"sha256/{ref.sha256[:2]}/{ref.sha256}"
    other_backend = (
        (f"s3://diffqc-blobs/{key}", "is not a file:// URI")
        if isinstance(store, FileBlobStore)
        else ((tmp_path / "blobs" / key).as_uri(), "is not an s3:// URI")
    )
    prefix = ref.uri.removesuffix(key)
    cases = [
        other_backend,
        (f"{prefix}sha256/00/{ref.sha256}", "is not a blob URI of the store"),  # not the digest's folder
        (f"{prefix}sha256/{ref.sha256[:2]}/../{ref.sha256[:2]}/{ref.sha256}", "is not a blob URI of the store"),
        (f"{prefix}sha256/%2e%2e/{ref.sha256[:2]}/{ref.sha256}", "is not a blob URI of the store"),
        (f"{ref.uri}?versionId=1", "is not a blob URI of the store"),
        (ref.uri.replace("/sha256/", "/other/", 1), "is not a blob URI of the store"),
        ("", "is not a"),
    ]
    if isinstance(store, S3BlobStore):
        cases.append((f"s3://another-bucket/{key}", "names bucket 'another-bucket'"))
    for uri, reason in cases:
        for reference in (uri, BlobRef(uri=uri)):
            with pytest.raises(BlobRefused, match=reason):
                store.get(reference)
    with pytest.raises(BlobRefused, match="does not name the blob of its sha256"):
        store.get(BlobRef(uri=ref.uri, sha256=digest(b"y")))


def test_a_deleted_blob_is_gone_and_deleting_it_again_is_harmless(store):
    kept, dropped = store.put(b"kept", "image/png"), store.put(b"dropped", "image/png")
    store.delete(dropped.sha256)
    store.delete(dropped.sha256)
    with pytest.raises(BlobNotFound):
        store.get(dropped)
    assert store.get(kept) == b"kept"
    assert [b.sha256 for b in store.blobs()] == [kept.sha256]
    (listed,) = store.blobs()
    assert abs(listed.stored_at - clock.now()) < timedelta(hours=1)  # aware UTC, the time of the put


# ---- S3 -----------------------------------------------------------------------------------------


def test_the_bucket_is_created_at_start_and_shared_by_every_node(s3_endpoint):
    bucket = new_bucket()
    node_a = S3BlobStore(bucket, endpoint_url=s3_endpoint, **CREDENTIALS)
    node_b = S3BlobStore(bucket, endpoint_url=s3_endpoint, **CREDENTIALS)
    node_a.ensure_bucket()
    node_b.ensure_bucket()  # the bucket exists: nothing to do
    ref = node_a.put(b"an image", "image/png")
    assert node_b.get(ref.uri) == b"an image"


def test_a_blob_altered_in_the_bucket_is_refused(s3_endpoint):
    store = S3BlobStore(new_bucket(), endpoint_url=s3_endpoint, **CREDENTIALS)
    store.ensure_bucket()
    ref = store.put(b"the original", "image/png")
    key = f"sha256/{ref.sha256[:2]}/{ref.sha256}"
    store._s3.put_object(Bucket=store.bucket, Key=key, Body=b"the original, altered")
    with pytest.raises(BlobRefused, match=f"blob {ref.uri} is corrupt or tampered with"):
        store.get(ref)


def test_bad_s3_settings_are_settings_errors_naming_the_variable():
    with pytest.raises(SettingsError, match="DIFFQC_BLOBS_S3_BUCKET: 'Blobs_1' is not an S3 bucket name"):
        S3BlobStore("Blobs_1", endpoint_url="http://127.0.0.1:9", **CREDENTIALS)
    with pytest.raises(SettingsError, match="DIFFQC_BLOBS_S3_ENDPOINT_URL: Invalid endpoint: minio:9000"):
        S3BlobStore("diffqc-blobs", endpoint_url="minio:9000", **CREDENTIALS)
    with pytest.raises(SettingsError, match="DIFFQC_BLOBS_S3_ACCESS_KEY_ID and DIFFQC_BLOBS_S3_SECRET_ACCESS_KEY"):
        S3BlobStore("diffqc-blobs", endpoint_url="http://127.0.0.1:9", access_key_id="only-the-id")


def errors(operation: str, error: str) -> float:
    return REGISTRY.get_sample_value("diffqc_blob_store_errors_total", {"operation": operation, "error": error}) or 0


def test_an_s3_server_that_stops_is_an_outage_of_the_store_and_no_client_error_leaks():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    store = S3BlobStore(new_bucket(), endpoint_url=f"http://{host}:{port}", **CREDENTIALS)
    store.ensure_bucket()
    ref = store.put(b"stored before the outage", "image/png")
    server.stop()
    before = errors("read", "EndpointConnectionError")
    operations = {
        "put": lambda: store.put(b"during the outage", "image/png"),
        "get": lambda: store.get(ref),
        "get_digest": lambda: store.get_digest(ref.sha256),
        "list": lambda: list(store.blobs()),
        "delete": lambda: store.delete(ref.sha256),
        "bucket": store.ensure_bucket,
    }
    for operation in operations.values():
        with pytest.raises(DependencyUnavailable, match=f"blob store s3://{store.bucket} at http://{host}:{port}"):
            operation()
    assert errors("read", "EndpointConnectionError") == before + 2


class _Answer(BaseHTTPRequestHandler):
    """Answers every request with one S3 error (the status and code the test sets)."""

    status, code = 503, "SlowDown"

    def _answer(self) -> None:
        body = f"<Error><Code>{self.code}</Code><Message>told to fail</Message></Error>".encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_s3() -> Iterator[tuple[str, type[_Answer]]]:
    answer = type("Answer", (_Answer,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answer
    server.shutdown()
    thread.join()


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, "AccessDenied"), (403, "InvalidAccessKeyId"), (503, "SlowDown"), (500, "InternalError")],
)
def test_refused_credentials_throttling_and_server_errors_are_outages_counted_by_code(failing_s3, status, code):
    endpoint, answer = failing_s3
    answer.status, answer.code = status, code
    store = S3BlobStore("diffqc-blobs", endpoint_url=endpoint, attempts=1, **CREDENTIALS)
    refused = REGISTRY.get_sample_value("diffqc_credentials_refused_total", {"dependency": "blob store"}) or 0
    before = errors("write", code), errors("read", code)
    with pytest.raises(DependencyUnavailable, match=f"cannot write sha256/.*: {code} \\(HTTP {status}\\)"):
        store.put(b"an image", "image/png")
    with pytest.raises(DependencyUnavailable, match=f"cannot read sha256/.*: {code} \\(HTTP {status}\\)"):
        store.get_digest(digest(b"an image"))
    assert (errors("write", code), errors("read", code)) == (before[0] + 1, before[1] + 1)
    after = REGISTRY.get_sample_value("diffqc_credentials_refused_total", {"dependency": "blob store"}) or 0
    assert after == refused + (2 if status == 403 else 0)


# ---- the factory --------------------------------------------------------------------------------


def test_the_factory_builds_the_s3_store_the_settings_name_and_creates_its_bucket(s3_endpoint):
    bucket = new_bucket()
    settings = Settings(
        blobs=BlobSettings(
            backend="s3",
            s3_endpoint_url=s3_endpoint,
            s3_bucket=bucket,
            s3_access_key_id="test",
            s3_secret_access_key="test",
        )
    )
    store = make_blob_store(settings)
    assert isinstance(store, S3BlobStore) and store.bucket == bucket
    assert store.get(store.put(b"an image", "image/png").uri) == b"an image"


def test_the_factory_waits_for_an_s3_store_that_does_not_answer_then_names_it():
    settings = Settings(
        blobs=BlobSettings(
            backend="s3", s3_endpoint_url="http://127.0.0.1:9", s3_access_key_id="test", s3_secret_access_key="test"
        ),
        service=ServiceSettings(startup_timeout_s=0.1),
    )
    with pytest.raises(DependencyUnavailable, match="blob store at http://127.0.0.1:9 is unavailable after"):
        make_blob_store(settings)


def test_the_factory_names_the_missing_s3_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffqc.store.s3_blobs", None)  # as if boto3 were not installed
    with pytest.raises(SettingsError, match=r"DIFFQC_BLOBS_BACKEND=s3 needs the s3 extra .*pip install 'diffqc\[s3\]'"):
        make_blob_store(Settings(blobs=BlobSettings(backend="s3")))


def test_the_file_store_exports_the_use_of_its_volume(tmp_path, monkeypatch):
    store = make_blob_store(Settings(blob_root=tmp_path / "blobs"))
    assert isinstance(store, FileBlobStore)
    store.put(b"x", "image/png")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1000, 420, 580))
    assert REGISTRY.get_sample_value("diffqc_blob_volume_used_ratio") == 0.42
