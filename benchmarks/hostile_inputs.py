"""Peak memory of ingestion and preprocessing against the bomb corpus, next to their memory budget.

    python -m benchmarks.hostile_inputs [--budget-mib 1024]

Starts a tansu broker and the two services as processes (SQLite, a temporary blob store), then
in two phases reads each service's peak RSS (VmHWM in /proc/<pid>/status, reset between phases):

1. bombs: the decompression bombs and oversized headers of tests/security/corpus.py, sent to
   ingestion's IngestOne and planted past ingestion (blob + qc.frames.v1 event) for
   preprocessing; all must be refused from the header, so the peak should not move;
2. at the limit: the largest images the limits admit (an RGB PNG just under the budget's RGB
   pixel limit, 64 Mpx grayscale PNG and 32-bit float TIFF), accepted by ingestion and prepared
   by preprocessing: the peak above the idle process must stay within the budget.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
from confluent_kafka import Consumer, Producer
from sqlalchemy.orm import Session

from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import consumer_config, producer_config
from diffqc.contracts.topics import FRAMES, PREPARED_FRAMES, dead_letter_topic
from diffqc.data.images import ImageLimits
from diffqc.infra.kafka import kafka_broker
from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from diffqc.infra.services import service_process
from diffqc.settings import IngestionSettings, KafkaSettings
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.products import register_product
from diffqc.v1 import ingestion_pb2_grpc
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.ingestion_pb2 import INGEST_STATUS_ACCEPTED, IngestRequest
from tests.security import corpus

MIB = 2**20
BOMBS: dict[str, Callable[[], bytes]] = {
    "PNG bomb 8000x8000 RGB": lambda: corpus.png_bomb(8000, 8000),
    "TIFF bomb 8000x8000 RGB": lambda: corpus.tiff_bomb(8000, 8000),
    "PNG claiming 9000x9000": lambda: corpus.png_claiming(9000, 9000),
    "PNG claiming 100000x100000": lambda: corpus.png_claiming(100_000, 100_000),
    "JPEG claiming 60000x60000": lambda: corpus.jpeg_claiming(60_000, 60_000),
    "TIFF claiming 100000x100000": lambda: corpus.tiff(100_000, 100_000, 1, bytes(16)),
    "PNG zTXt text bomb": corpus.png_text_bomb,
}


def at_the_limit(limits: ImageLimits) -> dict[str, Callable[[], bytes]]:
    rgb = limits.pixel_limit(3)[0]
    width = 6000
    height = rgb // width
    gray = int(limits.pixel_limit(1)[0] ** 0.5)
    return {
        f"RGB PNG {width}x{height} (the RGB limit: {rgb} px)": lambda: corpus.png_bomb(width, height),
        f"grayscale PNG {gray}x{gray}": lambda: corpus.png_bomb(gray, gray, channels=1),
        f"32-bit float TIFF {gray}x{gray}": lambda: corpus.float_tiff_bomb(gray, gray),
    }


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


def frame(line: str) -> Frame:
    f = Frame(frame_id=f"bench-{uuid.uuid4().hex[:10]}", plant_id="P", line_id=line, station_id="S", camera_id="C")
    f.product_type = "pcb"
    f.capture_time.GetCurrentTime()
    return f


def run(budget_bytes: int, work: Path) -> None:
    ingestion_settings = IngestionSettings(memory_budget_bytes=budget_bytes)
    limits = ImageLimits.of(ingestion_settings)
    kafka_port, db_url, blob_root = free_port(), f"sqlite:///{work}/qc.db", work / "blobs"
    # A short session: tansu answers a group join after about half of it.
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{kafka_port}", group_prefix=uuid.uuid4().hex, session_timeout_ms=6000
    )
    env = {
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DIFFQC_KAFKA_GROUP_PREFIX": kafka.group_prefix,
        "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DIFFQC_DATABASE_URL": db_url,
        "DIFFQC_BLOB_ROOT": str(blob_root),
        "DIFFQC_SERVICE_STREAM_WORKERS": "1",
        "DIFFQC_INGESTION_MEMORY_BUDGET_BYTES": str(budget_bytes),
    }
    started: list[ServerProcess] = []
    try:
        started.append(kafka_broker(kafka_port, work / "kafka.log").start())
        ensure_topics(kafka, [FRAMES, PREPARED_FRAMES, dead_letter_topic(FRAMES, kafka)], 1)
        ingestion_port, preprocessing_port = free_port(), free_port()
        started.append(service_process("ingestion", ingestion_port, env, work / "ingestion.log").start())
        engine = make_engine(db_url)
        with Session(engine) as session, session.begin():
            register_product(session, "pcb", {"height": 256, "width": 256, "channels": 3}, {})
        engine.dispose()
        started.append(service_process("preprocessing", preprocessing_port, env, work / "preprocessing.log").start())
        pids = {"ingestion": started[1].pid or 0, "preprocessing": started[2].pid or 0}
        idle = {name: memory(pid)["VmRSS"] for name, pid in pids.items()}
        address = f"127.0.0.1:{ingestion_port}"
        print(
            f"memory budget {budget_bytes / MIB:g} MiB: pixel limit {limits.pixel_limit(3)[0]} (RGB), "
            f"{limits.pixel_limit(1)[0]} (grayscale)\n"
        )
        rows = []
        for phase, inputs, plant in (("bombs", BOMBS, True), ("at the limit", at_the_limit(limits), False)):
            for name, build in inputs.items():
                for pid in pids.values():
                    reset_peak(pid)
                print(f"  {name}: {feed(address, kafka, blob_root, build(), plant)}")
                rows += [(phase, name, service, idle[service], memory(pid)["VmHWM"]) for service, pid in pids.items()]
        print("\n| phase | input | service | idle RSS | peak RSS (VmHWM) | peak - idle (of the budget) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for phase, name, service, base, peak in rows:
            print(
                f"| {phase} | {name} | {service} | {base / MIB:.0f} MiB | {peak / MIB:.0f} MiB | "
                f"{(peak - base) / MIB:.0f} MiB ({(peak - base) / budget_bytes:.0%}) |"
            )
    finally:
        for server in reversed(started):
            server.stop()


def feed(address: str, kafka: KafkaSettings, blob_root: Path, data: bytes, plant: bool) -> str:
    """Send one image to ingestion (and, with ``plant``, straight to preprocessing's topic as well);
    wait for preprocessing's answer to every frame that reached it."""
    line, waiting = f"bench-{uuid.uuid4().hex[:6]}", []
    with grpc.insecure_channel(address) as channel:
        started = time.perf_counter()
        ack = ingestion_pb2_grpc.IngestionServiceStub(channel).IngestOne(
            IngestRequest(frame=frame(line), image_data=data), timeout=600
        )
    outcome = f"ingestion {'ACCEPTED' if ack.status == INGEST_STATUS_ACCEPTED else 'REJECTED'}"
    outcome += f" in {time.perf_counter() - started:.2f} s" + (f" ({ack.detail})" if ack.detail else "")
    if ack.status == INGEST_STATUS_ACCEPTED:
        waiting.append(ack.frame_id)
    if plant:  # a bomb that got past ingestion some other way: straight into the blob store
        planted = frame(line)
        planted.image.CopyFrom(FileBlobStore(blob_root).put(data, "application/octet-stream"))
        producer = Producer(producer_config(kafka))
        producer.produce(
            FRAMES,
            key=line.encode(),
            value=planted.SerializeToString(),
            headers=[("frame_id", planted.frame_id.encode())],
        )
        producer.flush(30)
        waiting.append(planted.frame_id)
    answered = answers(kafka, set(waiting)) if waiting else {}
    for frame_id in waiting:
        outcome += "; preprocessing " + answered.get(frame_id, "gave NO ANSWER")
    return outcome


def answers(kafka: KafkaSettings, frame_ids: set[str], timeout_s: float = 300.0) -> dict[str, str]:
    """What preprocessing did with each frame: prepared it, or dead-lettered it (and why)."""
    consumer = Consumer(consumer_config(kafka, f"bench-reader-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([PREPARED_FRAMES, dead_letter_topic(FRAMES, kafka)])
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while set(found) < frame_ids and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            headers = dict(msg.headers() or [])
            frame_id = headers.get("frame_id", b"").decode()
            if frame_id in frame_ids:
                reason = headers.get("dlq.reason")
                # The reason without "rejected: cannot read image <blob URI>: ".
                found[frame_id] = (
                    "prepared it" if reason is None else "dead-lettered it: " + reason.decode().split(": ", 2)[-1]
                )
    finally:
        consumer.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=IngestionSettings().memory_budget_bytes // MIB)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    with tempfile.TemporaryDirectory(prefix="diffqc-hostile-") as work:
        run(args.budget_mib * MIB, Path(work))


if __name__ == "__main__":
    main()
