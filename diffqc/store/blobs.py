"""The blob store for images, tensors and anomaly maps (events carry references, never bytes).

Content-addressed: a blob's key is the SHA-256 of its bytes, so storing the same image twice
(a camera retrying a frame) writes nothing new and yields the same reference. ``BlobStore`` is
the interface both backends implement: ``FileBlobStore`` (a folder, the default) and
``S3BlobStore`` (diffqc.store.s3_blobs: a bucket that several nodes share); ``make_blob_store``
builds the one the settings name (``DIFFQC_BLOBS_BACKEND``). A put of a blob the store holds
already counts as storing it again: its age (what retention goes by) starts over.

References arrive in messages that other parties can write (a camera's ``frame.image``), so a
read never follows a path taken from them: a reference resolves to a digest (its ``sha256``, or
the digest its URI names when that URI is exactly one this store made) and the store reads its
own file for that digest, refusing symlinks on the way, anything but a regular file, a blob over
the caller's size limit (before reading it) and bytes whose SHA-256 is not the digest.

A put is durable when it returns (ingestion acknowledges a frame once its image is stored): the
bytes go to a temp file in the blob's folder, synced, renamed over the blob's name, and the
folder synced, so a crash leaves the whole blob or none of it, never a torn one. Temp files of
writers that died are removed when a store starts. The storage failing (disk full, I/O error,
read-only or stale volume, permissions) raises DependencyUnavailable naming the errno: a stage
then waits for the store as for any dependency instead of dead-lettering the message.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.runtime.metrics import BLOB_STORE_ERRORS, BLOB_VOLUME_USED
from diffqc.settings import Settings, SettingsError
from diffqc.v1.common_pb2 import BlobRef

log = logging.getLogger(__name__)
NPY = "application/x-npy"
DIGEST = re.compile(r"[0-9a-f]{64}")
TEMP_PREFIX = ".tmp-"  # never the start of a digest
ORPHAN_AGE_S = 3600.0  # a temp file this old has no live writer: a put takes seconds at most


class BlobNotFound(KeyError):
    """A reference points at a blob that the store does not hold."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


class BlobRefused(BlobNotFound):
    """A reference the store will not follow: not one of its own, a symlink, a tampered blob."""


class BlobTooLarge(BlobRefused):
    """The blob is larger than the reader's limit; nothing of it was read."""


@dataclass(frozen=True)
class StoredBlob:
    """One blob as a store lists it: its digest, its size and when it was last put (aware UTC)."""

    sha256: str
    size_bytes: int
    stored_at: datetime


class BlobStore(Protocol):
    """A store fails as a dependency: DependencyUnavailable when its storage does (never the message's fault)."""

    def put(self, data: bytes, media_type: str) -> BlobRef: ...

    def get(self, ref: BlobRef | str, max_bytes: int | None = None) -> bytes: ...

    def get_digest(self, sha256: str, max_bytes: int | None = None) -> bytes: ...

    def uri_of(self, sha256: str) -> str:
        """The URI ``put`` gives the blob of ``sha256``."""
        ...

    def blobs(self) -> Iterator[StoredBlob]:
        """Every blob the store holds, in no particular order (retention walks them)."""
        ...

    def delete(self, sha256: str) -> None:
        """Remove the blob of ``sha256``; nothing when the store does not hold it."""
        ...


def checked_digest(sha256: str, where: str) -> str:
    """``sha256`` when it is 64 lowercase hex digits; BlobRefused naming ``where`` otherwise."""
    if not DIGEST.fullmatch(sha256):
        raise BlobRefused(f"{where}: sha256 {sha256[:80]!r} is not 64 lowercase hex digits")
    return sha256


class ContentAddressed:
    """Reading by reference, shared by the backends: a store names each blob by the SHA-256 of its bytes
    (``digest_of`` a URI) and reads it by digest (``_read``)."""

    def digest_of(self, uri: str) -> str:
        raise NotImplementedError

    def _read(self, digest: str, max_bytes: int | None, name: str) -> bytes:
        raise NotImplementedError

    def get(self, ref: BlobRef | str, max_bytes: int | None = None) -> bytes:
        """The bytes of ``ref``: read by its ``sha256`` when it has one (its URI, if any, must name the
        same blob), else by the digest its URI names. Raises BlobNotFound, or BlobRefused naming the reason."""
        if isinstance(ref, BlobRef) and ref.sha256:
            digest = checked_digest(ref.sha256, ref.uri or "blob reference")
            if ref.uri and self.digest_of(ref.uri) != digest:
                raise BlobRefused(f"{ref.uri!r} does not name the blob of its sha256 {digest}")
            return self._read(digest, max_bytes, ref.uri or f"sha256:{digest}")
        uri = ref.uri if isinstance(ref, BlobRef) else ref
        return self._read(self.digest_of(uri), max_bytes, uri)

    def get_digest(self, sha256: str, max_bytes: int | None = None) -> bytes:
        """The bytes of the blob whose SHA-256 is ``sha256`` (64 lowercase hex digits)."""
        return self._read(checked_digest(sha256, "blob"), max_bytes, f"sha256:{sha256}")


class FileBlobStore(ContentAddressed):
    """Blobs as files under ``root/sha256/<2 hex>/<64 hex>``, written atomically and durably (module doc)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        if os.access(self.root, os.W_OK):  # a read-only mount (the trainer's) has no writes of its own to clean
            self.remove_orphans(ORPHAN_AGE_S)

    def _path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def uri_of(self, sha256: str) -> str:
        return self._path(sha256).as_uri()

    def put(self, data: bytes, media_type: str) -> BlobRef:
        """Store ``data`` (nothing new when the store holds it already); on disk when this returns.
        Raises DependencyUnavailable when the storage fails."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        try:
            if _holds(path, len(data)):
                os.utime(path, follow_symlinks=False)  # put again: retention counts its age from now
                _sync_folder(path.parent)  # its writer (another replica) may not have synced the name yet
            else:
                self._write(path, data)
        except OSError as exc:
            raise self._unavailable("write", path, exc) from exc
        return BlobRef(uri=path.as_uri(), sha256=digest, media_type=media_type, size_bytes=len(data))

    def _write(self, path: Path, data: bytes) -> None:
        for folder in (self.root, path.parent.parent, path.parent):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                _sync_folder(folder.parent)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX)
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)  # readers, and a restart after a crash, see the whole blob or none
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _sync_folder(path.parent)  # the new name survives a crash too

    def remove_orphans(self, older_than_s: float) -> int:
        """Delete the temp files of writes that never finished (their writer died) that are older than
        ``older_than_s`` seconds; return how many. Younger ones may belong to a put in progress."""
        cutoff, removed = time.time() - older_than_s, 0
        folders = self.root / "sha256"
        try:
            for prefix in [entry.path for entry in _entries(folders) if entry.is_dir(follow_symlinks=False)]:
                for entry in _entries(prefix):
                    if entry.name.startswith(TEMP_PREFIX):
                        with contextlib.suppress(FileNotFoundError):  # another replica removed it first
                            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                                os.unlink(entry.path)
                                removed += 1
        except OSError as exc:
            raise self._unavailable("clean", folders, exc) from exc
        if removed:
            log.info("removed %d temp file(s) left by blob writes that never finished", removed)
        return removed

    def blobs(self) -> Iterator[StoredBlob]:
        """Every blob file (temp files and anything not named by its digest are not blobs), its mtime as
        ``stored_at``; one folder is read at a time."""
        folders = self.root / "sha256"
        try:
            for prefix in [entry.path for entry in _entries(folders) if entry.is_dir(follow_symlinks=False)]:
                for entry in _entries(prefix):
                    if not DIGEST.fullmatch(entry.name):
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # deleted since the folder was read
                        continue
                    if stat.S_ISREG(info.st_mode):
                        yield StoredBlob(entry.name, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))
        except OSError as exc:
            raise self._unavailable("list", folders, exc) from exc

    def delete(self, sha256: str) -> None:
        path = self._path(checked_digest(sha256, "blob"))
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._unavailable("delete", path, exc) from exc

    def volume_usage(self) -> tuple[int, int]:
        """(bytes in use, bytes in all) of the file system that holds the root."""
        try:
            usage = shutil.disk_usage(self.root)
        except OSError as exc:
            raise self._unavailable("measure", self.root, exc) from exc
        return usage.used, usage.total

    def _unavailable(self, operation: str, path: Path, exc: OSError) -> DependencyUnavailable:
        """The storage failed: DependencyUnavailable naming the errno and the store's own path (a digest's)."""
        code = errno.errorcode.get(exc.errno or 0, "unknown error")
        BLOB_STORE_ERRORS.labels(operation=operation, error=code).inc()
        where = path.relative_to(self.root)
        return DependencyUnavailable(
            f"blob store at {self.root}: cannot {operation} {where}: {code} ({exc.strerror or exc})"
        )

    def digest_of(self, uri: str) -> str:
        """The digest a URI of this store names; BlobRefused unless ``uri`` is exactly such a URI."""
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise BlobRefused(f"{uri[:300]!r} is not a file:// URI of the blob store at {self.root}")
        if parts.netloc not in ("", "localhost"):
            raise BlobRefused(f"{uri[:300]!r} names host {parts.netloc!r}; the blob store at {self.root} is local")
        local = "file:///" + uri.removeprefix("file://localhost/") if uri.startswith("file://localhost/") else uri
        digest = uri[-64:]
        # Compared as text with the URI put() makes: no '..', percent-escape or other spelling gets through.
        if not DIGEST.fullmatch(digest) or local != self._path(digest).as_uri():
            raise BlobRefused(
                f"{uri[:300]!r} is not a blob URI of the store at {self.root} (root/sha256/<2 hex>/<64 hex>)"
            )
        return digest

    def _read(self, digest: str, max_bytes: int | None, name: str) -> bytes:
        try:
            fd = self._open(digest)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {name} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink, or a file stands for a folder
                raise BlobRefused(
                    f"blob {name}: its path under {self.root} goes through a symlink or a non-folder"
                ) from None
            raise self._unavailable("read", self._path(digest), exc) from exc
        try:
            with os.fdopen(fd, "rb") as file:
                info = os.fstat(file.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise BlobRefused(f"blob {name} is not a regular file")
                if max_bytes is not None and info.st_size > max_bytes:
                    raise BlobTooLarge(f"blob {name} is {info.st_size} bytes, over the limit of {max_bytes} bytes")
                data = file.read() if max_bytes is None else file.read(max_bytes + 1)
        except OSError as exc:
            raise self._unavailable("read", self._path(digest), exc) from exc
        if max_bytes is not None and len(data) > max_bytes:  # it grew after the stat
            raise BlobTooLarge(f"blob {name} is over the limit of {max_bytes} bytes")
        if (actual := hashlib.sha256(data).hexdigest()) != digest:
            raise BlobRefused(f"blob {name} is corrupt or tampered with: its bytes hash to {actual}")
        return data

    def _open(self, digest: str) -> int:
        """A read descriptor of the blob's file, opened folder by folder from the root without following
        any symlink (ELOOP), and non-blocking so that a FIFO planted there cannot hang the reader."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for folder in ("sha256", digest[:2]):
                inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
            return os.open(digest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        finally:
            os.close(fd)


def _holds(path: Path, size: int) -> bool:
    """Whether ``path`` is a regular file of ``size`` bytes (not following a symlink: a put replaces one)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == size


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so that the names created or renamed in it survive a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system that cannot sync a folder
            raise
    finally:
        os.close(fd)


def _entries(folder: str | Path) -> list[os.DirEntry]:
    """The entries of ``folder``; none when it does not exist (a store nothing was put in yet)."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def make_blob_store(settings: Settings) -> BlobStore:
    """The blob store ``settings.blobs.backend`` names. The file store exports the use of its volume as
    the gauge diffqc_blob_volume_used_ratio (read when /metrics is scraped). The S3 store's bucket is
    awaited, and created when missing, for up to ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S`` (DependencyUnavailable
    after that); SettingsError names a bucket name S3 refuses or a missing s3 extra."""
    if settings.blobs.backend == "file":
        store = FileBlobStore(settings.blob_root)
        BLOB_VOLUME_USED.set_function(lambda: _volume_use_or_nan(store.root))
        return store
    try:
        from diffqc.store.s3_blobs import S3BlobStore  # boto3: the s3 extra, not the base install
    except ImportError as exc:
        raise SettingsError(
            f"DIFFQC_BLOBS_BACKEND=s3 needs the s3 extra ({exc.name or exc} does not import): pip install 'diffqc[s3]'"
        ) from None
    s3 = S3BlobStore.from_settings(settings.blobs)
    wait_for("blob store", s3.where, s3.ensure_bucket, settings.service.startup_timeout_s)
    return s3


def _volume_use_or_nan(root: Path) -> float:
    try:
        usage = shutil.disk_usage(root)
    except OSError:  # a root not made yet, or a volume gone: no figure rather than a failed scrape
        return float("nan")
    return usage.used / usage.total


def put_array(store: BlobStore, array: np.ndarray) -> BlobRef:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return store.put(buffer.getvalue(), NPY)


def get_array(store: BlobStore, ref: BlobRef | str) -> np.ndarray:
    return np.load(io.BytesIO(store.get(ref)), allow_pickle=False)
