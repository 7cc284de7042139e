"""The file blob store: round trips, and every way a reference from a message could read another file."""

from __future__ import annotations

import hashlib
import os

import pytest

from diffqc.store.blobs import BlobNotFound, BlobRefused, BlobTooLarge, FileBlobStore
from diffqc.v1.common_pb2 import BlobRef

SECRET = b"the canary: a file outside the blob store"


@pytest.fixture
def store(tmp_path) -> FileBlobStore:
    (tmp_path / "canary").write_bytes(SECRET)
    return FileBlobStore(tmp_path / "blobs")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_and_get_round_trip_by_reference_uri_and_digest(store):
    ref = store.put(b"image bytes", "image/png")
    assert store.put(b"image bytes", "image/png") == ref  # content-addressed: nothing new
    assert ref.uri == (store.root / "sha256" / ref.sha256[:2] / ref.sha256).as_uri()
    assert (ref.sha256, ref.size_bytes, ref.media_type) == (digest(b"image bytes"), 11, "image/png")
    localhost = ref.uri.replace("file:///", "file://localhost/", 1)
    for reference in (ref, ref.uri, localhost, BlobRef(sha256=ref.sha256), BlobRef(uri=ref.uri)):
        assert store.get(reference) == b"image bytes"
    assert store.get_digest(ref.sha256) == store.get(ref, max_bytes=11) == b"image bytes"
    missing = digest(b"never stored")
    with pytest.raises(BlobNotFound, match=f"blob sha256:{missing} does not exist") as absent:
        store.get_digest(missing)
    assert not isinstance(absent.value, BlobRefused)


def test_uris_the_store_did_not_make_are_refused_with_the_reason(store, tmp_path):
    ref = store.put(b"x", "image/png")
    root = store.root.as_uri()
    cases = {
        f"{root}/../canary": "is not a blob URI of the store",
        f"{root}/%2e%2e/canary": "is not a blob URI of the store",
        f"{root}/sha256/%2e%2e/%2e%2e/{ref.sha256[:2]}/{ref.sha256}": "is not a blob URI of the store",
        f"{root}/sha256/{ref.sha256[:2]}/../{ref.sha256[:2]}/{ref.sha256}": "is not a blob URI of the store",
        f"{root}/sha256/00/{ref.sha256}": "is not a blob URI of the store",  # the folder is not the digest's
        f"{root}/../../dev/zero": "is not a blob URI of the store",
        f"{root}/sha256/{ref.sha256[:2]}/{ref.sha256}?x=1": "is not a blob URI of the store",
        f"{root}/sha256/{ref.sha256[:2]}/{ref.sha256.upper()}": "is not a blob URI of the store",
        (tmp_path / "canary").as_uri(): "is not a blob URI of the store",
        ref.uri.replace("file:///", "file://evil.example/", 1): "names host 'evil.example'",
        ref.uri.replace("file://", "http://", 1): "is not a file:// URI",
        ref.uri.replace("file://", "s3://", 1): "is not a file:// URI",
        str(store.root / "sha256" / ref.sha256[:2] / ref.sha256): "is not a file:// URI",  # a bare path
        "": "is not a file:// URI",
    }
    for uri, reason in cases.items():
        for reference in (uri, BlobRef(uri=uri)):
            with pytest.raises(BlobRefused, match=reason) as refused:
                store.get(reference)
            assert repr(uri[:300]) in str(refused.value), uri


def test_a_digest_must_be_64_lowercase_hex_and_agree_with_the_uri(store):
    a, b = store.put(b"a", "image/png"), store.put(b"b", "image/png")
    with pytest.raises(BlobRefused, match=f"{a.uri!r} does not name the blob of its sha256 {b.sha256}"):
        store.get(BlobRef(uri=a.uri, sha256=b.sha256))
    for bad in ("../../canary", a.sha256.upper(), a.sha256[:63], a.sha256 + "0", "0" * 63 + "g"):
        with pytest.raises(BlobRefused, match="is not 64 lowercase hex digits"):
            store.get_digest(bad)
        with pytest.raises(BlobRefused, match="is not 64 lowercase hex digits"):
            store.get(BlobRef(uri=a.uri, sha256=bad))


def test_symlinks_fifos_and_tampered_blobs_are_refused(store, tmp_path):
    d = digest(SECRET)  # the canary's own digest: only the symlink gives it away
    folder = store.root / "sha256" / d[:2]
    folder.mkdir(parents=True)
    (folder / d).symlink_to(tmp_path / "canary")
    with pytest.raises(BlobRefused, match=f"blob sha256:{d}: its path under .* goes through a symlink"):
        store.get_digest(d)
    (folder / d).unlink()
    folder.rmdir()

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / d).write_bytes(SECRET)
    folder.symlink_to(outside)  # a symlinked folder between the root and the blob
    with pytest.raises(BlobRefused, match="goes through a symlink"):
        store.get((store.root / "sha256" / d[:2] / d).as_uri())
    folder.unlink()

    fifo = digest(b"a fifo")
    (store.root / "sha256" / fifo[:2]).mkdir()
    os.mkfifo(store.root / "sha256" / fifo[:2] / fifo)  # opening it must not block the reader
    with pytest.raises(BlobRefused, match=f"blob sha256:{fifo} is not a regular file"):
        store.get_digest(fifo)

    ref = store.put(b"the original", "image/png")
    (store.root / "sha256" / ref.sha256[:2] / ref.sha256).write_bytes(b"the original, altered")
    with pytest.raises(BlobRefused, match=f"blob {ref.uri} is corrupt or tampered with: its bytes hash to "):
        store.get(ref)


def test_a_symlinked_sha256_folder_is_refused(store, tmp_path):
    d = digest(SECRET)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / d[:2]).mkdir(parents=True)
    (elsewhere / d[:2] / d).write_bytes(SECRET)
    store.root.mkdir()
    (store.root / "sha256").symlink_to(elsewhere)
    with pytest.raises(BlobRefused, match="goes through a symlink"):
        store.get(BlobRef(sha256=d))


def test_a_blob_over_the_readers_limit_is_refused_before_it_is_read(store):
    ref = store.put(b"x" * 1000, "image/png")
    assert store.get(ref, max_bytes=1000) == b"x" * 1000
    with pytest.raises(BlobTooLarge, match=f"blob {ref.uri} is 1000 bytes, over the limit of 999 bytes"):
        store.get(ref, max_bytes=999)
    with pytest.raises(BlobTooLarge, match="over the limit of 10 bytes"):
        store.get_digest(ref.sha256, max_bytes=10)
