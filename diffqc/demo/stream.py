"""Sending a line's frames through ingestion and waiting for their verdicts, with progress bars.

The sender behaves like a camera: when ingestion goes away mid-stream (a crash, a restart, a full
house answering RESOURCE_EXHAUSTED) it re-sends every frame it has no ack for, under the same frame
ids, after a backoff. Ingestion answers DUPLICATE for those it had stored, so nothing is judged twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

import grpc
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.core.backoff import backoff_delay
from diffqc.demo.line import Part
from diffqc.security.tls import channel
from diffqc.settings import GrpcSettings
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection
from diffqc.v1 import ingestion_pb2, ingestion_pb2_grpc

MAX_MESSAGE = 64 << 20  # ingestion's default image limit
# Ingestion down or restarting, or at its stream limit: the frames without an ack are sent again.
RESEND_ON = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}


def ingestion_channel(address: str, grpc_settings: GrpcSettings) -> grpc.Channel:
    return channel(address, grpc_settings, options=[("grpc.max_send_message_length", MAX_MESSAGE)])


def send_frames(
    address: str,
    grpc_settings: GrpcSettings,
    line: Iterable[tuple[ingestion_pb2.IngestRequest, Part]],
    fps: float = 0.0,
    on_ack: Callable[[ingestion_pb2.IngestResponse, bool], None] = lambda ack, accepted: None,
    on_resend: Callable[[grpc.RpcError, int, float], None] = lambda error, frames, delay_s: None,
    call_timeout_s: float = 600.0,
    give_up_after_s: float = 120.0,
) -> tuple[list[str], dict[str, Part]]:
    """Stream ``line`` through ``Ingest`` at ``fps`` frames per second (0: as fast as ingestion takes them),
    re-sending the frames without an ack when the call fails with a RESEND_ON status: the accepted frame ids
    (a re-sent frame answered DUPLICATE was accepted before) and every part. ``on_ack`` hears of each ack
    (and whether it counts as accepted), ``on_resend`` of each retry (the error, the frames to re-send, the
    backoff); after ``give_up_after_s`` without an ack the error is raised."""
    parts: dict[str, Part] = {}
    unacked: dict[str, ingestion_pb2.IngestRequest] = {}  # sent, no ack yet (in sending order)
    resent: set[str] = set()
    source = iter(line)
    lock = threading.Lock()
    started = time.monotonic()
    taken = 0
    exhausted = False

    def requests(again: list[ingestion_pb2.IngestRequest], call_over: threading.Event) -> Iterator:
        nonlocal taken, exhausted
        yield from again
        while True:
            if fps > 0:
                time.sleep(max(0.0, started + taken / fps - time.monotonic()))
            with lock:
                # A failed call takes nothing more from the line. Should its request thread get past this
                # check first, what it takes stays unacked and the next call sends it.
                if call_over.is_set():
                    return
                item = next(source, None)
                if item is None:
                    exhausted = True
                    return
                request, part = item
                taken += 1
                parts[part.frame_id] = part
                unacked[part.frame_id] = request
            yield request

    accepted: list[str] = []
    attempt, last_ack = 0, time.monotonic()
    while True:
        with lock:
            again = list(unacked.values())
            if exhausted and not again:
                return accepted, parts
            resent.update(unacked)
        call_over = threading.Event()
        try:
            with ingestion_channel(address, grpc_settings) as client:
                stub = ingestion_pb2_grpc.IngestionServiceStub(client)
                for ack in stub.Ingest(requests(again, call_over), timeout=call_timeout_s):
                    with lock:
                        unacked.pop(ack.frame_id, None)
                    attempt, last_ack = 0, time.monotonic()
                    ok = ack.status == ingestion_pb2.INGEST_STATUS_ACCEPTED or (
                        ack.status == ingestion_pb2.INGEST_STATUS_DUPLICATE and ack.frame_id in resent
                    )
                    if ok:
                        accepted.append(ack.frame_id)
                    on_ack(ack, ok)
        except grpc.RpcError as error:
            call_over.set()
            if error.code() not in RESEND_ON or time.monotonic() - last_ack > give_up_after_s:
                raise
            attempt += 1
            delay = backoff_delay(attempt, 0.5, 8.0)
            on_resend(error, len(unacked), delay)
            time.sleep(delay)


def ingest_stream(
    address: str,
    grpc_settings: GrpcSettings,
    line: Iterable[tuple[ingestion_pb2.IngestRequest, Part]],
    total: int,
    console: Console,
    fps: float = 0.0,
) -> tuple[list[str], dict[str, Part]]:
    """Stream the line through ``Ingest`` (one ack per frame), at ``fps`` frames per second like a
    camera at takt time (0: as fast as possible), with a progress bar: the accepted frame ids and every part."""
    with Progress(console=console) as progress:
        task = progress.add_task("streaming frames through ingestion", total=total)

        def show(ack: ingestion_pb2.IngestResponse, accepted: bool) -> None:
            if not accepted:
                console.print(f"[yellow]frame {ack.frame_id} not accepted:[/yellow] {ack.detail}")
            progress.advance(task)

        return send_frames(
            address,
            grpc_settings,
            line,
            fps,
            on_ack=show,
            on_resend=lambda error, frames, delay_s: console.print(resend_note(error, frames, delay_s)),
            call_timeout_s=total * 5 + 60,
        )


def resend_note(error: grpc.RpcError, frames: int, delay_s: float) -> str:
    """What a console says when a stream re-sends (``send_frames``' ``on_resend``)."""
    return f"[yellow]ingestion {error.code().name}:[/yellow] {frames} frame(s) without an ack again in {delay_s:.1f} s"


def wait_for_inspections(
    url: str, frame_ids: list[str], timeout_s: float, console: Console, poll_s: float = 0.2
) -> dict[str, Inspection]:
    """The inspection rows of ``frame_ids`` once all exist, or those that exist after ``timeout_s``."""
    engine = make_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("waiting for the verdicts", total=len(frame_ids))
            while True:
                with Session(engine) as session:
                    rows = {
                        r.frame_id: r
                        for r in session.scalars(select(Inspection).where(Inspection.frame_id.in_(frame_ids)))
                    }
                progress.update(task, completed=len(rows))
                if len(rows) == len(frame_ids) or time.monotonic() > deadline:
                    return rows
                time.sleep(poll_s)
    finally:
        engine.dispose()
