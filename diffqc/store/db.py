"""One way into the metadata database: ``db.session(engine, write=...)``.

    from diffqc.store import db

    with db.session(engine) as session:                # reads
        row = session.get(Frame, frame_id)
    with db.session(engine, write=True) as session:    # one transaction: commit, or rollback on error
        record_frame(session, frame)

A database that does not answer (driver or connection errors, an exhausted pool) raises
``DependencyUnavailable`` naming it, here and only here: the consume loops then retry the message
for as long as the outage lasts instead of dead-lettering it (the message is not at fault), and
the gRPC handlers answer UNAVAILABLE. Any other error (an IntegrityError ...) passes unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from diffqc.runtime.dependencies import DependencyUnavailable

UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


@contextmanager
def database_unavailable() -> Iterator[None]:
    """Turn "the database is not answering" into DependencyUnavailable ("database unavailable: <error class>:
    <its first line>"); for database work outside ``session`` (migrations)."""
    try:
        yield
    except UNAVAILABLE as exc:
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DependencyUnavailable(f"database unavailable: {exc.__class__.__name__}: {first}") from exc


@contextmanager
def session(engine: Engine, write: bool = False, **kw: Any) -> Iterator[Session]:
    """A ``Session`` on ``engine``, closed on exit; with ``write`` the block is one transaction (committed
    when it ends, rolled back when it raises).

    Rows stay readable after the block (``expire_on_commit=False`` unless ``kw`` says otherwise); ``kw``
    goes to ``Session``. A database that does not answer raises DependencyUnavailable.
    """
    kw.setdefault("expire_on_commit", False)
    with database_unavailable(), Session(engine, **kw) as s:
        if write:
            with s.begin():
                yield s
        else:
            yield s
