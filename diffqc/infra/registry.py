"""A small Confluent-compatible Schema Registry for the embedded default and the tests.

No Confluent Schema Registry (or Karapace) is installable on the project's machines, and
confluent-kafka's ``AvroSerializer`` needs one over HTTP, so ``diffqc infra up`` and the test
fixtures run this one (``python -m diffqc.infra.registry --port N``); production runs
cp-schema-registry or Karapace, and the same serializer code talks to either.

It serves the REST endpoints the confluent-kafka client uses: POST /subjects/{s}/versions
(register), POST /subjects/{s} (look up), GET /schemas/ids/{id}, GET /subjects,
GET /subjects/{s}/versions[/{v}|/latest], GET|PUT /config[/{s}]; anything else (the client's
GET /associations/... probe) is a 404, on which the client falls back to TopicNameStrategy.
Only AVRO schemas without references. Registration checks the subject's compatibility level
(default BACKWARD, like Confluent) with Apache Avro's reader/writer compatibility checker — the
rule Confluent applies: under BACKWARD the new schema must read data written with the previous
one — and answers 409 with the reasons when it cannot. State lives in memory, like the local
tansu broker's topics: both start empty together. With ``credentials`` it demands HTTP basic auth on
every request (401 without it), as a production registry may.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from diffqc.infra.errors import InfraError
from diffqc.infra.process import LOCAL_EXTRA_HINT, ServerProcess, http_ok

if TYPE_CHECKING:
    import avro.schema

DEFAULT_COMPATIBILITY = "BACKWARD"
COMPATIBILITY_LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)


class RegistryError(Exception):
    """An error answer: HTTP status plus Confluent's error code and message."""

    def __init__(self, status: int, error_code: int, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _parse_avro(text: str) -> avro.schema.Schema:
    """Apache Avro's parser; avro is of the local extra (production runs a real registry)."""
    try:
        import avro.schema
    except ImportError as exc:
        raise InfraError(f"the local schema registry needs the local extra (avro): {LOCAL_EXTRA_HINT}") from exc
    return avro.schema.parse(text)


def _incompatibilities(reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty when it can)."""
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted(kind.value for kind in result.incompatibilities)
    return [f"{', '.join(kinds)} at {', '.join(sorted(result.locations))} ({', '.join(sorted(result.messages))})"]


@dataclass
class SchemaStore:
    """Schemas by global id (equal schemas share one), subjects as lists of ids, compatibility levels."""

    schemas: dict[int, str] = field(default_factory=dict)
    ids_by_key: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    global_level: str = DEFAULT_COMPATIBILITY
    subject_levels: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def _parse(body: dict) -> tuple[str, avro.schema.Schema, str]:
        schema_type = body.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise RegistryError(422, 42201, f"Invalid schema: schemaType {schema_type} is not supported (AVRO only)")
        if body.get("references"):
            raise RegistryError(422, 42201, "Invalid schema: schema references are not supported here")
        text = body.get("schema")
        if not isinstance(text, str):
            raise RegistryError(422, 42201, "Invalid schema: the request has no 'schema' string")
        try:
            parsed = _parse_avro(text)
            key = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        except Exception as exc:  # avro raises SchemaParseException and friends, json ValueError
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None
        return text, parsed, key

    def _versions(self, subject: str) -> list[int]:
        if subject not in self.subjects:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return self.subjects[subject]

    def _version_record(self, subject: str, version: int) -> dict:
        schema_id = self.subjects[subject][version - 1]
        return {"subject": subject, "version": version, "id": schema_id, "schema": self.schemas[schema_id]}

    def level(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.global_level)

    def _check(self, subject: str, candidate: avro.schema.Schema) -> None:
        level = self.level(subject)
        if level == "NONE" or not self.subjects.get(subject):
            return
        ids = self.subjects[subject] if level.endswith("_TRANSITIVE") else self.subjects[subject][-1:]
        problems = []
        for schema_id in ids:
            existing = _parse_avro(self.schemas[schema_id])
            if level.startswith(("BACKWARD", "FULL")):  # the new schema reads what the old one wrote
                problems += _incompatibilities(candidate, existing)
            if level.startswith(("FORWARD", "FULL")):  # the old schema reads what the new one writes
                problems += _incompatibilities(existing, candidate)
        if problems:
            raise RegistryError(
                409,
                409,
                f"Schema being registered is incompatible with an earlier schema for "
                f'subject "{subject}" (compatibility {level}), details: {problems}',
            )

    def register(self, subject: str, body: dict) -> dict:
        text, parsed, key = self._parse(body)
        with self.lock:
            schema_id = self.ids_by_key.get(key)
            versions = self.subjects.get(subject, [])
            if schema_id is not None and schema_id in versions:  # already registered: no check, same id
                return {"id": schema_id, "version": versions.index(schema_id) + 1}
            self._check(subject, parsed)
            if schema_id is None:
                schema_id = len(self.schemas) + 1
                self.schemas[schema_id], self.ids_by_key[key] = text, schema_id
            self.subjects.setdefault(subject, []).append(schema_id)
            return {"id": schema_id, "version": len(self.subjects[subject])}

    def lookup(self, subject: str, body: dict) -> dict:
        _, _, key = self._parse(body)
        with self.lock:
            versions = self._versions(subject)
            schema_id = self.ids_by_key.get(key)
            if schema_id not in versions:
                raise RegistryError(404, 40403, "Schema not found")
            return self._version_record(subject, versions.index(schema_id) + 1)

    def version(self, subject: str, version: str) -> dict:
        with self.lock:
            versions = self._versions(subject)
            number = len(versions) if version in ("latest", "-1") else int(version) if version.isdigit() else 0
            if not 1 <= number <= len(versions):
                raise RegistryError(404, 40402, f"Version {version} not found.")
            return self._version_record(subject, number)

    def schema(self, schema_id: int) -> dict:
        with self.lock:
            if schema_id not in self.schemas:
                raise RegistryError(404, 40403, "Schema not found")
            return {"schema": self.schemas[schema_id]}

    def set_level(self, subject: str | None, body: dict) -> dict:
        level = str(body.get("compatibility", "")).upper()
        if level not in COMPATIBILITY_LEVELS:
            raise RegistryError(
                422,
                42203,
                f"Invalid compatibility level {body.get('compatibility')!r}; one of {', '.join(COMPATIBILITY_LEVELS)}",
            )
        with self.lock:
            if subject is None:
                self.global_level = level
            else:
                self.subject_levels[subject] = level
        return {"compatibility": level}

    def get_level(self, subject: str | None, default_to_global: bool) -> dict:
        with self.lock:
            if subject is None:
                return {"compatibilityLevel": self.global_level}
            if subject in self.subject_levels or default_to_global:
                return {"compatibilityLevel": self.level(subject)}
        raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")


# (method, path pattern) -> handler(store, match groups, query, body)
_ROUTES = [
    ("GET", r"/", lambda st, g, q, b: {}),
    ("GET", r"/subjects", lambda st, g, q, b: sorted(st.subjects)),
    ("GET", r"/subjects/([^/]+)/versions", lambda st, g, q, b: list(range(1, len(st._versions(g[0])) + 1))),
    ("GET", r"/subjects/([^/]+)/versions/([^/]+)", lambda st, g, q, b: st.version(g[0], g[1])),
    ("POST", r"/subjects/([^/]+)/versions", lambda st, g, q, b: st.register(g[0], b)),
    ("POST", r"/subjects/([^/]+)", lambda st, g, q, b: st.lookup(g[0], b)),
    ("GET", r"/schemas/ids/(\d+)", lambda st, g, q, b: st.schema(int(g[0]))),
    ("GET", r"/config", lambda st, g, q, b: st.get_level(None, True)),
    ("PUT", r"/config", lambda st, g, q, b: st.set_level(None, b)),
    (
        "GET",
        r"/config/([^/]+)",
        lambda st, g, q, b: st.get_level(g[0], q.get("defaultToGlobal", ["false"])[0].lower() == "true"),
    ),
    ("PUT", r"/config/([^/]+)", lambda st, g, q, b: st.set_level(g[0], b)),
]
_COMPILED = [(method, re.compile(pattern + r"/?\Z"), handler) for method, pattern, handler in _ROUTES]


class _Handler(BaseHTTPRequestHandler):
    server: RegistryServer
    protocol_version = "HTTP/1.1"  # keep-alive: the client's httpx session reuses connections

    def _answer(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as exc:
            self._answer(422, {"error_code": 42201, "message": f"Invalid request body: {exc}"})
            return
        expected = self.server.authorization
        if expected and not hmac.compare_digest(self.headers.get("Authorization", "").encode(), expected.encode()):
            self._answer(
                401, {"error_code": 401, "message": "Unauthorized"}, {"WWW-Authenticate": 'Basic realm="registry"'}
            )
            return
        path_matched = False
        for method, pattern, handler in _COMPILED:
            match = pattern.match(url.path)
            if not match:
                continue
            path_matched = True
            if method != self.command:
                continue
            try:
                groups = [unquote(group) for group in match.groups()]
                self._answer(200, handler(self.server.store, groups, parse_qs(url.query), body))
            except RegistryError as exc:
                self._answer(exc.status, {"error_code": exc.error_code, "message": exc.message})
            return
        if path_matched:
            self._answer(405, {"error_code": 405, "message": f"{self.command} is not allowed on {url.path}"})
        else:
            self._answer(404, {"error_code": 404, "message": f"HTTP 404 Not Found: {url.path}"})

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        if self.server.verbose:
            super().log_message(format, *args)


class RegistryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        credentials: tuple[str, str] | None = None,
    ):
        _parse_avro('"null"')  # without avro (the local extra) fail here, by name, not on each registration
        super().__init__((host, port), _Handler)
        self.store = SchemaStore()
        self.verbose = verbose
        # The Authorization header a request must carry (HTTP basic auth, RFC 7617); None = no auth.
        self.authorization = (
            "Basic " + base64.b64encode(":".join(credentials).encode()).decode() if credentials else None
        )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if not isinstance(host, str):  # an AF_INET socket reports its host as str; typeshed allows bytes
            raise TypeError(f"the registry's socket reports host {host!r}, not a str")
        return f"http://{host}:{port}"


def registry_is_ready(url: str) -> bool:
    return http_ok(f"{url}/subjects")


def schema_registry(port: int, log_path: Path) -> ServerProcess:
    """The registry as a local server process on 127.0.0.1:``port`` (what ``diffqc infra up`` runs)."""
    url = f"http://127.0.0.1:{port}"
    return ServerProcess(
        name="schema registry (diffqc.infra.registry)",
        argv=[sys.executable, "-m", "diffqc.infra.registry", "--port", str(port)],
        log_path=log_path,
        ready=lambda: registry_is_ready(url),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    server = RegistryServer(args.host, args.port, args.verbose)
    print(f"schema registry listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
