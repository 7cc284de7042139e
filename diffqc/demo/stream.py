"""Sending a line's frames through ingestion and waiting for their verdicts, with progress bars."""

from __future__ import annotations

import time
from collections.abc import Iterable

import grpc
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.demo.line import Part
from diffqc.security.tls import channel
from diffqc.settings import GrpcSettings
from diffqc.store.engine import make_engine
from diffqc.store.models import Inspection
from diffqc.v1 import ingestion_pb2, ingestion_pb2_grpc

MAX_MESSAGE = 64 << 20  # ingestion's default image limit


def ingestion_channel(address: str, grpc_settings: GrpcSettings) -> grpc.Channel:
    return channel(address, grpc_settings, options=[("grpc.max_send_message_length", MAX_MESSAGE)])


def ingest_stream(
    address: str,
    grpc_settings: GrpcSettings,
    line: Iterable[tuple[ingestion_pb2.IngestRequest, Part]],
    total: int,
    console: Console,
    fps: float = 0.0,
) -> tuple[list[str], dict[str, Part]]:
    """Stream the line through ``Ingest`` (one ack per frame), at ``fps`` frames per second like a
    camera at takt time (0: as fast as possible): the accepted frame ids and every part."""
    parts: dict[str, Part] = {}
    started = time.monotonic()

    def requests():
        for n, (request, part) in enumerate(line):
            if fps > 0:
                time.sleep(max(0.0, started + n / fps - time.monotonic()))
            parts[part.frame_id] = part
            yield request

    accepted = []
    with ingestion_channel(address, grpc_settings) as client, Progress(console=console) as progress:
        task = progress.add_task("streaming frames through ingestion", total=total)
        for ack in ingestion_pb2_grpc.IngestionServiceStub(client).Ingest(requests(), timeout=total * 5 + 60):
            if ack.status == ingestion_pb2.INGEST_STATUS_ACCEPTED:
                accepted.append(ack.frame_id)
            else:
                console.print(f"[yellow]frame {ack.frame_id} not accepted:[/yellow] {ack.detail}")
            progress.advance(task)
    return accepted, parts


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
