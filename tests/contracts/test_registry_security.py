"""The schema registry client with basic auth and TLS, against diffqc's local registry demanding them:
real HTTP(S) round trips (register, then a second client fetching the schema by id), refusals that name
the variable to fix, and settings that cannot work failing before any request."""

from __future__ import annotations

import ssl
import threading
import time
import uuid

import httpx
import pytest

from diffqc.alerts import alert_record
from diffqc.contracts.avro import ALERT_SCHEMA, AvroTopic, RegistryAuthFailed, load_schema, registry_client
from diffqc.infra.registry import RegistryServer
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import RegistrySettings, SettingsError
from tests.helpers.certs import make_pki
from tests.helpers.verdicts import LINKS, verdict

USER, PASSWORD = "diffqc-bridge", "s3cret:with-colon"


def _serve(server: RegistryServer):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def auth_registry():
    server = RegistryServer(credentials=(USER, PASSWORD))
    _serve(server)
    yield server.url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_registry(pki):
    server = RegistryServer(credentials=(USER, PASSWORD))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _serve(server)
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _topic(url: str, **settings) -> AvroTopic:
    client = registry_client(RegistrySettings(url=url, timeout_s=5, **settings))
    return AvroTopic(client, f"quality.alert.auth-{uuid.uuid4().hex[:8]}", load_schema(ALERT_SCHEMA))


def _round_trip(url: str, **settings) -> None:
    writer = _topic(url, **settings)
    schema_id = writer.register()
    record = alert_record(verdict(), LINKS)
    data = writer.encode(record)
    assert int.from_bytes(data[1:5], "big") == schema_id
    # Another client, with an empty cache, fetches the writer's schema by id to decode.
    reader = AvroTopic(registry_client(RegistrySettings(url=url, **settings)), writer.topic, writer.schema)
    assert reader.decode(data) == record
    assert writer.subject in reader.client.get_subjects()


def test_register_and_fetch_with_basic_auth(auth_registry):
    _round_trip(auth_registry, username=USER, password=PASSWORD)


def test_the_registry_refuses_requests_without_or_with_wrong_credentials(auth_registry):
    answer = httpx.get(f"{auth_registry}/subjects")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    for settings in ({}, {"username": USER, "password": "wrong"}, {"username": "nobody", "password": PASSWORD}):
        with pytest.raises(RegistryAuthFailed, match="HTTP 401.*DIFFQC_REGISTRY_USERNAME and DIFFQC_REGISTRY_PASSWORD"):
            _topic(auth_registry, **settings).register()


def test_refused_credentials_are_retried_like_an_outage_never_dead_lettered(auth_registry):
    good = _topic(auth_registry, username=USER, password=PASSWORD)
    good.register()
    data = good.encode(alert_record(verdict(), LINKS))
    wrong = AvroTopic(
        registry_client(RegistrySettings(url=auth_registry, username=USER, password="wrong")), good.topic, good.schema
    )
    # DependencyUnavailable: the consume loop keeps the message and retries, where UndecodableValue
    # would send it to the dead-letter topic.
    with pytest.raises(RegistryAuthFailed) as refused:
        wrong.decode(data)
    assert isinstance(refused.value, DependencyUnavailable)
    started = time.monotonic()
    with pytest.raises(RegistryAuthFailed, match="DIFFQC_REGISTRY_USERNAME"):
        wrong.register_at_start(timeout_s=30)  # the registry answers: no waiting out the timeout
    assert time.monotonic() - started < 5


def test_https_with_the_ca_file(https_registry, pki):
    _round_trip(https_registry, username=USER, password=PASSWORD, ca_file=pki.ca_cert)
    with pytest.raises(DependencyUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        _topic(https_registry, username=USER, password=PASSWORD).register()  # the system CAs do not know it
    with pytest.raises(DependencyUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        _topic(https_registry, username=USER, password=PASSWORD, ca_file=pki.other_ca_cert).register()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"username": USER}, "DIFFQC_REGISTRY_USERNAME is set but DIFFQC_REGISTRY_PASSWORD is not"),
        ({"password": PASSWORD}, "DIFFQC_REGISTRY_PASSWORD is set but DIFFQC_REGISTRY_USERNAME is not"),
        ({"username": "a:b", "password": PASSWORD}, "DIFFQC_REGISTRY_USERNAME: .* cannot contain ':'"),
        ({"ca_file": "ca"}, "DIFFQC_REGISTRY_CA_FILE is set but DIFFQC_REGISTRY_URL .* is not https"),
        ({"url": "https://r:8081", "ca_file": "missing"}, "DIFFQC_REGISTRY_CA_FILE: .* does not exist"),
        ({"url": "https://r:8081", "ca_file": "garbage"}, "DIFFQC_REGISTRY_CA_FILE: .* holds no PEM CA certificate"),
    ],
)
def test_settings_that_cannot_work_fail_naming_the_variable(pki, tmp_path, settings, message):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    files = {"ca": pki.ca_cert, "missing": tmp_path / "missing.pem", "garbage": garbage}
    if "ca_file" in settings:
        settings = {**settings, "ca_file": files[settings["ca_file"]]}
    with pytest.raises(SettingsError, match=message):
        registry_client(RegistrySettings(**{"url": "http://127.0.0.1:8081", **settings}))
