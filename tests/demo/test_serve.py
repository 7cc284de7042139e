"""``diffqc demo --serve``: after the line has run, the dashboard serves what the line wrote with the
printed viewer key, until Ctrl-C stops the gateway and the whole pipeline."""

from __future__ import annotations

import io
import os
import re
import signal
import threading
import time

import httpx
import psutil
import pytest
from rich.console import Console

from diffqc.demo import command
from diffqc.demo.mes import MesReceiver
from diffqc.demo.serve import stop_signals
from diffqc.serving.repository import stage_version

pytestmark = pytest.mark.timeout(300)

URL = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+)/")
KEY = re.compile(r"^(dqc_\S+)$", re.MULTILINE)
FRAMES = 4


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def _user(printed: io.StringIO, finished: threading.Event, seen: dict) -> None:
    """What a user does: read the URL and key, use the dashboard, press Ctrl-C (SIGINT to the CLI)."""
    try:
        deadline = time.monotonic() + 240
        while not (URL.search(printed.getvalue()) and KEY.search(printed.getvalue())):
            if finished.is_set() or time.monotonic() > deadline:
                seen["error"] = "the demo printed no dashboard URL and key"
                return
            time.sleep(0.2)
        url, key = URL.search(printed.getvalue())[1], KEY.search(printed.getvalue())[1]  # type: ignore[index]
        seen["url"] = url
        with httpx.Client(base_url=url, timeout=30) as client:
            seen["health"] = client.get("/health").json()
            seen["anonymous"] = client.get("/api/inspections").status_code
            seen["inspections"] = client.get("/api/inspections", headers={"X-API-Key": key}).json()
            login = client.post("/api/session", json={"api_key": key})
            seen["session"] = login.json()
            seen["dashboard"] = client.get("/", follow_redirects=False)  # with the login's cookie
        seen["still_up"] = not finished.is_set()  # the demo waited: nothing stopped it before Ctrl-C
    except Exception as exc:  # reported by the test, after the demo has stopped
        seen["error"] = repr(exc)
    finally:
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGINT)


def test_serve_keeps_the_dashboard_up_on_the_lines_data_until_ctrl_c_stops_everything(
    tiny_artifact, tmp_path, monkeypatch
):
    stage_version(tiny_artifact[0], tmp_path / "repo")
    printed = io.StringIO()
    monkeypatch.setattr(command, "console", Console(file=printed, width=200))
    before = _children()
    finished, seen = threading.Event(), {}
    user = threading.Thread(target=_user, args=(printed, finished, seen), daemon=True)
    user.start()
    try:
        with MesReceiver() as mes:
            command._run(
                mes, FRAMES, 0.5, 0.0, tmp_path / "out", tmp_path / "repo", 0, None, serve=True, external=False
            )
    finally:
        finished.set()
        user.join(timeout=60)
    output = printed.getvalue()

    assert "error" not in seen, f"{seen.get('error')}\n{output}"
    assert seen["still_up"]
    assert seen["health"] == {"status": "ok", "database": "ok", "ingestion": "ok"}
    assert seen["anonymous"] == 401
    # The gateway reads the database the line wrote: every frame of the line, with its verdict.
    assert len(seen["inspections"]) == FRAMES, output
    assert len({row["frame_id"] for row in seen["inspections"]}) == FRAMES
    assert {row["verdict"] for row in seen["inspections"]} <= {"pass", "defect"}
    assert seen["session"]["role"] == "viewer"
    assert seen["dashboard"].status_code == 200 and "<html" in seen["dashboard"].text.lower()
    assert len(KEY.findall(output)) == 1, "the viewer key is printed once"

    # Ctrl-C stopped the gateway and every server and service the demo started.
    assert "SIGINT: stopping" in output and "stopped every server and service" in output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{seen['url']}/health", timeout=2)
    assert _children() <= before, f"left running: {[psutil.Process(p).cmdline() for p in _children() - before]}"


def test_sigterm_asks_the_served_demo_to_stop_instead_of_ending_it():
    # A service manager's SIGTERM must reach the same orderly stop as Ctrl-C, not kill the CLI and
    # orphan the servers (they run in their own sessions).
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(poll_s=0.01) == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
