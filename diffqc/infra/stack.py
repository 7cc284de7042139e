"""The local stack: which servers run, on which ports, under which PIDs (kept in a state file).

``diffqc infra up`` leaves the servers running for later commands, so their PIDs and addresses
are written to ``<data_dir>/infra/state.json``; ``down`` stops exactly those PIDs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from diffqc.infra.errors import InfraError
from diffqc.infra.kafka import broker_is_ready, kafka_broker
from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess, pid_alive, stop_pid
from diffqc.infra.registry import registry_is_ready, schema_registry
from diffqc.infra.timeseries import store_is_ready, timeseries_store
from diffqc.infra.triton import server_is_ready, triton_server

KAFKA = "kafka"
TIMESERIES = "timeseries"
TRITON = "triton"
REGISTRY = "registry"


@dataclass
class RunningServer:
    name: str
    pid: int
    address: str  # what clients use: bootstrap host:port (Kafka, Triton gRPC) or base URL
    log: str
    binary: str  # part of the command line, to tell our process from a reused PID
    probe: str = ""  # what the health check asks, when it differs from the address (Triton's HTTP URL)


@dataclass
class ServerStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool
    detail: str


_HEALTH: dict[str, Callable[[str], bool]] = {
    KAFKA: broker_is_ready,
    TIMESERIES: store_is_ready,
    TRITON: server_is_ready,
    REGISTRY: registry_is_ready,
}


class LocalStack:
    def __init__(self, root: Path):
        self.root = Path(root) / "infra"
        self.state_path = self.root / "state.json"

    def _load(self) -> dict[str, RunningServer]:
        if not self.state_path.exists():
            return {}
        return {name: RunningServer(**entry) for name, entry in json.loads(self.state_path.read_text()).items()}

    def _save(self, servers: dict[str, RunningServer]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps({n: asdict(s) for n, s in servers.items()}, indent=2))

    def running(self) -> dict[str, RunningServer]:
        return {n: s for n, s in self._load().items() if pid_alive(s.pid, s.binary)}

    def up(
        self,
        kafka_port: int,
        timeseries_port: int | None,
        triton_repo: Path | None = None,
        triton_grpc_port: int | None = None,
        registry_port: int | None = None,
    ) -> dict[str, RunningServer]:
        """Start what is not running yet (idempotent); on failure stop what this call started.

        The time-series store starts only with a ``timeseries_port``, Triton only when ``triton_repo``
        (a model repository) is given. The schema registry of the Avro topics (``diffqc.infra.registry``)
        always starts, on ``registry_port`` or a free port.
        """
        servers = self.running()
        wanted: dict[str, tuple[ServerProcess, str, str]] = {}
        if KAFKA not in servers:
            address = f"127.0.0.1:{kafka_port}"
            wanted[KAFKA] = (kafka_broker(kafka_port, self.root / "kafka.log"), address, address)
        if timeseries_port is not None and TIMESERIES not in servers:
            url = f"http://127.0.0.1:{timeseries_port}"
            wanted[TIMESERIES] = (
                timeseries_store(timeseries_port, self.root / "timeseries-data", self.root / "timeseries.log"),
                url,
                url,
            )
        if REGISTRY not in servers:
            url = f"http://127.0.0.1:{registry_port or free_port()}"
            wanted[REGISTRY] = (schema_registry(int(url.rsplit(":", 1)[1]), self.root / "registry.log"), url, url)
        if triton_repo is not None and TRITON not in servers:
            grpc_port, http_port = triton_grpc_port or free_port(), free_port()
            server = triton_server(
                triton_repo, http_port, grpc_port, free_port(), self.root / "triton", self.root / "triton.log"
            )
            wanted[TRITON] = (server, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}")
        started: list[ServerProcess] = []
        try:
            for name, (server, address, probe) in wanted.items():
                server.start()
                started.append(server)
                if server.pid is None:  # start() sets it
                    raise InfraError(f"{server.name} started but has no PID")
                servers[name] = RunningServer(
                    name=name,
                    pid=server.pid,
                    address=address,
                    log=str(server.log_path),
                    binary=server.argv[0],
                    probe=probe,
                )
        except BaseException:
            for server in started:
                server.stop()
            raise
        self._save(servers)
        return servers

    def down(self) -> list[str]:
        stopped = []
        for name, server in self._load().items():
            if pid_alive(server.pid, server.binary):
                stop_pid(server.pid)
                stopped.append(name)
        self.state_path.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[ServerStatus]:
        result = []
        for name, server in self._load().items():
            alive = pid_alive(server.pid, server.binary)
            healthy = alive and _HEALTH[name](server.probe or server.address)
            detail = "ready" if healthy else ("running but not answering" if alive else "not running")
            result.append(ServerStatus(name, server.address, server.pid if alive else None, healthy, detail))
        return result

    def log_tails(self, lines: int = 40) -> dict[str, str]:
        tails = {}
        for name, server in self._load().items():
            path = Path(server.log)
            text = path.read_text(errors="replace") if path.exists() else "(no log)"
            tails[name] = "\n".join(text.splitlines()[-lines:])
        return tails
