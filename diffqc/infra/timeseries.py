"""An InfluxDB-protocol time-series store for local runs and tests: Debian's victoria-metrics.

It accepts influxdb-client writes on /api/v2/write (but no Flux queries); production uses
InfluxDB 2.7. Points are read back through /api/v1/export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx

from diffqc.infra.errors import InfraError
from diffqc.infra.process import ServerProcess, http_ok

INSTALL_HINT = "apt-get install victoria-metrics"


def victoria_metrics_binary() -> str:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        raise InfraError(f"the time-series store is missing: {INSTALL_HINT}")
    return binary


def store_is_ready(url: str) -> bool:
    return http_ok(f"{url}/health")


def timeseries_store(port: int, data_dir: Path, log_path: Path) -> ServerProcess:
    url = f"http://127.0.0.1:{port}"
    return ServerProcess(
        name="time-series store (victoria-metrics)",
        argv=[
            victoria_metrics_binary(),
            f"-storageDataPath={data_dir}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            "-loggerLevel=WARN",  # its INFO start-up lines would drown a failing test's report
        ],
        log_path=log_path,
        ready=lambda: store_is_ready(url),
    )


def export_series(url: str, measurement: str, field: str) -> list[dict]:
    """Every stored series of ``measurement.field`` as victoria-metrics exports it (JSON lines)."""
    httpx.post(f"{url}/internal/force_flush", timeout=5.0)  # make just-written points searchable
    response = httpx.get(
        f"{url}/api/v1/export", params={"match[]": f'{{__name__="{measurement}_{field}"}}'}, timeout=5.0
    )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]
