"""The blob store on an S3-API bucket (AWS S3, MinIO ...): the file store's contract where several nodes
read the same images.

A blob's key is the file store's path under its root, ``sha256/<2 hex>/<64 hex>``, made from the
SHA-256 of its bytes (never from a message); its reference is ``s3://<bucket>/<key>``. A read never
follows a key taken from a message: a reference resolves to a digest (its ``sha256``, or the digest its
URI names when that URI is exactly one this store made: another backend's or another bucket's is
refused) and the store reads its own key for it, refusing a blob over the caller's limit before reading
its body and bytes whose SHA-256 is not the digest.

A put always uploads (the same bytes to the same key: idempotent), so S3's LastModified is the blob's
last put, as the file store's mtime is. The bucket is created when missing (``ensure_bucket``). A missing
key is BlobNotFound; everything else the service or the connection answers (no connection, timeouts,
5xx, throttling, refused credentials, a vanished bucket) is DependencyUnavailable naming it, counted in
diffqc_blob_store_errors (and diffqc_credentials_refused for HTTP 401/403): the stage then waits for
the store as for any dependency instead of dead-lettering the message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.metrics import BLOB_STORE_ERRORS, CREDENTIALS_REFUSED
from diffqc.settings import BlobSettings, SettingsError
from diffqc.store.blobs import (
    DIGEST,
    BlobNotFound,
    BlobRefused,
    BlobTooLarge,
    ContentAddressed,
    StoredBlob,
    checked_digest,
)
from diffqc.v1.common_pb2 import BlobRef

# S3's rule for bucket names (no dots: they break TLS on virtual-hosted addresses).
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
KEY_PREFIX = "sha256/"
# The consume loops retry a failed message themselves: the client retries little, and gives up quickly.
ATTEMPTS, CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 3, 5.0, 60.0
# Ingestion stores frames from many gRPC threads at once; the client is shared by all of them.
MAX_CONNECTIONS = 32


class S3BlobStore(ContentAddressed):
    """Blobs as objects ``sha256/<2 hex>/<64 hex>`` of one bucket (module doc)."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        attempts: int = ATTEMPTS,
    ):
        if not BUCKET_NAME.fullmatch(bucket):
            raise SettingsError(
                f"DIFFQC_BLOBS_S3_BUCKET: {bucket!r} is not an S3 bucket name "
                "(3-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit)"
            )
        if (access_key_id is None) != (secret_access_key is None):
            raise SettingsError(
                "DIFFQC_BLOBS_S3_ACCESS_KEY_ID and DIFFQC_BLOBS_S3_SECRET_ACCESS_KEY are set together or not at all"
            )
        self.bucket, self.region = bucket, region
        self.where = endpoint_url or f"AWS S3 ({region})"
        config = Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            max_pool_connections=MAX_CONNECTIONS,
            # Another S3 implementation (MinIO) serves buckets by path; AWS by host name.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Checksums only where S3 requires them: not every S3 implementation takes the newer trailing ones;
            # reads are checked against the SHA-256 anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self._s3 = boto3.session.Session().client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        except ValueError as exc:  # an endpoint that is no URL
            raise SettingsError(f"DIFFQC_BLOBS_S3_ENDPOINT_URL: {exc}") from None

    @classmethod
    def from_settings(cls, blobs: BlobSettings) -> S3BlobStore:
        """The store DIFFQC_BLOBS_S3_* name; credentials unset: the SDK's chain (environment, IAM role ...)."""
        key_id, secret = blobs.s3_access_key_id, blobs.s3_secret_access_key
        return cls(
            blobs.s3_bucket,
            endpoint_url=blobs.s3_endpoint_url,
            region=blobs.s3_region,
            access_key_id=key_id.get_secret_value() if key_id else None,
            secret_access_key=secret.get_secret_value() if secret else None,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (another replica creating it at the same time is fine)."""
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise self._unavailable("bucket", "", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("bucket", "", exc) from exc
        where = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        try:
            self._s3.create_bucket(Bucket=self.bucket, **where)
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":  # another replica made it first
                raise self._unavailable("bucket", "", exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("bucket", "", exc) from exc

    def _key(self, digest: str) -> str:
        return f"{KEY_PREFIX}{digest[:2]}/{digest}"

    def uri_of(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self._key(sha256)}"

    def put(self, data: bytes, media_type: str) -> BlobRef:
        """Store ``data``; in the bucket when this returns. Raises DependencyUnavailable when S3 fails."""
        digest = hashlib.sha256(data).hexdigest()
        key = self._key(digest)
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=media_type)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("write", key, exc) from exc
        return BlobRef(uri=self.uri_of(digest), sha256=digest, media_type=media_type, size_bytes=len(data))

    def digest_of(self, uri: str) -> str:
        """The digest a URI of this store names; BlobRefused unless ``uri`` is exactly such a URI."""
        parts = urlsplit(uri)
        if parts.scheme != "s3":
            raise BlobRefused(f"{uri[:300]!r} is not an s3:// URI of the blob store s3://{self.bucket}")
        if parts.netloc != self.bucket:
            raise BlobRefused(f"{uri[:300]!r} names bucket {parts.netloc[:100]!r}; the blob store's is {self.bucket!r}")
        digest = uri[-64:]
        # Compared as text with the URI put() makes: no '..', percent-escape or other spelling gets through.
        if not DIGEST.fullmatch(digest) or uri != self.uri_of(digest):
            raise BlobRefused(
                f"{uri[:300]!r} is not a blob URI of the store s3://{self.bucket} (sha256/<2 hex>/<64 hex>)"
            )
        return digest

    def _read(self, digest: str, max_bytes: int | None, name: str) -> bytes:
        key = self._key(digest)
        try:
            response = self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) == "NoSuchKey":
                raise BlobNotFound(f"blob {name} does not exist") from None
            raise self._unavailable("read", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("read", key, exc) from exc
        body = response["Body"]
        try:
            size = response["ContentLength"]
            if max_bytes is not None and size > max_bytes:
                raise BlobTooLarge(f"blob {name} is {size} bytes, over the limit of {max_bytes} bytes")
            data = body.read() if max_bytes is None else body.read(max_bytes + 1)
        except BotoCoreError as exc:  # the connection broke or timed out while the body streamed
            raise self._unavailable("read", key, exc) from exc
        finally:
            body.close()
        if max_bytes is not None and len(data) > max_bytes:  # the length header was wrong
            raise BlobTooLarge(f"blob {name} is over the limit of {max_bytes} bytes")
        if (actual := hashlib.sha256(data).hexdigest()) != digest:
            raise BlobRefused(f"blob {name} is corrupt or tampered with: its bytes hash to {actual}")
        return data

    def blobs(self) -> Iterator[StoredBlob]:
        """Every object named like a blob, its LastModified as ``stored_at``; one listing page at a time."""
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=KEY_PREFIX)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    digest = item["Key"][-64:]
                    if DIGEST.fullmatch(digest) and item["Key"] == self._key(digest):
                        yield StoredBlob(digest, item["Size"], item["LastModified"].astimezone(UTC))
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("list", KEY_PREFIX, exc) from exc

    def delete(self, sha256: str) -> None:
        key = self._key(checked_digest(sha256, "blob"))
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=key)  # S3 answers the same for a missing key
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("delete", key, exc) from exc

    def _unavailable(self, operation: str, key: str, exc: BotoCoreError | ClientError) -> DependencyUnavailable:
        """S3 failed: DependencyUnavailable naming the error code (or the client's error), counted by it."""
        if isinstance(exc, ClientError):
            status, code = _status(exc), _code(exc)
            if status in (401, 403):
                CREDENTIALS_REFUSED.labels(dependency="blob store").inc()
            message = _error(exc).get("Message") or ""
            detail = f"{code} (HTTP {status}){': ' + message if message else ''}"
        else:
            code = exc.__class__.__name__
            detail = f"{code}: {exc}"
        BLOB_STORE_ERRORS.labels(operation=operation, error=code).inc()
        what = f" {key}" if key else ""
        return DependencyUnavailable(
            f"blob store s3://{self.bucket} at {self.where}: cannot {operation}{what}: {detail}"
        )


def _error(exc: ClientError) -> dict[str, Any]:
    return dict(exc.response.get("Error") or {})


def _code(exc: ClientError) -> str:
    return str(_error(exc).get("Code") or _status(exc) or "unknown")


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
