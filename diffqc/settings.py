"""One typed settings model for every diffqc process.

Values come from ``DIFFQC_*`` environment variables (a group and its field joined by ``_``, e.g.
``DIFFQC_KAFKA_BOOTSTRAP_SERVERS`` for ``kafka.bootstrap_servers``) and from an optional YAML file
named by ``DIFFQC_CONFIG`` with the same structure; environment variables win. Every field is
documented in docs/configuration.md, and a test keeps that table and this model in step.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from diffqc.core.validation import render_errors
from diffqc.security.api_keys import parse_entry

ENV_PREFIX = "DIFFQC_"
NESTED_DELIMITER = "_"
CONFIG_FILE_VARIABLE = "DIFFQC_CONFIG"

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    return value


HttpUrlStr = Annotated[NonEmptyStr, AfterValidator(_http_url)]


class SettingsError(RuntimeError):
    """A setting is malformed or missing; the message names the variable."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently ignored


class KafkaSettings(_Group):
    bootstrap_servers: NonEmptyStr = Field("127.0.0.1:9092", description="Kafka bootstrap servers (host:port,...)")
    group_prefix: NonEmptyStr = Field("diffqc", description="Prefix of every consumer group id")
    session_timeout_ms: int = Field(10_000, ge=1000, description="Consumer group session timeout")
    dead_letter_suffix: NonEmptyStr = Field(".dlq", description="Suffix of the dead-letter topic of each input topic")
    max_retries: int = Field(5, ge=0, description="Retries of a failing message before it is dead-lettered")
    retry_backoff_s: float = Field(0.2, gt=0, description="First retry delay; doubles per retry")
    retry_backoff_max_s: float = Field(5.0, gt=0, description="Upper bound of one retry delay")
    fetch_wait_max_ms: int = Field(
        20,
        ge=1,
        le=500,
        description="Longest a consumer's fetch waits for new messages (librdkafka "
        "fetch.wait.max.ms): a low value keeps each hop's latency low where the broker holds a fetch for the "
        "whole wait (tansu: 200 ms per hop at the 500 ms default, 3 ms at 10 ms)",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client (producer, consumer, admin) reaches the brokers; "
        "SASL_SSL on a plant network",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    sasl_username: NonEmptyStr | None = Field(None, description="SASL user name (required with SASL_*)")
    sasl_password: SecretStr | None = Field(None, description="SASL password (required with SASL_*; from a Secret)")
    ssl_ca_location: Path | None = Field(None, description="CA certificate (PEM) that signs the brokers' certificates")
    ssl_certificate_location: Path | None = Field(
        None, description="Client certificate (PEM) when the brokers require mutual TLS"
    )
    ssl_key_location: Path | None = Field(None, description="Private key (PEM) of the client certificate")
    ssl_key_password: SecretStr | None = Field(None, description="Password of the client key, when it has one")
    max_poll_interval_ms: int = Field(
        300_000,
        ge=1000,
        description="Longest a consumer may go between polls before the group evicts it (librdkafka "
        "max.poll.interval.ms); while a dependency is down a stage pauses its partitions and keeps polling, "
        "so an outage of any length stays within it",
    )
    poison_attempts: int = Field(
        2,
        ge=2,
        description="A message whose handling began this many times without finishing (the process died each "
        "time: out of memory, SIGKILL) is dead-lettered without handling it again; counted in the database "
        "(table poison_attempts) by the stages that have one",
    )


class GrpcSettings(_Group):
    tls_cert_file: Path | None = Field(
        None,
        description="Certificate chain (PEM) a service presents on its gRPC port and, with a CA set, as a client "
        "(mutual TLS); unset = plaintext gRPC",
    )
    tls_key_file: Path | None = Field(None, description="Private key (PEM) of the gRPC certificate")
    tls_ca_file: Path | None = Field(
        None, description="CA certificate (PEM) that gRPC clients verify servers with, and servers verify clients with"
    )
    tls_client_auth: bool = Field(
        False, description="gRPC servers refuse clients without a certificate signed by the CA (mutual TLS)"
    )
    tls_server_name: NonEmptyStr | None = Field(
        None, description="Name gRPC clients expect in the server certificate when it differs from the host dialled"
    )


class DatabaseSettings(_Group):
    url: NonEmptyStr = Field(
        "sqlite:///var/diffqc.db", description="SQLAlchemy URL (postgresql+psycopg://... in production)"
    )


class InfluxSettings(_Group):
    url: NonEmptyStr = Field("http://127.0.0.1:8086", description="InfluxDB v2 API base URL")
    token: NonEmptyStr = Field("diffqc-dev-token", description="InfluxDB API token")
    org: NonEmptyStr = Field("diffqc", description="InfluxDB organisation")
    bucket: NonEmptyStr = Field("quality", description="InfluxDB bucket for anomaly scores and SPC signals")


class TritonSettings(_Group):
    grpc_url: NonEmptyStr = Field("127.0.0.1:8001", description="Triton gRPC endpoint (host:port)")
    model_name: NonEmptyStr = Field("diffqc_detector", description="Model name in the Triton model repository")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one inference request")
    tls_ca_file: Path | None = Field(
        None,
        description="CA certificate (PEM) of Triton's TLS gRPC endpoint; unset = plaintext (keep Triton "
        "reachable only inside the namespace then)",
    )
    model_control: Literal["explicit", "poll"] = Field(
        "explicit",
        description="How Triton picks its model versions: explicit (it serves what the model registry needs; "
        "a promotion, rollback or archive from the dashboard loads and unloads versions through Triton's model "
        "control API) or poll (it serves every staged version by itself; such changes touch the registry only)",
    )


class ServiceSettings(_Group):
    host: NonEmptyStr = Field(
        "127.0.0.1", description="Address the gRPC and metrics servers bind (0.0.0.0 in a container)"
    )
    grpc_port: int = Field(50051, ge=0, le=65535, description="Port of the service's gRPC server (0 = any)")
    metrics_port: int = Field(9100, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint")
    grpc_workers: int = Field(8, ge=1, description="Threads serving gRPC calls")
    shutdown_grace_s: float = Field(20.0, ge=0, description="On SIGTERM, how long in-flight work may take to finish")
    stream_workers: int = Field(
        2, ge=1, description="Consumers per process in the service's Kafka consumer group (frames in flight)"
    )
    startup_timeout_s: float = Field(30.0, gt=0, description="How long to retry a dependency at start before failing")


class IngestionSettings(_Group):
    max_image_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1,
        description="Largest encoded image accepted (bytes); the gRPC message limit "
        "follows it (plus 4 MiB for the metadata)",
    )
    max_pixels: int = Field(
        64_000_000,
        ge=1,
        description="Largest image accepted (width x height, read from the header before "
        "decoding: the decompression-bomb guard)",
    )
    memory_budget_bytes: int = Field(
        1024**3,
        ge=64 * 1024**2,
        description="Memory one image may take while ingestion, preprocessing or `diffqc detect` decodes and "
        "normalizes it (size the pod's limit above it); the pixel limit is the smaller of max_pixels and "
        "budget / (channels x 4 bytes x 3.25 working copies), checked from the header before decoding",
    )
    max_metadata_bytes: int = Field(
        16 * 1024,
        ge=1024,
        description="Largest frame metadata accepted (the Frame message without the image: ids, process "
        "parameters, image reference), so that no event outgrows the broker's message limit",
    )
    require_frame_id: bool = Field(
        False,
        description="Reject frames without a frame_id instead of assigning a UUID (a re-sent frame "
        "without one cannot be recognised as a duplicate)",
    )
    produce_timeout_s: float = Field(
        10.0, gt=0, description="How long a frame's qc.frames.v1 event may take to be acknowledged by the broker"
    )
    create_topic: bool = Field(
        True,
        description="Create qc.frames.v1 at start when it is missing (local runs); false where a provisioning step "
        "creates the topics with their replication (the chart, compose): ingestion then waits for the topic",
    )
    topic_partitions: int = Field(
        4,
        ge=1,
        description="Partitions of qc.frames.v1 when ingestion creates it at start (an existing topic "
        "is left as it is)",
    )
    max_streams: int = Field(
        100,
        ge=1,
        description="Camera streams (Ingest calls) one process serves at once; one more is refused with "
        "RESOURCE_EXHAUSTED (the camera retries with backoff or another replica). Each holds a gRPC thread, on "
        "top of the service's grpc_workers, which stay free for single frames and health probes",
    )
    max_frames_in_flight: int = Field(
        4,
        ge=1,
        description="Frames one process checks, decodes and stores at once, over all streams; the others wait "
        "unread, so HTTP/2 flow control holds their cameras back (memory: about this many times the image "
        "limit plus the decode budget)",
    )


class ScoringSettings(_Group):
    process_weight: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Weight of the process-context deviation in the fused score "
        "(the image components share the rest: pixel 0.4, structural 0.3, concentration 0.2)",
    )
    region_level: float = Field(
        3.0,
        gt=0,
        description="Anomaly-map level outlining a defect region when the model version's "
        "metrics carry no region_level",
    )
    line_protocol_file: Path | None = Field(
        None,
        description="When set, score points are appended to this file as InfluxDB line protocol "
        "instead of written to InfluxDB",
    )


class RegistrySettings(_Group):
    url: HttpUrlStr = Field(
        "http://127.0.0.1:8081",
        description="Confluent-compatible Schema Registry of the Avro topics (quality.alert); "
        "`diffqc infra up` runs a small one locally",
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one Schema Registry request")
    username: NonEmptyStr | None = Field(None, description="Schema Registry basic-auth user (unset = no auth)")
    password: SecretStr | None = Field(None, description="Schema Registry basic-auth password (from a Secret)")
    ca_file: Path | None = Field(None, description="CA certificate (PEM) of an https Schema Registry")


class BridgeSettings(_Group):
    mes_webhook_url: HttpUrlStr | None = Field(
        None, description="MES endpoint every alert is POSTed to as JSON (required by the bridge)"
    )
    mes_auth_header: NonEmptyStr = Field("Authorization", description="Name of the auth header sent to the MES")
    mes_auth_value: SecretStr | None = Field(
        None, description="Value of the auth header (e.g. `Bearer <token>`); no header when unset"
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one webhook or line-stop request")
    backoff_base_s: float = Field(1.0, gt=0, description="Delay before an alert's second attempt; doubles per attempt")
    backoff_max_s: float = Field(300.0, gt=0, description="Upper bound of the delay between two attempts of an alert")
    line_stop_url: HttpUrlStr | None = Field(
        None, description="Endpoint that stops a line, POSTed once per alert of a stopping severity; unset = never"
    )
    line_stop_severities: list[Literal["MINOR", "MAJOR", "CRITICAL"]] = Field(
        ["CRITICAL"], description="Alert severities that request a line stop (JSON list)"
    )
    poll_interval_s: float = Field(1.0, gt=0, description="How often the delivery loop looks for due alerts")
    batch_size: int = Field(50, ge=1, description="Alerts the delivery loop claims per round")


SpcRuleId = Literal[
    "we1", "we2", "we3", "we4",
    "nelson1", "nelson2", "nelson3", "nelson4", "nelson5", "nelson6", "nelson7", "nelson8",
    "ewma", "cusum", "pchart",
]  # fmt: skip


def _one_name_per_test(rules: list[str]) -> list[str]:
    from diffqc.spc.rules import rules_by_id  # here, not at the top: diffqc.spc imports these settings

    rules_by_id([r for r in rules if r.startswith(("we", "nelson"))])
    return rules


class SpcSettings(_Group):
    baseline_size: int = Field(
        30,
        ge=2,
        description="Good parts of a line, product type and model version whose scores fix the individuals-chart "
        "limits (Phase I) before the rules run; parts judged defective never enter it",
    )
    rules: Annotated[list[SpcRuleId], AfterValidator(_one_name_per_test)] = Field(
        ["we1", "we2", "we3", "we4", "pchart"],
        description="Rules that raise SPC signals, as a JSON list: the Western Electric rules we1..we4 (default; "
        "in-control run length ~92 points), the Nelson rules nelson1..nelson8 (opt-in; nelson1/5/6 are we1/2/3), "
        "ewma and cusum on the scores, pchart on the defect rate per lot",
    )
    ewma_lambda: float = Field(0.2, gt=0, le=1, description="Weight of the newest point in the EWMA chart")
    ewma_width: float = Field(3.0, gt=0, description="EWMA limits in multiples of the EWMA's own sigma (L)")
    cusum_k: float = Field(0.5, ge=0, description="CUSUM allowance in sigmas (half the shift it is tuned to)")
    cusum_h: float = Field(5.0, gt=0, description="CUSUM decision interval in sigmas")
    rebase_delay_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds from a re-base to the first point its limits judge: every bridge replica reads them "
        "first (they poll every half of it), so live charts and the dashboard's agree",
    )
    rebase_min_parts: int = Field(20, ge=2, description="Good parts a re-base window needs at least")
    rebase_max_parts: int = Field(
        100_000, ge=2, description="Good parts a re-base window may hold at most (choose a shorter window beyond)"
    )
    p_baseline_lots: int = Field(5, ge=1, description="Closed lots whose pooled defect rate is the p-chart centre line")
    history_size: int = Field(
        500, ge=15, description="Recent points, signals and lots kept per chart (for the state and the picture)"
    )


class DriftSettings(_Group):
    reference_size: int = Field(
        200,
        ge=20,
        description="Good parts of a line, product type and model version whose scores and component scores are "
        "the drift reference (the first ones judged by that model version)",
    )
    window: int = Field(200, ge=20, description="Recent good parts compared with the reference")
    check_every: int = Field(50, ge=1, description="Good parts between two drift tests of a chart")
    alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Significance of the two-sample KS test, before the correction for the quantities",
    )
    psi_threshold: float = Field(
        0.25, gt=0, description="Population stability index above which a significant shift counts as drift"
    )
    confirm_checks: int = Field(
        2,
        ge=1,
        description="Drift tests in a row that must find drift before the event (one more check_every of delay; "
        "with 1, about 1 stream in 130 of 2000 in-control parts raised a false event, measured in docs/drift.md)",
    )


def _bootstrap_keys(entries: list[SecretStr]) -> list[SecretStr]:
    for number, entry in enumerate(entries, 1):
        try:
            parse_entry(entry.get_secret_value())
        except ValueError as exc:
            raise ValueError(f"entry {number}: {exc}") from None
    return entries


class GatewaySettings(_Group):
    http_host: NonEmptyStr = Field(
        "127.0.0.1", description="Address the gateway's HTTP server binds (0.0.0.0 in a container)"
    )
    http_port: int = Field(8080, ge=0, le=65535, description="Port of the gateway's HTTP server (REST API, dashboard)")
    api_keys: Annotated[list[SecretStr], AfterValidator(_bootstrap_keys)] = Field(
        [],
        description="API keys provisioned from a Secret, besides those in the database (`diffqc keys create`): a "
        'JSON list of salted hashes with roles, each `"<role>:<name>:<prefix>:scrypt$<n>$<r>$<p>$<salt>$<hash>"` '
        "as `diffqc keys hash --role ROLE --name NAME` prints it (never a plain key); roles: viewer, operator, admin",
    )
    api_key_header: NonEmptyStr = Field(
        "X-API-Key", description="Request header that carries the API key (`Authorization: Bearer <key>` works too)"
    )
    session_secret: SecretStr | None = Field(
        None,
        description="HMAC secret that signs the dashboard's session cookies; unset = a random one per process "
        "(sessions end when it restarts; set it, from a Secret, when several replicas serve the dashboard)",
    )
    session_ttl_s: float = Field(8 * 3600.0, gt=0, description="How long a dashboard login lasts")
    key_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long the gateway trusts an API key or session it checked: a revoked key stops working "
        "within this time on every replica (at once on the one that revoked it)",
    )
    max_upload_bytes: int = Field(
        65 * 1024 * 1024,
        ge=1,
        description="Largest upload request body (image, metadata, multipart framing); "
        "refused with 413 from its Content-Length before it is read, or once the stream passes it",
    )
    ingestion_url: NonEmptyStr = Field(
        "127.0.0.1:50051", description="gRPC address (host:port) of the ingestion service that uploads go to"
    )
    ingest_timeout_s: float = Field(30.0, gt=0, description="Timeout of one IngestOne call to ingestion")
    wait_timeout_s: float = Field(
        30.0, gt=0, description="Longest an upload with wait=true waits for its verdict before it answers without one"
    )
    public_url: HttpUrlStr = Field(
        "http://127.0.0.1:8080", description="Base URL of the gateway as the MES reaches it (links in alerts)"
    )
    link_secret: SecretStr | None = Field(
        None,
        description="HMAC secret that signs the expiring image and heatmap links in alerts; unset = the links "
        "need an API key",
    )
    link_ttl_s: float = Field(7 * 24 * 3600.0, gt=0, description="How long a signed link in an alert stays valid")
    reconstructions_at_once: int = Field(
        1,
        ge=0,
        le=16,
        description="Reconstructions (the review page's picture of a good part) the gateway computes at once, "
        "each running every tile of a frame through Triton; more are refused with 429; 0 turns them off",
    )


class BlobSettings(_Group):
    backend: Literal["file", "s3"] = Field(
        "file",
        description="Where images, anomaly maps and heatmaps are stored: file (DIFFQC_BLOB_ROOT, a volume every "
        "service mounts) or s3 (an S3-API object store, e.g. MinIO, that several nodes read)",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 API endpoint (http://minio:9000); unset = AWS's endpoint for the region"
    )
    s3_bucket: NonEmptyStr = Field("diffqc-blobs", description="Bucket of the blobs (created when missing)")
    s3_region: NonEmptyStr = Field("us-east-1", description="Region of the bucket")
    s3_access_key_id: SecretStr | None = Field(
        None, description="Access key id (from a Secret; unset = the SDK's chain)"
    )
    s3_secret_access_key: SecretStr | None = Field(None, description="Secret access key (from a Secret)")


class RetentionSettings(_Group):
    blob_days: float = Field(
        30.0,
        ge=0,
        description="Blobs (images, maps, heatmaps) older than this are deleted by diffqc retention; 0 = kept",
    )
    row_days: float = Field(
        365.0,
        ge=0,
        description="Frames, inspections and trial scores older than this are deleted by diffqc retention "
        "(labelled inspections are kept); 0 = kept",
    )
    disk_high_water: float = Field(
        0.85,
        gt=0,
        le=1,
        description="Share of the blob volume in use above which diffqc retention deletes the oldest blobs, "
        "whatever their age, until the use is below disk_low_water (file backend)",
    )
    disk_low_water: float = Field(0.75, gt=0, le=1, description="Where deleting by the high-water mark stops")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_nested_max_split=1,  # DIFFQC_KAFKA_BOOTSTRAP_SERVERS -> kafka.bootstrap_servers
        extra="forbid",
        validate_default=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level")
    data_dir: Path = Field(Path("var"), description="Root of local state: blobs, models, embedded servers")
    blob_root: Path = Field(Path("var/blobs"), description="Root of the filesystem blob store (images, maps)")
    blobs: BlobSettings = BlobSettings()
    retention: RetentionSettings = RetentionSettings()
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    influx: InfluxSettings = InfluxSettings()
    triton: TritonSettings = TritonSettings()
    service: ServiceSettings = ServiceSettings()
    grpc: GrpcSettings = GrpcSettings()
    ingestion: IngestionSettings = IngestionSettings()
    scoring: ScoringSettings = ScoringSettings()
    gateway: GatewaySettings = GatewaySettings()
    spc: SpcSettings = SpcSettings()
    drift: DriftSettings = DriftSettings()
    registry: RegistrySettings = RegistrySettings()
    bridge: BridgeSettings = BridgeSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def _variable_name(location: tuple) -> str:
    """Map a pydantic error location to the environment variable a user would set."""
    parts = [str(part) for part in location if not isinstance(part, int)]
    return ENV_PREFIX + NESTED_DELIMITER.join(parts).upper()


def load_settings(**overrides) -> Settings:
    """Build the settings, turning any problem into one message that names the variable."""
    config_file = os.environ.get(CONFIG_FILE_VARIABLE)
    if config_file and not Path(config_file).is_file():
        raise SettingsError(f"{CONFIG_FILE_VARIABLE}: config file {config_file!r} does not exist")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(render_errors(exc, "invalid settings", _variable_name)) from None
    except Exception as exc:  # malformed YAML, or JSON in a nested variable
        raise SettingsError(f"invalid settings: {exc}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_table() -> str:
    """The Markdown table of every variable (docs/configuration.md embeds it; a test keeps them equal)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]

    def add(name: str, field) -> None:
        default = field.default.value if hasattr(field.default, "value") else field.default
        rows.append(f"| `{name}` | `{default}` | {field.description} |")

    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, _Group):
            for sub_name, sub_field in group.model_fields.items():
                add(_variable_name((name, sub_name)), sub_field)
        else:
            add(_variable_name((name,)), field)
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
