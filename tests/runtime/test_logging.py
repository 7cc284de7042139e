"""JSON log lines carry the service, and the frame id inside frame_context (per thread)."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from diffqc.runtime.logging import configure_logging, current_frame_id, frame_context


@pytest.fixture
def log_stream():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("INFO", "scoring", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]  # fails on any non-JSON line


def test_lines_inside_a_frame_context_carry_the_frame_id(log_stream):
    log = logging.getLogger("diffqc.scoring")
    log.info("before")
    with frame_context("frame-42"):
        log.info("scored %s", "part", extra={"score": 0.93})
        with frame_context("frame-43"):
            logging.getLogger("other.library").warning("nested")
        try:
            raise ValueError("bad tile")
        except ValueError:
            log.exception("failed")
    log.debug("filtered out by level")
    log.info("after")

    lines = _lines(log_stream)
    assert [line["message"] for line in lines] == ["before", "scored part", "nested", "failed", "after"]
    assert all(line["service"] == "scoring" and "timestamp" in line for line in lines)
    assert [line.get("frame_id") for line in lines] == [None, "frame-42", "frame-43", "frame-42", None]
    assert (lines[1]["level"], lines[1]["logger"], lines[1]["score"]) == ("INFO", "diffqc.scoring", 0.93)
    assert "ValueError: bad tile" in lines[3]["exc_info"]
    assert current_frame_id() is None


def test_each_thread_has_its_own_frame_id(log_stream):
    log = logging.getLogger("diffqc.consumer")
    inside, release = threading.Event(), threading.Event()

    def other_thread():
        with frame_context("frame-B"):
            inside.set()
            release.wait(5)
            log.info("from B")

    thread = threading.Thread(target=other_thread)
    thread.start()
    inside.wait(5)
    with frame_context("frame-A"):
        log.info("from A")
        release.set()
        thread.join(5)

    frame_of = {line["message"]: line.get("frame_id") for line in _lines(log_stream)}
    assert frame_of == {"from A": "frame-A", "from B": "frame-B"}


def test_configuring_twice_does_not_duplicate_lines(log_stream):
    stream = io.StringIO()
    configure_logging("INFO", "ingestion", stream=stream)
    logging.getLogger("diffqc").info("once")
    assert [(line["service"], line["message"]) for line in _lines(stream)] == [("ingestion", "once")]
    assert log_stream.getvalue() == ""
