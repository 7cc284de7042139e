"""The local tritonserver launcher: a real server, a real tritonclient call, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
import tritonclient.grpc as grpcclient

from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server

REPO = Path(__file__).parent / "triton_repo"


def test_serves_a_python_backend_model_and_stops_with_its_stubs(tmp_path):
    grpc_port = free_port()
    server = triton_server(REPO, free_port(), grpc_port, free_port(), tmp_path, tmp_path / "triton.log")
    server.start()
    pid = server.pid
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.is_model_ready("double")
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        inp = grpcclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("double", [inp])
        np.testing.assert_array_equal(result.as_numpy("Y"), x * 2)
        family = [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
        assert len(family) >= 2, "the python backend stub runs as a child of tritonserver"
    finally:
        server.stop()
    assert not [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_triton_serve_runs_in_the_foreground_until_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from diffqc.infra.triton import server_is_ready

    http_port = free_port()
    env = {**os.environ, "DIFFQC_DATA_DIR": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "diffqc.cli",
        "triton",
        "serve",
        "--repo",
        str(REPO),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not server_is_ready(f"http://127.0.0.1:{http_port}"):
            assert proc.poll() is None and time.monotonic() < deadline, "triton serve did not become ready"
            time.sleep(0.2)
        family = [child.pid for child in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "triton stopped" in output
    assert not [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
