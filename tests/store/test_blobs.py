"""The file blob store: round trips, every way a reference from a message could read another file,
durable writes, and storage failures as an outage of the store."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time

import pytest
from prometheus_client import REGISTRY

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.store.blobs import TEMP_PREFIX, BlobNotFound, BlobRefused, BlobTooLarge, FileBlobStore
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


def test_a_put_syncs_the_file_before_its_rename_and_each_new_name_after(store, monkeypatch):
    events: list[tuple[str, int]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        events.append(("sync folder" if stat.S_ISDIR(info.st_mode) else "sync file", info.st_ino))
        fsync(fd)

    def recording_replace(source, target) -> None:
        replace(source, target)
        events.append(("rename", os.stat(target).st_ino))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    ref = store.put(b"image bytes", "image/png")
    blob = store.root / "sha256" / ref.sha256[:2] / ref.sha256
    folders = (blob.parent, blob.parent.parent, store.root, store.root.parent)
    inode = {path: path.stat().st_ino for path in (blob, *folders)}
    # The store's folders were new: each was synced into its parent; then the data, the rename, the name.
    assert events == [
        ("sync folder", inode[store.root.parent]),
        ("sync folder", inode[store.root]),
        ("sync folder", inode[blob.parent.parent]),
        ("sync file", inode[blob]),
        ("rename", inode[blob]),
        ("sync folder", inode[blob.parent]),
    ]
    events.clear()
    store.put(b"image bytes", "image/png")  # held already: only its name is synced (its writer may have died)
    assert events == [("sync folder", inode[blob.parent])]


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ESTALE, errno.EACCES], ids=errno.errorcode.get
)
def test_a_failing_storage_is_an_outage_of_the_store_and_leaves_no_temp_file(store, monkeypatch, code):
    name = errno.errorcode[code]
    before = REGISTRY.get_sample_value("diffqc_blob_store_errors_total", {"operation": "write", "error": name}) or 0
    write = os.write

    def failing_write(fd: int, data) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", failing_write)
    data = b"image bytes"
    with pytest.raises(DependencyUnavailable) as failed:
        store.put(data, "image/png")
    folder = store.root / "sha256" / digest(data)[:2]
    assert str(failed.value) == (
        f"blob store at {store.root}: cannot write sha256/{digest(data)[:2]}/{digest(data)}: "
        f"{name} ({os.strerror(code)})"
    )
    assert not [p for p in folder.parent.rglob("*") if p.name.startswith(TEMP_PREFIX)]
    assert REGISTRY.get_sample_value("diffqc_blob_store_errors_total", {"operation": "write", "error": name}) == (
        before + 1
    )

    monkeypatch.setattr(os, "write", write)  # the volume is back: the retry stores the blob
    assert store.get(store.put(data, "image/png")) == data


def test_a_failing_read_is_an_outage_of_the_store_and_a_missing_blob_stays_not_found(store, monkeypatch):
    ref = store.put(b"image bytes", "image/png")
    fstat = os.fstat

    def failing_fstat(fd: int) -> os.stat_result:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fstat", failing_fstat)
    with pytest.raises(DependencyUnavailable, match=f"cannot read sha256/{ref.sha256[:2]}/{ref.sha256}: EIO"):
        store.get(ref)
    monkeypatch.setattr(os, "fstat", fstat)
    with pytest.raises(BlobNotFound):
        store.get_digest(digest(b"never stored"))


def test_a_torn_blob_left_by_a_crash_is_written_again(store):
    ref = store.put(b"the whole image", "image/png")
    blob = store.root / "sha256" / ref.sha256[:2] / ref.sha256
    blob.write_bytes(b"the wh")  # what a crash before this store synced its writes could leave
    assert store.put(b"the whole image", "image/png") == ref
    assert store.get(ref) == b"the whole image"


def test_temp_files_of_writers_that_died_are_removed_when_a_store_starts(store):
    ref = store.put(b"image bytes", "image/png")
    folder = store.root / "sha256" / ref.sha256[:2]
    old, fresh = folder / f"{TEMP_PREFIX}died", folder / f"{TEMP_PREFIX}writing"
    old.write_bytes(b"half an ima")
    fresh.write_bytes(b"a put in progr")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))

    FileBlobStore(store.root)
    assert not old.exists() and fresh.exists()
    assert store.get(ref) == b"image bytes"
    assert store.remove_orphans(older_than_s=0) == 1 and not fresh.exists()
    assert FileBlobStore(store.root.parent / "empty").remove_orphans(older_than_s=0) == 0


def test_a_put_of_a_blob_the_store_holds_restarts_its_age(store):
    ref = store.put(b"image bytes", "image/png")
    blob = store.root / "sha256" / ref.sha256[:2] / ref.sha256
    a_year_ago = time.time() - 365 * 86400
    os.utime(blob, (a_year_ago, a_year_ago))
    (listed,) = store.blobs()
    assert listed.stored_at.timestamp() == pytest.approx(a_year_ago)
    store.put(b"image bytes", "image/png")  # a camera sends the same image again: retention must not take it
    (listed,) = store.blobs()
    assert listed.stored_at.timestamp() > a_year_ago + 364 * 86400


def test_a_store_on_a_read_only_mount_starts_and_reads(tmp_path, monkeypatch):
    """The trainer mounts the blob volume read-only: an old temp file there is not its to clean."""
    store = FileBlobStore(tmp_path)
    ref = store.put(b"image", "image/png")
    stale = store._path(ref.sha256).with_name(f"{TEMP_PREFIX}stale")
    stale.write_bytes(b"x")
    os.utime(stale, (0, 0))
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if mode == os.W_OK else real_access(path, mode))
    monkeypatch.setattr(os, "unlink", lambda path: (_ for _ in ()).throw(OSError(errno.EROFS, "read-only")))
    reader = FileBlobStore(tmp_path)
    assert reader.get(ref) == b"image" and stale.exists()
