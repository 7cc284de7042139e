"""``diffqc keys`` and ``diffqc audit`` against a real PostgreSQL database named by DIFFQC_DATABASE_URL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.security.api_keys import parse_entry, prefix_of, verify_key
from diffqc.store.engine import make_engine


@pytest.fixture
def run(postgres_url):
    def run(*args: str):
        return CliRunner().invoke(app, list(args), env={"DIFFQC_DATABASE_URL": postgres_url})

    return run


def test_keys_create_list_revoke(run, postgres_url):
    created = run("keys", "create", "--name", "line-pc-3", "--role", "operator")
    assert created.exit_code == 0, created.output
    summary, key = created.output.strip().splitlines()
    assert summary.startswith("created API key 'line-pc-3': role operator, id ")
    key_id = summary.split(", id ")[1].split(",")[0]

    listed = run("keys", "list")
    assert listed.exit_code == 0 and "line-pc-3" in listed.output and prefix_of(key) in listed.output
    assert key not in listed.output

    assert run("keys", "revoke", key_id).output.startswith(f"revoked API key 'line-pc-3' (id {key_id}")
    unknown = run("keys", "revoke", "no-such-id")
    assert unknown.exit_code == 1 and "no API key with id 'no-such-id'" in unknown.output
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            actions = conn.execute(text("SELECT action, actor FROM audit_log ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [a for a, _ in actions] == ["key.create", "key.revoke"]
    assert all(actor.startswith("cli") for _, actor in actions)
    assert run("audit", "verify").output.strip() == "audit log intact: 2 rows"


def test_keys_create_refuses_a_bad_role_or_name(run):
    assert run("keys", "create", "--name", "x", "--role", "root").exit_code == 2
    bad_name = run("keys", "create", "--name", "a:b", "--role", "viewer")
    assert bad_name.exit_code == 2 and "key name 'a:b' must be 1-100 characters" in bad_name.output


def test_keys_hash_prints_a_key_and_its_entry_and_touches_no_database():
    result = CliRunner().invoke(
        app, ["keys", "hash", "--role", "admin", "--name", "ci"], env={"DIFFQC_DATABASE_URL": "postgresql://nowhere/x"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    key, entry = lines[1], lines[3]
    parsed = parse_entry(entry)
    assert (parsed.role.value, parsed.name, parsed.prefix) == ("admin", "ci", prefix_of(key))
    assert verify_key(key, parsed.hashed) and key not in entry


def test_a_database_that_does_not_answer_is_named():
    result = CliRunner().invoke(
        app, ["audit", "verify"], env={"DIFFQC_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    assert result.exit_code == 1 and "database unavailable: OperationalError" in result.output
