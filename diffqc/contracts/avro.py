"""Avro on the MES-facing topics: schemas from ``protos/avro``, Confluent framing, a Schema Registry.

    client = registry_client(settings.registry)
    alerts = AvroTopic(client, QUALITY_ALERT, load_schema(ALERT_SCHEMA))
    alerts.register()                 # at start: subject quality.alert-value, compatibility BACKWARD
    data = alerts.encode(record)      # confluent-kafka AvroSerializer: magic byte, schema id, Avro body
    record = alerts.decode(data)      # AvroDeserializer: any registered writer version, read as our schema

Subjects follow TopicNameStrategy (``<topic>-value``). The schema is registered explicitly at
start and the serializer only looks it up (``auto.register.schemas`` off, as in production), so an
incompatible schema stops the service at start with the registry's reasons instead of failing
every message. The decoder reads each message with the schema it was written with, resolved to
the schema this process was built against: a consumer on v1 reads v2 messages (new fields dropped).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fastavro
import httpx
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.security.tls import require_file
from diffqc.settings import RegistrySettings, SettingsError

# Package data, so an installed diffqc (the services image) has them; protos/avro links here.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
ALERT_SCHEMA = SCHEMA_DIR / "quality_alert.avsc"
BACKWARD = "BACKWARD"

# The registry client speaks httpx2 when it is installed (confluent-kafka's choice), else httpx.
try:
    import httpx2

    _TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError, httpx2.TransportError)
except ImportError:
    _TRANSPORT_ERRORS = (httpx.TransportError,)


class SchemaRejected(RuntimeError):
    """The registry refused a schema (incompatible with the subject's earlier versions, or invalid)."""


class RegistryAuthFailed(DependencyUnavailable):
    """The registry refused our credentials (401) or this user (403). Retried like an outage, so no
    message is dead-lettered for it while the credentials are put right."""


class UndecodableValue(ValueError):
    """A message value that is not Confluent-framed Avro of a schema the registry knows."""


def load_schema(path: str | Path) -> Schema:
    """An Avro schema file as a registry ``Schema``; a malformed file fails here, naming the file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        fastavro.parse_schema(json.loads(text))
    except Exception as exc:  # json.JSONDecodeError, fastavro.schema.SchemaParseException ...
        raise ValueError(f"{path}: not a valid Avro schema: {exc}") from None
    return Schema(text, "AVRO")


def registry_security(settings: RegistrySettings) -> dict:
    """The client's basic auth and TLS properties (none by default), checked, naming the variable."""
    user, password = settings.username, settings.password
    if (user is None) != (password is None):
        given, missing = ("USERNAME", "PASSWORD") if password is None else ("PASSWORD", "USERNAME")
        raise SettingsError(f"DIFFQC_REGISTRY_{given} is set but DIFFQC_REGISTRY_{missing} is not")
    config = {}
    if user is not None and password is not None:
        if ":" in user:  # basic auth joins them with ':' (RFC 7617)
            raise SettingsError("DIFFQC_REGISTRY_USERNAME: a basic-auth user name cannot contain ':'")
        config["basic.auth.user.info"] = f"{user}:{password.get_secret_value()}"
    if settings.ca_file is not None:
        if not settings.url.startswith("https:"):
            raise SettingsError(
                f"DIFFQC_REGISTRY_CA_FILE is set but DIFFQC_REGISTRY_URL ({settings.url}) is not https, "
                "so it would be unused"
            )
        config["ssl.ca.location"] = str(require_file(settings.ca_file, "DIFFQC_REGISTRY_CA_FILE"))
    return config


def registry_client(settings: RegistrySettings) -> SchemaRegistryClient:
    # One quick retry of its own: outages are waited out by the callers (consume loop, start-up waits).
    config = {"url": settings.url, "timeout": settings.timeout_s, "max.retries": 1, **registry_security(settings)}
    try:
        return SchemaRegistryClient(config)
    except ssl.SSLError as exc:  # the CA file is read here
        raise SettingsError(
            f"DIFFQC_REGISTRY_CA_FILE: {settings.ca_file} holds no PEM CA certificate ({exc})"
        ) from None


def value_subject(topic: str) -> str:
    """The subject of ``topic``'s values under TopicNameStrategy: ``<topic>-value``."""
    return str(topic_subject_name_strategy(SerializationContext(topic, MessageField.VALUE), None))


@contextmanager
def registry_errors(url: str) -> Iterator[None]:
    """An unreachable or failing registry is DependencyUnavailable (retried); a refusal is SchemaRejected."""
    try:
        yield
    except _TRANSPORT_ERRORS as exc:
        raise DependencyUnavailable(f"schema registry at {url} unreachable: {exc.__class__.__name__}: {exc}") from None
    except SchemaRegistryError as exc:
        if exc.http_status_code == 401:
            raise RegistryAuthFailed(
                f"schema registry at {url} refused the credentials (HTTP 401 {exc.error_message}): set "
                "DIFFQC_REGISTRY_USERNAME and DIFFQC_REGISTRY_PASSWORD to a user it accepts"
            ) from None
        if exc.http_status_code == 403:
            raise RegistryAuthFailed(
                f"schema registry at {url} does not allow the user of DIFFQC_REGISTRY_USERNAME this request "
                f"(HTTP 403 {exc.error_message})"
            ) from None
        if exc.http_status_code in (408, 429) or exc.http_status_code >= 500:
            raise DependencyUnavailable(
                f"schema registry at {url}: HTTP {exc.http_status_code} {exc.error_message}"
            ) from None
        raise SchemaRejected(
            f"schema registry at {url} refused the request (HTTP {exc.http_status_code}, "
            f"error {exc.error_code}): {exc.error_message}"
        ) from None


class AvroTopic:
    """Encode and decode the values of one Avro topic with confluent-kafka's serializer pair."""

    def __init__(self, client: SchemaRegistryClient, topic: str, schema: Schema):
        self.client, self.topic, self.schema = client, topic, schema
        self.subject = value_subject(topic)
        self.url = client.config().get("url", "?")
        self._context = SerializationContext(topic, MessageField.VALUE)
        strategy = {"subject.name.strategy": topic_subject_name_strategy}
        self._serializer = AvroSerializer(client, schema, conf={"auto.register.schemas": False, **strategy})
        self._deserializer = AvroDeserializer(client, schema, conf=strategy)

    def register(self, compatibility: str = BACKWARD) -> int:
        """Set the subject's compatibility level, then register the schema (a no-op if it is); its id."""
        with registry_errors(self.url):
            self.client.set_compatibility(self.subject, compatibility)
            return self.client.register_schema(self.subject, self.schema)

    def register_at_start(self, timeout_s: float) -> int:
        """Wait (bounded) for the registry to answer, then ``register``; a refusal raises SchemaRejected
        (RegistryAuthFailed for our credentials) at once, since no retry can fix it."""
        wait_for("schema registry", self.url, self._answers, timeout_s)
        return self.register()

    def _answers(self) -> None:
        try:
            with registry_errors(self.url):
                self.client.get_subjects()
        except RegistryAuthFailed:
            pass  # it answers: ``register`` reports the refusal without waiting out the timeout

    def encode(self, record: dict) -> bytes:
        with registry_errors(self.url):
            return self._serializer(record, self._context)

    def decode(self, data: bytes | None) -> dict:
        if not data:
            raise UndecodableValue("empty message value")
        try:
            with registry_errors(self.url):
                return self._deserializer(data, self._context)
        except SchemaRejected as exc:  # e.g. a schema id the registry does not know
            raise UndecodableValue(str(exc)) from None
        except (SerializationError, ValueError, TypeError, EOFError, IndexError, OverflowError) as exc:
            raise UndecodableValue(f"not Avro of subject {self.subject}: {exc.__class__.__name__}: {exc}") from None
