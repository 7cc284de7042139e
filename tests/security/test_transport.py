"""gRPC transport security over real connections, with certificates made in the test (tests/helpers/certs.py):
a GrpcServer with mutual TLS, with server-only TLS, the clients' ``channel`` helper, the health probe,
the gateway's ingestion client, and Triton's own TLS endpoint through the inference service's client."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from diffqc.infra.services import grpc_is_serving
from diffqc.infra.triton import triton_server
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.security.tls import channel
from diffqc.serving.client import TritonDetector
from diffqc.settings import GrpcSettings, SettingsError, TritonSettings
from diffqc.v1 import scoring_pb2_grpc
from services.gateway.ingest import IngestionClient
from services.ingestion.service import SERVICE_NAME as INGESTION
from tests.helpers.certs import Pki, make_pki
from tests.helpers.scoring_server import score_request
from tests.helpers.slow_scoring_service import SERVICE_NAME, SlowScoring

TRITON_REPO = Path(__file__).parents[1] / "infra" / "triton_repo"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _server(settings: GrpcSettings) -> GrpcServer:
    servicer = SlowScoring(0.0)
    server = GrpcServer(
        "tls-test",
        lambda s: scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, s),
        [SERVICE_NAME, INGESTION],
        grpc_settings=settings,
    )
    server.start()
    return server


@pytest.fixture(scope="module")
def mtls_server(pki):
    server = _server(
        GrpcSettings(
            tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_ca_file=pki.ca_cert, tls_client_auth=True
        )
    )
    yield server
    server.stop(grace=0)


@pytest.fixture(scope="module")
def tls_server(pki):
    """Server-only TLS: no CA, so clients verify the server but present nothing."""
    server = _server(GrpcSettings(tls_cert_file=pki.server_cert, tls_key_file=pki.server_key))
    yield server
    server.stop(grace=0)


def _client(pki: Pki, **changes) -> GrpcSettings:
    """A client with the trusted CA and a certificate of it, unless ``changes`` say otherwise."""
    fields = {"tls_ca_file": pki.ca_cert, "tls_cert_file": pki.client_cert, "tls_key_file": pki.client_key}
    return GrpcSettings(**{**fields, **changes})


def _score(address: str, settings: GrpcSettings, options=()) -> str:
    with channel(address, settings, options) as client:
        return (
            scoring_pb2_grpc.ScoringServiceStub(client).Score(score_request("f-tls"), timeout=5).verdict.frame.frame_id
        )


def _refused(address: str, settings: GrpcSettings | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        if settings is None:
            with grpc.insecure_channel(address) as plain:
                scoring_pb2_grpc.ScoringServiceStub(plain).Score(score_request(), timeout=5)
        else:
            _score(address, settings)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
    return err.value


def test_mutual_tls_answers_a_client_with_a_certificate_of_the_ca(mtls_server, pki):
    assert mtls_server.security == "mutual TLS"
    assert _score(mtls_server.address, _client(pki)) == "f-tls"
    # Dialled by a name the certificate lacks, the expected name is set explicitly.
    assert _score(f"127.0.0.1:{mtls_server.port}", _client(pki, tls_server_name="localhost")) == "f-tls"


def test_mutual_tls_refuses_no_certificate_an_untrusted_one_and_plaintext(mtls_server, pki):
    _refused(mtls_server.address, _client(pki, tls_cert_file=None, tls_key_file=None))
    _refused(mtls_server.address, _client(pki, tls_cert_file=pki.other_client_cert, tls_key_file=pki.other_client_key))
    _refused(mtls_server.address)  # a plaintext client


def test_clients_refuse_a_server_they_cannot_verify(mtls_server, pki):
    _refused(mtls_server.address, _client(pki, tls_ca_file=pki.other_ca_cert))
    _refused(mtls_server.address, _client(pki, tls_server_name="wrong.example"))


def test_server_only_tls_verifies_the_server_and_asks_no_client_certificate(tls_server, pki):
    assert tls_server.security == "TLS"
    assert _score(tls_server.address, GrpcSettings(tls_ca_file=pki.ca_cert)) == "f-tls"
    _refused(tls_server.address)
    _refused(tls_server.address, GrpcSettings(tls_ca_file=pki.other_ca_cert))


def test_the_health_probe_and_the_gateways_ingestion_client_speak_tls(mtls_server, pki):
    assert grpc_is_serving(mtls_server.address, grpc_settings=_client(pki))
    assert not grpc_is_serving(mtls_server.address)
    gateway = IngestionClient(mtls_server.address, 5, _client(pki))
    plain = IngestionClient(mtls_server.address, 5)
    try:
        assert gateway.serving() and not plain.serving()
    finally:
        gateway.close()
        plain.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls_key_file": None}, "DIFFQC_GRPC_TLS_CERT_FILE is set but DIFFQC_GRPC_TLS_KEY_FILE is not"),
        ({"tls_cert_file": None}, "DIFFQC_GRPC_TLS_KEY_FILE is set but DIFFQC_GRPC_TLS_CERT_FILE is not"),
        ({"tls_ca_file": None}, "DIFFQC_GRPC_TLS_CLIENT_AUTH needs"),
        ({"tls_key_file": "client_key"}, "are not a PEM certificate chain and its unencrypted private key"),
        ({"tls_cert_file": "garbage"}, "are not a PEM certificate chain"),
        ({"tls_ca_file": "garbage"}, "DIFFQC_GRPC_TLS_CA_FILE: .* holds no PEM CA certificate"),
        ({"tls_ca_file": "missing"}, "DIFFQC_GRPC_TLS_CA_FILE: .* does not exist"),
    ],
)
def test_bad_server_settings_fail_naming_the_variable(pki, tmp_path, changes, message):
    files = {"client_key": pki.client_key, "garbage": tmp_path / "garbage.pem", "missing": tmp_path / "missing.pem"}
    files["garbage"].write_text("not PEM\n")
    good = {
        "tls_cert_file": pki.server_cert,
        "tls_key_file": pki.server_key,
        "tls_ca_file": pki.ca_cert,
        "tls_client_auth": True,
    }
    settings = GrpcSettings(**{**good, **{k: files.get(v, v) for k, v in changes.items()}})
    with pytest.raises(SettingsError, match=message):
        GrpcServer("bad-tls", lambda _server: None, [], grpc_settings=settings)


def test_half_set_client_settings_are_an_error_not_a_plaintext_channel(pki):
    with pytest.raises(SettingsError, match="DIFFQC_GRPC_TLS_SERVER_NAME is set but gRPC TLS is off"):
        channel("127.0.0.1:1", GrpcSettings(tls_server_name="ingestion.plant"))
    with pytest.raises(SettingsError, match="DIFFQC_GRPC_TLS_KEY_FILE is set but DIFFQC_GRPC_TLS_CERT_FILE is not"):
        channel("127.0.0.1:1", GrpcSettings(tls_key_file=pki.client_key))


@pytest.fixture(scope="module")
def triton_tls(pki, tmp_path_factory):
    """tritonserver with mutual TLS on its gRPC port (its HTTP port, for the readiness probe, stays plaintext)."""
    work = tmp_path_factory.mktemp("triton-tls")
    grpc_port = free_port()
    plain = triton_server(TRITON_REPO, free_port(), grpc_port, free_port(), work, work / "triton.log")
    flags = [
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={pki.server_cert}",
        f"--grpc-server-key={pki.server_key}",
        f"--grpc-root-cert={pki.ca_cert}",
    ]
    server = replace(plain, argv=[*plain.argv, *flags])
    assert isinstance(server, ServerProcess)
    server.start()
    yield f"127.0.0.1:{grpc_port}"
    server.stop()


def _double(client: grpcclient.InferenceServerClient) -> np.ndarray:
    x = np.arange(3, dtype=np.float32).reshape(1, 3)
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer("double", [inp]).as_numpy("Y")


def test_the_triton_client_uses_tls_with_the_grpc_certificate(triton_tls, pki):
    settings = TritonSettings(grpc_url=triton_tls, tls_ca_file=pki.ca_cert)
    detector = TritonDetector(settings, grpc_settings=_client(pki))
    np.testing.assert_array_equal(_double(detector.client), [[0.0, 2.0, 4.0]])
    # Triton requires a client certificate; plaintext or TLS without one is refused.
    for refused in (TritonDetector(TritonSettings(grpc_url=triton_tls)), TritonDetector(settings)):
        with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
            refused.client.is_server_live(client_timeout=5)
    with pytest.raises(SettingsError, match="DIFFQC_TRITON_TLS_CA_FILE: .* does not exist"):
        TritonDetector(TritonSettings(grpc_url=triton_tls, tls_ca_file=pki.ca_cert.with_name("nope.crt")))
