"""The poison fence of the consume loops (``diffqc.bus.consumer.Fence``), kept in the database.

A message that kills its consumer (out of memory, SIGKILL) is redelivered after the restart and
kills it again; a counter in the process dies with it. Here each delivery is counted in
``poison_attempts`` (committed before the handler runs) and forgotten once the offset is
committed, so the count of a message that keeps killing the stage grows across restarts and
replicas of the group until the loop dead-letters it.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, update

from diffqc.core import clock
from diffqc.store import db
from diffqc.store.dialect import dialect_insert
from diffqc.store.models import PoisonAttempt

_KEY = ("group_id", "topic", "partition", "offset")


class PoisonFence:
    """Attempts per (consumer group, topic, partition, offset); DependencyUnavailable when the database is down."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def begin(self, group: str, topic: str, partition: int, offset: int) -> int:
        now = clock.now()
        with db.session(self.engine, write=True) as session:
            insert = dialect_insert(session, PoisonAttempt).values(
                group_id=group, topic=topic, partition=partition, offset=offset, attempts=1, last_attempt_at=now
            )
            upsert = insert.on_conflict_do_update(
                index_elements=list(_KEY), set_={"attempts": PoisonAttempt.attempts + 1, "last_attempt_at": now}
            ).returning(PoisonAttempt.attempts)
            return int(session.execute(upsert).scalar_one())

    def release(self, group: str, topic: str, partition: int, offset: int) -> None:
        with db.session(self.engine, write=True) as session:
            session.execute(
                update(PoisonAttempt)
                .where(*_at(group, topic, partition), PoisonAttempt.offset == offset, PoisonAttempt.attempts > 0)
                .values(attempts=PoisonAttempt.attempts - 1)
            )

    def clear(self, group: str, topic: str, partition: int, offset: int) -> None:
        # Earlier offsets too: a count left behind by a crash between commit and clear goes with them.
        with db.session(self.engine, write=True) as session:
            session.execute(delete(PoisonAttempt).where(*_at(group, topic, partition), PoisonAttempt.offset <= offset))

    def attempts(self, group: str, topic: str, partition: int, offset: int) -> int:
        """The current count (0: none); for tests and operators."""
        with db.session(self.engine) as session:
            row = session.get(PoisonAttempt, (group, topic, partition, offset))
            return row.attempts if row is not None else 0


def _at(group: str, topic: str, partition: int) -> tuple:
    return PoisonAttempt.group_id == group, PoisonAttempt.topic == topic, PoisonAttempt.partition == partition
