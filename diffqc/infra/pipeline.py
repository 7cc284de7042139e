"""The whole inspection pipeline on one machine: the local servers plus the four services of the
frame flow, and the MES/SPC bridge when there is an MES webhook to deliver alerts to.

Used by ``diffqc demo`` (``make run``), ``diffqc bench pipeline`` and the end-to-end tests. The
products and model versions that the model repository serves are registered in the metadata
database first, so ingestion knows the product types, preprocessing knows their specs and scoring
their thresholds.

Score points go to the InfluxDB named by ``DIFFQC_INFLUX_URL`` when it is set, else to the embedded
time-series store (victoria-metrics, when installed), else to a line-protocol file.

``external``: no server is started; the services run against the plant's own broker, schema registry,
database, InfluxDB and Triton that the DIFFQC_* settings name (its Triton serving the same model
repository), so an integrator sees the line's alerts on the plant's broker.

``replicas``: each consumer stage (preprocessing, inference, scoring, and the bridge when it runs)
runs as that many processes in one consumer group, so the broker spreads the topics' ``partitions``
among them (``service.stream_workers`` consumers per process; more consumers than partitions idle).
Replica processes are named ``inference-2``, ``inference-3``... with a port and a log each; the
first keeps the stage's own name. Ingestion stays one process, Triton one server.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from diffqc.bus.admin import ensure_topics
from diffqc.contracts.topics import ALL_TOPICS, dead_letter_topic
from diffqc.infra.errors import InfraError
from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from diffqc.infra.services import grpc_settings_from, service_process
from diffqc.infra.stack import KAFKA, REGISTRY, TIMESERIES, TRITON, LocalStack
from diffqc.serving.repository import MODEL_NAME, versions
from diffqc.settings import Settings
from diffqc.store.engine import make_engine

INGESTION = "ingestion"  # one process: cameras stream to one address
CONSUMER_STAGES = ("preprocessing", "inference", "scoring")  # the frame flow's stages that scale out
# What --external needs the settings to name: the plant's servers.
EXTERNAL_SERVERS = (
    "DIFFQC_KAFKA_BOOTSTRAP_SERVERS",
    "DIFFQC_REGISTRY_URL",
    "DIFFQC_DATABASE_URL",
    "DIFFQC_INFLUX_URL",
    "DIFFQC_TRITON_GRPC_URL",
)
BRIDGE = "bridge"
PARTITIONS = 4


def replica_name(stage: str, replica: int) -> str:
    """The process name of replica ``replica`` (from 1) of ``stage``: ``inference``, ``inference-2``, ..."""
    return stage if replica == 1 else f"{stage}-{replica}"


def stage_of(name: str) -> str:
    """The service a process runs: ``inference-2`` -> ``inference``."""
    stage, _, replica = name.rpartition("-")
    return stage if stage and replica.isdigit() else name


@dataclass
class LocalPipeline:
    root: Path
    model_repository: Path
    database_url: str | None = None  # default: a SQLite file under root
    line_protocol_file: Path | None = None  # where scores go without any time-series store (default: under root)
    mes_webhook_url: str | None = None  # with one, the bridge runs and delivers the alerts there
    line_stop_url: str | None = None  # where the bridge requests line stops for critical alerts
    service_env: dict[str, str] = field(default_factory=dict)  # further DIFFQC_* settings of every service
    external: bool = False  # run against the servers the DIFFQC_* settings name instead of starting local ones
    replicas: int = 1  # processes of each consumer stage, sharing its consumer group
    partitions: int = PARTITIONS  # of every topic this pipeline creates
    stack: LocalStack = field(init=False)
    env: dict[str, str] = field(init=False, default_factory=dict)
    ports: dict[str, int] = field(init=False, default_factory=dict)
    processes: dict[str, ServerProcess] = field(init=False, default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(init=False, default_factory=dict)  # (h, w) per product

    def __post_init__(self):
        self.root = Path(self.root)
        self.model_repository = Path(self.model_repository).resolve()  # artifacts are registered by file URI
        self.stack = LocalStack(self.root)
        if self.replicas < 1 or self.partitions < 1:
            raise InfraError(f"replicas and partitions must be at least 1; got {self.replicas}, {self.partitions}")
        if self.external:
            missing = [name for name in EXTERNAL_SERVERS if not os.environ.get(name)]
            if missing:
                raise InfraError(
                    "an external pipeline runs against the servers the settings name; set " + ", ".join(missing)
                )
            self.database_url = os.environ["DIFFQC_DATABASE_URL"]
        self.database_url = self.database_url or f"sqlite:///{self.root / 'diffqc.db'}"
        self.line_protocol_file = Path(self.line_protocol_file or self.root / "scores.lp")

    @property
    def db_url(self) -> str:
        """The metadata database URL: ``database_url``, or the SQLite default that __post_init__ sets."""
        if self.database_url is None:
            raise InfraError("LocalPipeline.database_url is unset: __post_init__ did not run")
        return self.database_url

    @property
    def scores_to(self) -> str:
        """Where the scoring service writes score points (for the user)."""
        if "DIFFQC_INFLUX_URL" in self.env:
            return f"InfluxDB API at {self.env['DIFFQC_INFLUX_URL']}"
        return f"the line-protocol file {self.env['DIFFQC_SCORING_LINE_PROTOCOL_FILE']}"

    @property
    def settings(self) -> Settings:
        """The settings every service of this pipeline runs with (for in-process clients)."""
        if self.external:  # the environment's, security settings included
            return Settings(data_dir=self.root, blob_root=self.root / "blobs")
        influx = {"url": self.env["DIFFQC_INFLUX_URL"]} if "DIFFQC_INFLUX_URL" in self.env else {}
        return Settings(
            data_dir=self.root,
            blob_root=self.root / "blobs",
            database={"url": self.database_url},
            kafka={"bootstrap_servers": self.env["DIFFQC_KAFKA_BOOTSTRAP_SERVERS"], "session_timeout_ms": 6000},
            influx=influx,
            triton={"grpc_url": self.env["DIFFQC_TRITON_GRPC_URL"]},
            grpc=grpc_settings_from({**os.environ, **self.env}),  # what the services serve with
        )

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def start_servers(self) -> None:
        if self.external:
            self.env = {
                "DIFFQC_DATA_DIR": str(self.root),
                "DIFFQC_BLOB_ROOT": str(self.root / "blobs"),
                **{name: os.environ[name] for name in EXTERNAL_SERVERS},
                **self.service_env,
            }
            self._bridge_env()
            kafka = self.settings.kafka
            ensure_topics(kafka, [*ALL_TOPICS, *(dead_letter_topic(t, kafka) for t in ALL_TOPICS)], self.partitions)
            return
        external_influx = os.environ.get("DIFFQC_INFLUX_URL")
        embedded_store = not external_influx and shutil.which("victoria-metrics") is not None
        servers = self.stack.up(free_port(), free_port() if embedded_store else None, triton_repo=self.model_repository)
        self.env = {
            "DIFFQC_DATA_DIR": str(self.root),
            "DIFFQC_BLOB_ROOT": str(self.root / "blobs"),
            "DIFFQC_DATABASE_URL": self.db_url,
            "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": servers[KAFKA].address,
            "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",  # tansu answers a group join after half of it
            "DIFFQC_TRITON_GRPC_URL": servers[TRITON].address,
            "DIFFQC_REGISTRY_URL": servers[REGISTRY].address,  # the Avro topics' schemas (quality.alert)
        }
        self.env.update(self.service_env)
        self._bridge_env()
        if external_influx or embedded_store:
            self.env["DIFFQC_INFLUX_URL"] = external_influx or servers[TIMESERIES].address
        else:
            self.env["DIFFQC_SCORING_LINE_PROTOCOL_FILE"] = str(self.line_protocol_file)
        kafka = self.settings.kafka
        ensure_topics(kafka, [*ALL_TOPICS, *(dead_letter_topic(t, kafka) for t in ALL_TOPICS)], self.partitions)

    def _bridge_env(self) -> None:
        if self.mes_webhook_url:
            self.env["DIFFQC_BRIDGE_MES_WEBHOOK_URL"] = self.mes_webhook_url
            self.env["DIFFQC_BRIDGE_BACKOFF_BASE_S"] = "0.5"
        if self.line_stop_url:
            self.env["DIFFQC_BRIDGE_LINE_STOP_URL"] = self.line_stop_url

    def register_models(self) -> list[str]:
        """Register every product the newest model version serves, with its spec and threshold."""
        from diffqc.serving.register import register_version

        engine = make_engine(self.db_url)
        try:
            self.image_sizes.update(
                register_version(self.model_repository / MODEL_NAME / self.newest_version(), engine)
            )
        finally:
            engine.dispose()
        return list(self.image_sizes)

    def newest_version(self) -> str:
        found = versions(self.model_repository / MODEL_NAME)
        if not found:
            raise InfraError(
                f"{self.model_repository / MODEL_NAME} holds no model version: stage one with "
                f"diffqc export --model MODEL --repo {self.model_repository}"
            )
        return str(found[-1])

    @property
    def service_names(self) -> list[str]:
        """Every service process of this pipeline: ingestion, then ``replicas`` of each consumer stage."""
        stages = (*CONSUMER_STAGES, BRIDGE) if self.mes_webhook_url else CONSUMER_STAGES
        return [INGESTION, *(replica_name(stage, n) for stage in stages for n in range(1, self.replicas + 1))]

    def start_service(self, name: str) -> None:
        """Start the process ``name`` (a service, or a replica such as ``inference-2``) on its own port and
        log; a restart keeps the port, so clients reconnect to the same address."""
        self.ports.setdefault(name, free_port())
        process = service_process(stage_of(name), self.ports[name], self.env, self.root / "logs" / f"{name}.log")
        process.name = f"service {name}"
        self.processes[name] = process.start()

    def stop_service(self, name: str) -> None:
        self.processes.pop(name).stop()

    def start(self) -> list[str]:
        self.newest_version()  # fail before starting anything when there is no model to serve
        self.start_servers()
        products = self.register_models()
        for name in self.service_names:
            self.start_service(name)
        return products

    def scale(self, replicas: int) -> None:
        """Run ``replicas`` processes of each consumer stage from now on: the missing ones start, the extra
        ones stop (their groups rebalance); ingestion, Triton and the servers stay as they are."""
        if replicas < 1:
            raise InfraError(f"replicas must be at least 1; got {replicas}")
        self.replicas = replicas
        wanted = self.service_names
        for name in [n for n in self.processes if n not in wanted]:
            self.stop_service(name)
        for name in [n for n in wanted if n not in self.processes]:
            self.start_service(name)

    def stop(self) -> None:
        for name in list(self.processes):
            self.stop_service(name)
        self.stack.down()

    def log_tails(self, lines: int = 30) -> dict[str, str]:
        tails = self.stack.log_tails(lines)
        tails.update({name: process.log_tail(lines) for name, process in self.processes.items()})
        return tails
