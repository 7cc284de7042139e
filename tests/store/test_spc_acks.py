"""SPC signal acknowledgements on PostgreSQL (and SQLite): one per signal, audited with it, listed per
line newest first; a signal id from a client is parsed, never trusted, and bad input is named."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from diffqc.settings import SpcSettings
from diffqc.spc import P_CHART_RULE
from diffqc.store import audit, db, spc_acks
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import AuditEntry, SpcAcknowledgement


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _ack(engine, signal_id: str, line: str = "L1", actor: str = "anna", cause: str = "worn nozzle"):
    with db.session(engine, write=True) as session:
        return spc_acks.acknowledge(session, line, signal_id, cause, "nozzle replaced", actor, {"key_id": "k1"})


def _count(engine, model) -> int:
    with db.session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_an_acknowledgement_is_stored_with_its_parts_and_audited(engine):
    row = _ack(engine, "L1/pcb/nelson2/14", cause="  worn nozzle \n")
    assert (row.signal_id, row.line_id, row.product_type, row.rule, row.sample_index) == (
        "L1/pcb/nelson2/14",
        "L1",
        "pcb",
        "nelson2",
        14,
    )
    assert (row.cause, row.corrective_action, row.acknowledged_by) == ("worn nozzle", "nozzle replaced", "anna")
    assert row.acknowledged_at.tzinfo is not None
    with db.session(engine) as session:
        (entry,) = session.scalars(select(AuditEntry)).all()
        assert audit.verify_chain(session) == (1, None)
    assert (entry.actor, entry.action, entry.subject) == ("anna", "spc.acknowledge", "L1/pcb/nelson2/14")
    assert entry.details == {
        "key_id": "k1",
        "line_id": "L1",
        "product_type": "pcb",
        "rule": "nelson2",
        "sample_index": 14,
        "cause": "worn nozzle",
        "corrective_action": "nozzle replaced",
    }


def test_a_second_acknowledgement_is_refused_naming_the_signal_and_who_made_the_first(engine):
    first = _ack(engine, "L1/pcb/pchart/40", actor="anna")
    with pytest.raises(spc_acks.AlreadyAcknowledged) as refused:
        _ack(engine, "L1/pcb/pchart/40", actor="ben", cause="another view")
    assert str(refused.value).startswith("signal 'L1/pcb/pchart/40' was already acknowledged by 'anna' at ")
    assert (refused.value.acknowledged_by, refused.value.acknowledged_at) == ("anna", first.acknowledged_at)
    assert (_count(engine, SpcAcknowledgement), _count(engine, AuditEntry)) == (1, 1)  # the refused one left nothing


def test_acknowledgements_are_listed_per_line_and_product_newest_first(engine):
    for signal_id in ("L1/pcb/nelson1/7", "L1/can/we1/3", "L2/pcb/nelson1/7", "L1/pcb/cusum/9"):
        _ack(engine, signal_id, line=signal_id.split("/")[0])
    with db.session(engine) as session:
        assert [r.signal_id for r in spc_acks.list_by_line(session, "L1")] == [
            "L1/pcb/cusum/9",
            "L1/can/we1/3",
            "L1/pcb/nelson1/7",
        ]
        assert [r.signal_id for r in spc_acks.list_by_line(session, "L1", "pcb", limit=1)] == ["L1/pcb/cusum/9"]
        assert spc_acks.list_by_line(session, "L3") == []


def test_a_line_or_product_id_with_slashes_is_split_by_the_line_acted_on():
    assert spc_acks.parse_signal_id("plant/L1/pcb/rev-2/we4/0", "plant/L1") == spc_acks.SignalRef(
        "plant/L1", "pcb/rev-2", "we4", 0
    )


@pytest.mark.parametrize(
    "signal_id, problem",
    [
        ("L1/pcb/nelson2", "signal id 'L1/pcb/nelson2' is not <line>/<product type>/<rule>/<sample index>"),
        ("garbage", "signal id 'garbage' is not <line>/<product type>/<rule>/<sample index>"),
        ("L1/pcb/nelson9/3", "signal id 'L1/pcb/nelson9/3': rule 'nelson9' is not one of "),
        ("L1/pcb/DROP TABLE/3", "rule 'DROP TABLE' is not one of "),
        ("L1/pcb/nelson2/-1", "sample index '-1' is not a non-negative integer"),
        ("L1/pcb/nelson2/07", "sample index '07' is not a non-negative integer"),  # one signal, one id
        ("L1/pcb/nelson2/1e3", "sample index '1e3' is not a non-negative integer"),
        ("L1/pcb/nelson2/" + "9" * 19, "is not a non-negative integer"),  # beyond the BIGINT column
        ("L1//nelson2/3", "signal id 'L1//nelson2/3': the product type is empty"),
        ("L1/" + "p" * 65 + "/nelson2/3", "the product type is over 64 characters"),
        ("L1/pc\x00b/nelson2/3", "the product type contains control characters"),
        ("L1/" + "p" * 300, "characters long, over the limit of 200"),
    ],
)
def test_a_malformed_signal_id_is_refused_naming_the_problem(signal_id, problem):
    with pytest.raises(spc_acks.InvalidSignalId) as refused:
        spc_acks.parse_signal_id(signal_id, "L1")
    assert problem in str(refused.value)


def test_a_signal_of_another_line_is_refused_naming_both_lines(engine):
    with pytest.raises(spc_acks.SignalNotOfLine, match="signal 'L2/pcb/we1/3' is of line 'L2', not of line 'L1'"):
        _ack(engine, "L2/pcb/we1/3", line="L1")
    assert _count(engine, SpcAcknowledgement) == 0


@pytest.mark.parametrize(
    "cause, action, problem",
    [
        ("   ", "replaced", "cause is required"),
        ("x" * 501, "replaced", "cause is 501 characters long, over the limit of 500"),
        ("worn", "y" * 1001, "corrective_action is 1001 characters long, over the limit of 1000"),
        ("worn\x1b[2J", "replaced", "cause contains control characters"),
    ],
)
def test_a_missing_too_long_or_garbled_cause_or_action_is_refused(engine, cause, action, problem):
    with pytest.raises(spc_acks.InvalidAcknowledgement) as refused, db.session(engine, write=True) as session:
        spc_acks.acknowledge(session, "L1", "L1/pcb/we1/3", cause, action, "anna")
    assert str(refused.value) == problem
    assert (_count(engine, SpcAcknowledgement), _count(engine, AuditEntry)) == (0, 0)


def test_every_rule_a_chart_can_raise_is_accepted():
    assert P_CHART_RULE in spc_acks.KNOWN_RULES
    assert set(SpcSettings().rules) <= spc_acks.KNOWN_RULES
    for rule in spc_acks.KNOWN_RULES:
        assert spc_acks.parse_signal_id(f"L1/pcb/{rule}/5", "L1").rule == rule


def test_two_people_acknowledging_at_once_one_wins_and_the_other_is_told_who(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    start, outcomes = threading.Barrier(2), {}

    def acknowledge(actor: str) -> None:
        start.wait()
        try:
            outcomes[actor] = _ack(engine, "L1/pcb/we2/21", actor=actor).acknowledged_by
        except spc_acks.AlreadyAcknowledged as exc:
            outcomes[actor] = exc.acknowledged_by

    threads = [threading.Thread(target=acknowledge, args=(actor,)) for actor in ("anna", "ben")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert len(set(outcomes.values())) == 1 and set(outcomes) == {"anna", "ben"}, outcomes
        assert (_count(engine, SpcAcknowledgement), _count(engine, AuditEntry)) == (1, 1)
    finally:
        engine.dispose()
