"""One clock: every time the platform handles is an aware UTC datetime, and protobuf times convert here.

A naive datetime (what SQLite hands back for a timezone-aware column, or a caller's own) is read
as UTC, which is what it is in this platform. A protobuf ``Timestamp`` field that was never set
reads as 0 s 0 ns; ``from_timestamp`` gives None for it, ``to_datetime`` the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["duration_from_ms", "from_timestamp", "now", "to_datetime", "to_timestamp", "utc"]


def now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC); None stays None."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def to_datetime(ts: Timestamp) -> datetime:
    """The aware UTC datetime of ``ts``, set or not (an unset one is the epoch); ValueError if out of range."""
    return ts.ToDatetime(tzinfo=UTC)


def from_timestamp(ts: Timestamp) -> datetime | None:
    """The aware UTC datetime of an optional ``Timestamp`` field; None when it is unset (0 s and 0 ns)."""
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def to_timestamp(value: datetime) -> Timestamp:
    """The ``Timestamp`` of ``value`` (a naive datetime is taken to be UTC)."""
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def duration_from_ms(ms: float) -> Duration:
    """The ``Duration`` of ``ms`` milliseconds, to the nearest nanosecond."""
    d = Duration()
    d.FromNanoseconds(int(round(ms * 1e6)))
    return d
