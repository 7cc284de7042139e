"""Starting and stopping the local stack: readiness, idempotence, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from diffqc.infra.errors import InfraError
from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from diffqc.infra.stack import LocalStack

TRITON_REPO = Path(__file__).parent / "triton_repo"


def test_up_is_idempotent_and_down_leaves_no_process(local_stack, tmp_path):
    stack = LocalStack(tmp_path)
    first = stack.up(kafka_port=free_port(), timeseries_port=free_port(), triton_repo=TRITON_REPO)
    pids = {s.pid for s in first.values()}
    family = pids | {c.pid for pid in pids for c in psutil.Process(pid).children(recursive=True)}
    assert [s.healthy for s in stack.status()] == [True, True, True, True]
    assert {s.pid for s in stack.up(kafka_port=free_port(), timeseries_port=free_port()).values()} == pids

    assert sorted(stack.down()) == ["kafka", "registry", "timeseries", "triton"]
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family)
    assert stack.status() == []


def test_cli_up_status_down(local_stack, tmp_path):
    env = {
        **os.environ,
        "DIFFQC_DATA_DIR": str(tmp_path),
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "DIFFQC_INFLUX_URL": f"http://127.0.0.1:{free_port()}",
        "DIFFQC_TRITON_GRPC_URL": f"127.0.0.1:{free_port()}",
        "DIFFQC_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
    }
    cli = [sys.executable, "-m", "diffqc.cli", "infra"]

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *command], env=env, capture_output=True, text=True, timeout=120)

    assert run("status").returncode == 1  # nothing runs yet
    up = run("up", "--repo", str(TRITON_REPO))
    assert up.returncode == 0, up.stdout + up.stderr
    status = run("status")
    assert status.returncode == 0 and status.stdout.count("ready") == 4, status.stdout
    # The embedded schema registry listens where DIFFQC_REGISTRY_URL points, as the services expect.
    assert httpx.get(f"{env['DIFFQC_REGISTRY_URL']}/subjects", timeout=5).json() == []
    assert "kafka" in run("down").stdout
    assert run("status").returncode == 1


def test_a_server_that_dies_at_start_reports_its_log(tmp_path):
    server = ServerProcess(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('port already in use'); sys.exit(3)"],
        log_path=tmp_path / "broken.log",
        ready=lambda: False,
    )
    with pytest.raises(InfraError, match=r"broken exited with code 3(.|\n)*port already in use"):
        server.start()


def test_a_server_that_never_gets_ready_is_stopped(tmp_path):
    server = ServerProcess(
        name="silent",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        log_path=tmp_path / "silent.log",
        ready=lambda: False,
        ready_timeout_s=1.0,
    )
    with pytest.raises(InfraError, match="silent was not ready after 1 s"):
        server.start()
    assert server.pid is None
