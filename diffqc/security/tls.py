"""TLS material named by the settings: the files checked and read, as gRPC credentials and channels.

gRPC servers use TLS when ``DIFFQC_GRPC_TLS_CERT_FILE`` (with its key) is set, and require client
certificates signed by ``DIFFQC_GRPC_TLS_CA_FILE`` with ``DIFFQC_GRPC_TLS_CLIENT_AUTH``. Clients use
TLS when a CA or a certificate is set: they verify the server with the CA (gRPC's bundled roots
without one) and present the certificate, if set, for mutual TLS. Nothing set: plaintext, as before.

Files are read when a server binds or a channel is made, i.e. at start: a rotated certificate is
picked up by a restart (docs/security.md). A problem is a SettingsError naming the variable.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from diffqc.settings import GrpcSettings, SettingsError

CERT_FILE = "DIFFQC_GRPC_TLS_CERT_FILE"
KEY_FILE = "DIFFQC_GRPC_TLS_KEY_FILE"
CA_FILE = "DIFFQC_GRPC_TLS_CA_FILE"
CLIENT_AUTH = "DIFFQC_GRPC_TLS_CLIENT_AUTH"
SERVER_NAME = "DIFFQC_GRPC_TLS_SERVER_NAME"


def require_file(path: Path, variable: str) -> Path:
    """``path`` when it is a readable file, else a SettingsError naming ``variable``."""
    if not path.is_file():
        raise SettingsError(f"{variable}: {path} does not exist or is not a file")
    return path


def _read(path: Path, variable: str) -> bytes:
    try:
        return require_file(path, variable).read_bytes()
    except OSError as exc:  # e.g. a Secret mounted without read permission for the service's user
        raise SettingsError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None


def _no_password() -> str:
    return ""  # an encrypted key fails to load instead of OpenSSL prompting on a terminal


def _check_ca(path: Path, variable: str) -> bytes:
    data = _read(path, variable)
    # gRPC reports a bad PEM only as a failed bind or handshake; the stdlib's parser says what is wrong.
    try:
        ssl.create_default_context().load_verify_locations(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(f"{variable}: {path} holds no PEM CA certificate ({exc})") from None
    return data


def _key_pair(settings: GrpcSettings) -> tuple[bytes, bytes] | None:
    """(private key, certificate chain) when a certificate is set; checked to be PEM and to match."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = (CERT_FILE, KEY_FILE) if key is None else (KEY_FILE, CERT_FILE)
        raise SettingsError(f"{given} is set but {missing} is not: a certificate and its key go together")
    cert_pem, key_pem = _read(cert, CERT_FILE), _read(key, KEY_FILE)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        raise SettingsError(
            f"{CERT_FILE}/{KEY_FILE}: {cert} and {key} are not a PEM certificate chain and its unencrypted "
            f"private key ({exc})"
        ) from None
    return key_pem, cert_pem


def _client_tls(settings: GrpcSettings) -> bool:
    # A lone key is not "off": it fails in _key_pair instead of quietly leaving the channel plaintext.
    return any(f is not None for f in (settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file))


def _check(settings: GrpcSettings) -> None:
    tls_on = _client_tls(settings)
    if settings.tls_client_auth and (settings.tls_cert_file is None or settings.tls_ca_file is None):
        raise SettingsError(
            f"{CLIENT_AUTH} needs {CERT_FILE} and {KEY_FILE} (the server's certificate) and {CA_FILE} "
            "(the CA that signs the clients' certificates)"
        )
    if settings.tls_server_name and not tls_on:
        raise SettingsError(f"{SERVER_NAME} is set but gRPC TLS is off: set {CA_FILE}")


def server_credentials(settings: GrpcSettings) -> grpc.ServerCredentials | None:
    """TLS credentials of a gRPC server, or None for plaintext (no certificate set)."""
    pair = _key_pair(settings)
    _check(settings)
    if pair is None:
        return None
    ca = _check_ca(settings.tls_ca_file, CA_FILE) if settings.tls_ca_file else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=settings.tls_client_auth)


def channel_credentials(
    settings: GrpcSettings, ca_file: Path | None = None, ca_variable: str = CA_FILE
) -> grpc.ChannelCredentials:
    """Client TLS credentials: the server verified with ``ca_file`` (default: the gRPC CA), the
    certificate presented when one is set (mutual TLS)."""
    _check(settings)
    ca_file = settings.tls_ca_file if ca_file is None else ca_file
    root = _check_ca(ca_file, ca_variable) if ca_file else None
    pair = _key_pair(settings)
    key, chain = pair if pair else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)


def channel(address: str, settings: GrpcSettings, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A client channel to ``address``: TLS when the settings name a CA or a certificate, else plaintext."""
    _check(settings)
    if not _client_tls(settings):
        return grpc.insecure_channel(address, options=list(options))
    if settings.tls_server_name:
        options = [*options, ("grpc.ssl_target_name_override", settings.tls_server_name)]
    return grpc.secure_channel(address, channel_credentials(settings), options=list(options))
