"""One clock: aware UTC datetimes, and protobuf Timestamp/Duration conversions that round-trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from diffqc.core import clock

T = datetime(2026, 11, 22, 6, 0, 1, 250123, tzinfo=UTC)


def test_now_is_aware_utc():
    before = datetime.now(UTC)
    now = clock.now()
    assert now.tzinfo is UTC and before <= now <= datetime.now(UTC)


def test_utc_reads_naive_as_utc_and_converts_aware():
    assert clock.utc(None) is None
    assert clock.utc(T.replace(tzinfo=None)) == T and clock.utc(T.replace(tzinfo=None)).tzinfo is UTC
    cet = T.astimezone(timezone(timedelta(hours=1)))
    assert clock.utc(cet) == T and clock.utc(cet).tzinfo is UTC and clock.utc(cet).hour == 6


def test_a_datetime_round_trips_through_a_timestamp():
    ts = clock.to_timestamp(T)
    assert isinstance(ts, Timestamp) and (ts.seconds, ts.nanos) == (int(T.timestamp()), 250123000)
    assert clock.from_timestamp(ts) == T and clock.from_timestamp(ts).tzinfo is UTC
    assert clock.to_datetime(ts) == T
    # A naive datetime is UTC; an aware one in another zone is the same instant.
    assert clock.to_timestamp(T.replace(tzinfo=None)) == ts
    assert clock.to_timestamp(T.astimezone(timezone(timedelta(hours=-5)))) == ts


def test_an_unset_timestamp_is_none_but_converts_to_the_epoch():
    assert clock.from_timestamp(Timestamp()) is None
    assert clock.to_datetime(Timestamp()) == datetime(1970, 1, 1, tzinfo=UTC)
    assert clock.from_timestamp(Timestamp(nanos=1)) == datetime(1970, 1, 1, tzinfo=UTC)  # set: 1 ns (rounds to 0 us)


def test_an_out_of_range_timestamp_raises():
    with pytest.raises(ValueError):
        clock.to_datetime(Timestamp(seconds=2**40))


def test_duration_from_ms_is_exact_to_the_nanosecond():
    d = clock.duration_from_ms(12.3456789)
    assert isinstance(d, Duration) and d.ToNanoseconds() == 12_345_679
    assert clock.duration_from_ms(0).ToNanoseconds() == 0
    assert clock.duration_from_ms(1500).ToMilliseconds() == 1500


def test_the_clock_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys; import diffqc.core.clock; "
        "print(sorted(m for m in ('torch', 'diffusers', 'timm', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
