"""A stand-in MES for the demo: an HTTP webhook that records the alerts the bridge delivers.

It answers 200 to every POST and keeps each body by its ``Idempotency-Key`` (the alert id), counting
repeated deliveries, so the demo can show that each defect reached the MES once.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MesReceiver:
    def __init__(self, host: str = "127.0.0.1"):
        self.alerts: dict[str, dict] = {}
        self.deliveries = 0
        self.line_stops: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server API)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with receiver._lock:
                    if self.path.endswith("/line-stop"):
                        receiver.line_stops.append(body)
                    else:
                        receiver.deliveries += 1
                        receiver.alerts[self.headers.get("Idempotency-Key", "")] = body
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args) -> None:  # keep the demo's console clean
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self._server.server_port}/alerts"
        self.line_stop_url = f"http://{host}:{self._server.server_port}/line-stop"

    def __enter__(self) -> MesReceiver:
        threading.Thread(target=self._server.serve_forever, name="demo-mes", daemon=True).start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def received(self) -> int:
        with self._lock:
            return len(self.alerts)
