"""NVIDIA Triton on this machine: the tritonserver binary bundled in the nvidia-pytriton wheel.

It runs a standard python-backend model repository on CPU. Production runs the same repository
in NVIDIA's Triton container on GPU nodes. Used by ``diffqc triton serve``, ``diffqc infra``
and the test fixtures.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from diffqc.infra.errors import InfraError
from diffqc.infra.process import ServerProcess, http_ok

INSTALL_HINT = "the triton extra (nvidia-pytriton 0.7.0): pip install 'diffqc[triton]'"
# Under explicit model control Triton loads the detector's staged versions at start and afterwards
# exactly the versions `diffqc model promote|rollback|sync` ask for (diffqc.serving.loader): nothing
# goes live by being staged. poll_s=REPOSITORY_POLL_S runs the former mode instead: Triton polls the
# repository and serves every staged version within that many seconds.
REPOSITORY_POLL_S = 10
EXPLICIT_LOAD = "*"  # every model of the repository is loaded at start (diffqc_detector: the versions its config lists)


def _pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise InfraError(f"tritonserver is missing: {INSTALL_HINT}") from exc
    return Path(pytriton.__file__).parent


def backend_directory(work_dir: Path) -> Path:
    """Assemble ``<work_dir>/backends/python`` from the wheel: backend library, utils, and the stub
    for this Python version (tritonserver looks for all three side by side)."""
    root = _pytriton_root() / "tritonserver"
    python_dir = work_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    sources = [
        root / "backends" / "python" / "libtriton_python.so",
        root / "backends" / "python" / "triton_python_backend_utils.py",
        root / "python_backend_stubs" / version / "triton_python_backend_stub",
    ]
    for source in sources:
        if not source.exists():
            raise InfraError(f"{source} is missing from nvidia-pytriton ({INSTALL_HINT})")
        target = python_dir / source.name
        if not target.exists():
            shutil.copy2(source, target)
    return python_dir.parent


def _environment() -> dict[str, str]:
    site_packages = _pytriton_root().parent
    # The stub must load this interpreter's libpython (pyenv's), not the system's 3.11, and
    # model.py must import the venv's torch and numpy: hence LD_LIBRARY_PATH and PATH.
    libdirs = [str(site_packages / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(libdirs + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    # The stub's torch must not spin idle OpenMP threads on cores shared with the services (diffqc/__init__.py).
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def server_is_ready(http_url: str) -> bool:
    return http_ok(f"{http_url}/v2/health/ready")


def triton_server(
    repository: Path,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    work_dir: Path,
    log_path: Path | None,
    ready_timeout_s: float = 120.0,
    poll_s: int | None = None,
) -> ServerProcess:
    """tritonserver on 127.0.0.1 with explicit model control; with ``poll_s``, polling the repository instead."""
    repository = Path(repository).resolve()
    if not repository.is_dir():
        raise InfraError(f"model repository {repository} does not exist")
    binary = _pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    return ServerProcess(
        name="triton",
        argv=[
            str(binary),
            f"--model-repository={repository}",
            *(
                ["--model-control-mode=explicit", f"--load-model={EXPLICIT_LOAD}"]
                if poll_s is None
                else ["--model-control-mode=poll", f"--repository-poll-secs={poll_s}"]
            ),
            f"--backend-directory={backend_directory(work_dir)}",
            "--http-address=127.0.0.1",
            f"--http-port={http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics_port}",
            "--pinned-memory-pool-byte-size=0",
            "--allow-gpu-metrics=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ],
        log_path=log_path,
        env=_environment(),
        ready=lambda: server_is_ready(f"http://127.0.0.1:{http_port}"),
        ready_timeout_s=ready_timeout_s,
    )
