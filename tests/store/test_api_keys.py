"""Gateway API keys: the key format, salted hashes, the bootstrap entries of DIFFQC_GATEWAY_API_KEYS,
and the api_keys table (no key in clear, audited create and revoke)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from diffqc.security.api_keys import BootstrapKey, Role, hash_key, new_key, parse_entry, prefix_of, verify_key
from diffqc.settings import SettingsError, load_settings
from diffqc.store import api_keys, audit, db
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_a_key_verifies_against_its_own_salted_hash_only():
    prefix, key = new_key()
    other_prefix, other = new_key()
    assert prefix_of(key) == prefix != other_prefix
    first, second = hash_key(key), hash_key(key)
    assert first != second  # a salt per hash
    assert verify_key(key, first) and verify_key(key, second)
    assert not verify_key(other, first)
    assert prefix_of("dqc_not-a-key") is None and prefix_of(key + "x") is None


@pytest.mark.parametrize(
    "entry, problem",
    [
        ("plain-key", "a plain key is not accepted; expected <role>:<name>:<prefix>:scrypt$"),
        ("root:ci:0123abcd:{hash}", "role 'root' is not one of viewer, operator, admin"),
        ("admin::0123abcd:{hash}", "the name must be 1-100 characters"),
        ("admin:ci:0123ABCD:{hash}", "the prefix must be the key's 8 hex digits"),
        ("admin:ci:0123abcd:sha256$abc", "the hash is not scrypt$<n>$<r>$<p>"),
        ("admin:ci:0123abcd:{hash_n3}", "scrypt parameters n=3 r=8 p=1 are out of range"),
    ],
)
def test_a_malformed_bootstrap_entry_is_refused_naming_the_problem(entry, problem):
    hashed = hash_key("k")
    entry = entry.format(hash=hashed, hash_n3=hashed.replace("scrypt$16384$", "scrypt$3$"))
    with pytest.raises(ValueError) as refused:
        parse_entry(entry)
    assert str(refused.value).startswith(problem)
    assert hashed not in str(refused.value)


def test_settings_take_bootstrap_entries_and_refuse_a_plain_key(monkeypatch):
    prefix, key = new_key()
    entry = BootstrapKey(Role.OPERATOR, "line-pc", prefix, hash_key(key)).entry()
    assert parse_entry(entry) == BootstrapKey(Role.OPERATOR, "line-pc", prefix, entry.split(":", 3)[3])
    monkeypatch.setenv("DIFFQC_GATEWAY_API_KEYS", json.dumps([entry]))
    assert [e.get_secret_value() for e in load_settings().gateway.api_keys] == [entry]
    monkeypatch.setenv("DIFFQC_GATEWAY_API_KEYS", json.dumps([entry, "secret-in-clear"]))
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "DIFFQC_GATEWAY_API_KEYS: entry 2: a plain key is not accepted" in str(refused.value)
    assert "secret-in-clear" not in str(refused.value)


def test_the_table_holds_a_prefix_and_a_salted_hash_never_the_key(engine):
    with db.session(engine, write=True) as session:
        row, key = api_keys.create_key(session, "line-pc-3", Role.OPERATOR, "tester")
    with engine.connect() as conn:
        (stored,) = conn.execute(text("SELECT * FROM api_keys")).mappings().all()
    assert key not in json.dumps({k: str(v) for k, v in stored.items()})
    assert key.split("_", 2)[2] not in json.dumps({k: str(v) for k, v in stored.items()})
    assert (stored["name"], stored["prefix"], stored["revoked_at"]) == ("line-pc-3", prefix_of(key), None)
    assert verify_key(key, stored["key_hash"])
    with db.session(engine) as session:
        assert api_keys.by_prefix(session, row.prefix).id == row.id
        assert api_keys.active_count(session) == 1


def test_create_and_revoke_are_audited_once_and_an_unknown_key_is_named(engine):
    with db.session(engine, write=True) as session:
        row, _ = api_keys.create_key(session, "dashboard", Role.VIEWER, "admin-1")
    for _ in range(2):  # revoking twice changes nothing the second time
        with db.session(engine, write=True) as session:
            revoked = api_keys.revoke_key(session, row.id, "admin-2")
    assert revoked.revoked_at is not None
    with db.session(engine) as session:
        assert api_keys.active_count(session) == 0
        log = session.execute(text("SELECT actor, action, subject FROM audit_log ORDER BY id")).all()
        assert audit.verify_chain(session) == (2, None)
    assert [tuple(r) for r in log] == [("admin-1", "key.create", row.id), ("admin-2", "key.revoke", row.id)]
    with pytest.raises(api_keys.KeyNotFound, match="no API key with id 'nope'"), db.session(engine, write=True) as s:
        api_keys.revoke_key(s, "nope", "admin")
    with pytest.raises(ValueError, match="key name 'a:b' must be"), db.session(engine, write=True) as session:
        api_keys.create_key(session, "a:b", Role.VIEWER, "admin")
