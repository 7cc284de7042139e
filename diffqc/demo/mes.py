"""A stand-in MES for the demo: an HTTP webhook that records the alerts the bridge delivers.

It answers 200 to every POST and keeps each body by its ``Idempotency-Key`` (the alert id), counting
repeated deliveries, so the demo can show that each defect reached the MES once.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MesReceiver:
    def __init__(self, host: str = "127.0.0.1"):
        self.alerts: dict[str, dict] = {}
        self.deliveries_per_alert = Counter[str]()
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
                        key = self.headers.get("Idempotency-Key", "")
                        receiver.deliveries_per_alert[key] += 1
                        receiver.alerts[key] = body
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

    def frame_ids(self) -> set[str]:
        """The frames whose alerts arrived."""
        with self._lock:
            return {str(body.get("frame_id")) for body in self.alerts.values()}

    @property
    def deliveries(self) -> int:
        """POSTs of alerts, repeated deliveries of one alert included."""
        with self._lock:
            return sum(self.deliveries_per_alert.values())

    def delivered_more_than_once(self) -> int:
        """Alerts the MES was sent more than once."""
        with self._lock:
            return sum(n > 1 for n in self.deliveries_per_alert.values())
