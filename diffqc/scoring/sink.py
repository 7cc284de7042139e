"""Where score points go: InfluxDB (influxdb-client, v2 write API) or a line-protocol file.

One point per inspection: measurement ``anomaly_score``; tags plant, line, station, camera,
product_type, model_version; fields score, one per component, threshold, verdict (1 = defect,
0 = pass) and latency_ms; timestamp = the frame's capture time. A series is identified by its
tags and a point by its timestamp, so writing the point of a redelivered frame again overwrites
the same point instead of adding one.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Protocol

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as TransportError

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.metrics import CREDENTIALS_REFUSED
from diffqc.settings import InfluxSettings

log = logging.getLogger(__name__)
MEASUREMENT = "anomaly_score"
TAGS = ("plant", "line", "station", "camera", "product_type", "model_version")


class ScoreSink(Protocol):
    def write(self, point: Point) -> None: ...

    def close(self) -> None: ...


def score_point(
    tags: dict[str, str],
    components: dict[str, float],
    score: float,
    threshold: float,
    defect: bool,
    latency_ms: float,
    time: datetime,
) -> Point:
    point = Point(MEASUREMENT)
    for name in TAGS:
        if tags.get(name):  # InfluxDB refuses empty tag values
            point.tag(name, tags[name])
    point.field("score", float(score))
    for name, value in sorted(components.items()):
        point.field(name, float(value))
    point.field("threshold", float(threshold)).field("verdict", 1 if defect else 0)
    point.field("latency_ms", float(latency_ms))
    return point.time(time, WritePrecision.NS)


class InfluxScoreSink:
    """Synchronous writes: the point is stored when ``write`` returns (the offset is committed after)."""

    def __init__(self, settings: InfluxSettings, timeout_ms: int = 5000):
        self.settings = settings
        self.client = InfluxDBClient(url=settings.url, token=settings.token, org=settings.org, timeout=timeout_ms)
        self.api = self.client.write_api(write_options=SYNCHRONOUS)

    def write(self, point: Point) -> None:
        try:
            # influxdb-client annotates write_precision as WritePrecision, but its values (NS) are str.
            precision: WritePrecision = WritePrecision.NS  # type: ignore[assignment]
            self.api.write(bucket=self.settings.bucket, org=self.settings.org, record=point, write_precision=precision)
        except ApiException as exc:
            if exc.status in (401, 403):  # a rotated or revoked token: an alarm, retried until it works again
                CREDENTIALS_REFUSED.labels(dependency="influxdb").inc()
                log.error(
                    "InfluxDB at %s refuses the token (HTTP %s): check DIFFQC_INFLUX_TOKEN",
                    self.settings.url,
                    exc.status,
                )
            if exc.status in (401, 403, 408, 429) or (exc.status or 500) >= 500:
                raise DependencyUnavailable(
                    f"InfluxDB at {self.settings.url}: HTTP {exc.status} {exc.reason}"
                ) from None
            # 400/404/422: the point or the bucket is wrong; bounded retries, then the dead-letter topic.
            raise RuntimeError(
                f"InfluxDB at {self.settings.url} refused the point: HTTP {exc.status} "
                f"{(exc.body or exc.reason or '')!s:.300}"
            ) from None
        except (TransportError, OSError) as exc:  # connection refused, reset, timed out
            raise DependencyUnavailable(f"InfluxDB at {self.settings.url} unreachable: {exc}") from None

    def close(self) -> None:
        self.client.close()


class LineProtocolFileSink:
    """Appends each point as one line of InfluxDB line protocol (the embedded default without a store)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, point: Point) -> None:
        line = point.to_line_protocol() + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)

    def close(self) -> None:
        pass


def make_sink(settings) -> ScoreSink:
    """The line-protocol file when ``scoring.line_protocol_file`` is set, InfluxDB otherwise."""
    if settings.scoring.line_protocol_file:
        return LineProtocolFileSink(settings.scoring.line_protocol_file)
    return InfluxScoreSink(settings.influx)
