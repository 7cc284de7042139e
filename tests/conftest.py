"""Real infrastructure for the tests, started by the same code as ``diffqc infra up``.

A server that is not installed skips its tests with the command that installs it, except under
CI=true, where every test of a real component must run.
"""

from __future__ import annotations

import shutil

import pytest

from diffqc.infra.errors import InfraError
from diffqc.infra.kafka import kafka_broker
from diffqc.infra.ports import free_port
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.stack import KAFKA, REGISTRY, TIMESERIES, LocalStack
from diffqc.infra.triton import triton_server
from diffqc.serving.repository import stage_version
from diffqc.settings import KafkaSettings, TritonSettings
from tests.helpers.env import require
from tests.helpers.models import TINY_PRODUCT, train_tiny


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    require(shutil.which("victoria-metrics") is not None, "needs victoria-metrics: apt-get install victoria-metrics")
    stack = LocalStack(tmp_path_factory.mktemp("infra"))
    try:
        servers = stack.up(kafka_port=free_port(), timeseries_port=free_port())
    except InfraError as exc:
        pytest.fail(f"the local infrastructure did not start: {exc}")
    yield stack, servers
    stack.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_stack) -> str:
    return local_stack[1][KAFKA].address


@pytest.fixture
def kafka_settings(kafka_bootstrap) -> KafkaSettings:
    # Short session timeout: tansu answers a group join after about half of it.
    return KafkaSettings(
        bootstrap_servers=kafka_bootstrap, session_timeout_ms=6000, retry_backoff_s=0.05, retry_backoff_max_s=0.2
    )


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own: the session broker's topics belong to other tests."""
    port = free_port()
    broker = kafka_broker(port, tmp_path / "tansu.log").start()
    yield f"127.0.0.1:{port}"
    broker.stop()


@pytest.fixture(scope="session")
def timeseries_url(local_stack) -> str:
    return local_stack[1][TIMESERIES].address


@pytest.fixture(scope="session")
def schema_registry_url(local_stack) -> str:
    """The stack's Confluent-compatible schema registry (diffqc.infra.registry), as ``diffqc infra up`` runs it."""
    return local_stack[1][REGISTRY].address


@pytest.fixture
def postgres_url() -> str:
    """A fresh database per test (created in ~0.1 s), so tests never see each other's tables."""
    try:
        with throwaway_database() as url:
            yield url
    except InfraError as exc:
        require(False, str(exc))


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3-API server, in this process on a free loopback port (any credentials pass): the S3 blob
    store's tests talk HTTP to it as to MinIO. Its buckets are shared by every test: each names its own."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory):
    """A tiny PCB detector: (artifact dir, its MVTec data set)."""
    return train_tiny(TINY_PRODUCT, tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def triton(tiny_artifact, tmp_path_factory):
    """A real tritonserver serving the tiny artifact: (TritonSettings, its ServerProcess)."""
    work = tmp_path_factory.mktemp("triton")
    stage_version(tiny_artifact[0], work / "repo")
    grpc_port = free_port()
    server = triton_server(work / "repo", free_port(), grpc_port, free_port(), work, work / "triton.log").start()
    yield TritonSettings(grpc_url=f"127.0.0.1:{grpc_port}", timeout_s=60), server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test that used the local servers fails, show their logs."""
    report = yield
    started = getattr(item, "funcargs", {}).get("local_stack")
    if report.failed and started:
        stack, _ = started
        for name, tail in stack.log_tails().items():
            report.sections.append((f"{name} server log (last lines)", tail))
    return report


NO_CUDA = pytest.StashKey[int]()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are not applicable where torch has no CUDA: deselected (not skipped, so
    CI=true has nothing to police), and one line in the summary says so (pytest_terminal_summary)."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]
        config.hook.pytest_deselected(items=gpu)
        config.stash[NO_CUDA] = len(gpu)


def pytest_terminal_summary(terminalreporter, config):
    if config.stash.get(NO_CUDA, 0):
        terminalreporter.write_line(
            f"{config.stash[NO_CUDA]} gpu test(s) deselected: torch.cuda.is_available() is False here "
            "(make gpu-check runs them on a machine with an NVIDIA GPU)"
        )
