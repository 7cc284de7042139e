"""A consume loop with the database poison fence, run as its own process by test_poison_fence.py.

    python -m tests.bus.poison_worker BOOTSTRAP GROUP_PREFIX TOPIC GROUP DATABASE_URL JOURNAL

Each message's value is appended to JOURNAL as "started <value>" before and "done <value>" after
handling; a message whose value is b"hang" never finishes, so the test can kill the process mid-message.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

from diffqc.bus.consumer import ConsumeLoop
from diffqc.settings import KafkaSettings
from diffqc.store.engine import make_engine
from diffqc.store.poison import PoisonFence


def main(bootstrap: str, prefix: str, topic: str, group: str, database_url: str, journal: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, group_prefix=prefix, session_timeout_ms=6000)
    path = Path(journal)

    def handle(value: bytes, _msg) -> None:
        with path.open("a") as out:
            out.write(f"started {value.decode()}\n")
        if value == b"hang":
            time.sleep(3600)
        with path.open("a") as out:
            out.write(f"done {value.decode()}\n")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = make_engine(database_url)
    ConsumeLoop(kafka, topic, group, bytes, handle, PoisonFence(engine)).run(stop)
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
