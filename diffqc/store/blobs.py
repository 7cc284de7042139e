"""The blob store for images, tensors and anomaly maps (events carry references, never bytes).

Content-addressed: a blob's key is the SHA-256 of its bytes, so storing the same image twice
(a camera retrying a frame) writes nothing new and yields the same reference. ``BlobStore`` is
the interface an S3 store implements; ``FileBlobStore`` is the filesystem default.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import numpy as np

from diffqc.v1.common_pb2 import BlobRef

NPY = "application/x-npy"


class BlobNotFound(KeyError):
    """A reference points at a blob that the store does not hold."""


class BlobStore(Protocol):
    def put(self, data: bytes, media_type: str) -> BlobRef: ...

    def get(self, ref: BlobRef | str) -> bytes: ...


class FileBlobStore:
    """Blobs as files under ``root/sha256/<2 hex>/<64 hex>``, written atomically."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def _path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes, media_type: str) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)  # readers never see a partly written blob
        return BlobRef(uri=path.as_uri(), sha256=digest, media_type=media_type, size_bytes=len(data))

    def get(self, ref: BlobRef | str) -> bytes:
        uri = ref.uri if isinstance(ref, BlobRef) else ref
        path = Path(urlparse(uri).path)
        if urlparse(uri).scheme != "file" or self.root not in path.parents:
            raise BlobNotFound(f"{uri} is not a blob of the store at {self.root}")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {uri} does not exist") from None


def put_array(store: BlobStore, array: np.ndarray) -> BlobRef:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return store.put(buffer.getvalue(), NPY)


def get_array(store: BlobStore, ref: BlobRef | str) -> np.ndarray:
    return np.load(io.BytesIO(store.get(ref)), allow_pickle=False)
