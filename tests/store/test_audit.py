"""The audit log on PostgreSQL and SQLite: rows chain by hash, the database refuses to change or
remove one, and verify_chain names the first row that was changed, removed or relinked anyway."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from diffqc.store import audit, db
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import AuditEntry


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _append(engine, n: int) -> list[AuditEntry]:
    with db.session(engine, write=True) as session:
        return [audit.append(session, "tester", "test.write", f"s-{i}", {"i": i, "ratio": i / 3}) for i in range(n)]


def _without_guard(engine, statement: str, **params) -> None:
    """What an owner or superuser could do anyway: lift the append-only triggers for one statement."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
            conn.execute(text(statement), params)
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
            conn.execute(text(statement), params)


def test_appended_rows_chain_and_verify(engine):
    rows = _append(engine, 3)
    assert [r.id for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == audit.GENESIS and [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    with db.session(engine) as session:
        stored = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [audit.entry_hash(r) for r in stored] == [r.hash for r in rows]  # the same after a round trip
        assert audit.verify_chain(session) == (3, None)
        line_stop = audit.record_line_stop(session, "L1", "critical defect", alert_id="a-1")
        session.commit()
        assert (line_stop.id, line_stop.action, line_stop.details) == (
            4,
            "line.stop",
            {"reason": "critical defect", "alert_id": "a-1"},
        )
        assert audit.verify_chain(session) == (4, None)


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'x' WHERE id = 1", "DELETE FROM audit_log"])
def test_the_database_refuses_to_change_or_remove_a_row(engine, statement):
    _append(engine, 2)
    with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with db.session(engine) as session:
        assert audit.verify_chain(session) == (2, None)


TAMPERING = {
    # case: (what is done to four rows, the first broken row, rows intact before it, why)
    "changed content": ("UPDATE audit_log SET details = '{\"i\": 7}' WHERE id = 2", 2, 1, "does not match its hash"),
    "rehashed row": ("UPDATE audit_log SET hash = :fake WHERE id = 2", 2, 1, "does not match its hash"),
    "relinked row": ("UPDATE audit_log SET prev_hash = :fake WHERE id = 3", 3, 2, "prev_hash does not match"),
    "removed row": ("DELETE FROM audit_log WHERE id = 2", 3, 1, "rows 2..2 are missing"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_found_at_the_first_row_it_touched(engine, case):
    statement, broken_id, intact, reason = TAMPERING[case]
    _append(engine, 4)
    _without_guard(engine, statement, fake="f" * 64)
    with db.session(engine) as session:
        checked, broken = audit.verify_chain(session)
    assert broken is not None and (broken.id, checked) == (broken_id, intact)
    assert reason in broken.reason


def test_details_that_are_not_plain_json_are_refused_and_nothing_is_written(engine):
    refused = pytest.raises(ValueError, match="audit details of test.write 's' are not plain JSON")
    with refused, db.session(engine, write=True) as session:
        audit.append(session, "tester", "test.write", "s", {"value": float("nan")})
    with db.session(engine) as session:
        assert audit.verify_chain(session) == (0, None)


def test_concurrent_writers_append_one_after_the_other(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    errors: list[Exception] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with db.session(engine, write=True) as session:
                    audit.append(session, f"writer-{n}", "test.write", str(i))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with db.session(engine) as session:
            assert audit.verify_chain(session) == (40, None)
    finally:
        engine.dispose()
