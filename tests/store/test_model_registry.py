"""The model registry's lifecycle on a real PostgreSQL: stages, lineage, rollback, audit, `diffqc model`."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.store import audit, db, model_registry
from diffqc.store.engine import make_engine
from diffqc.store.inspections import active_model_version, register_model_version
from diffqc.store.migrate import upgrade
from diffqc.store.model_registry import RegistryError, Stage
from diffqc.store.models import AuditEntry
from diffqc.store.products import register_product


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _register(engine, *versions: str, product: str = "pcb") -> None:
    """The first version goes to production (as a product's first model does), the others are candidates."""
    with db.session(engine, write=True) as session:
        register_product(session, product, {"height": 64, "width": 64, "channels": 3})
        for i, version in enumerate(versions):
            register_model_version(
                session,
                product,
                version,
                f"file:///m/{version}",
                0.5,
                activate=i == 0,
                lineage={"parent_version": versions[0] if i else None, "data_fingerprint": f"fp{version}"},
            )


def _stages(engine, product: str = "pcb") -> dict[str, str]:
    with db.session(engine) as session:
        return {r.version: r.stage for r in model_registry.list_versions(session, product)}


def test_promote_archives_the_replaced_version_and_rollback_restores_it(engine):
    _register(engine, "1", "2", "3")
    assert _stages(engine) == {"1": "production", "2": "candidate", "3": "candidate"}
    with db.session(engine, write=True) as session:
        model_registry.promote(session, "pcb", "2", "alice")
        model_registry.promote(session, "pcb", "2", "alice", to=Stage.PRODUCTION)
    assert _stages(engine) == {"1": "archived", "2": "production", "3": "candidate"}
    with db.session(engine) as session:
        assert active_model_version(session, "pcb").version == "2"  # scoring's view stays in step
        assert model_registry.production_version(session, "pcb").replaced_version == "1"

    with db.session(engine, write=True) as session:
        restored, archived = model_registry.rollback(session, "pcb", "bob", version="2")
    assert (restored.version, archived.version) == ("1", "2")
    assert _stages(engine) == {"1": "production", "2": "archived", "3": "candidate"}
    with db.session(engine, write=True) as session:
        model_registry.archive(session, "pcb", "3", "bob")
        entries = [(e.actor, e.action, e.subject, e.details) for e in session.query(AuditEntry).all()]
        assert audit.verify_chain(session)[1] is None
    assert entries == [
        ("alice", "model.promote", "pcb/2", {"from": "candidate", "to": "shadow"}),
        ("alice", "model.promote", "pcb/2", {"from": "shadow", "to": "production", "replaced": "1"}),
        ("bob", "model.rollback", "pcb/1", {"from": "archived", "to": "production", "archived": "2"}),
        ("bob", "model.archive", "pcb/3", {"from": "candidate", "to": "archived"}),
    ]


def test_refused_changes_name_product_version_and_stage_and_change_nothing(engine):
    _register(engine, "1", "2")
    refused = {
        "production": lambda s: model_registry.promote(s, "pcb", "2", "a", to=Stage.PRODUCTION),
        "in production": lambda s: model_registry.archive(s, "pcb", "1", "a"),
        "nothing to roll back": lambda s: model_registry.rollback(s, "pcb", "a"),
        "not in production": lambda s: model_registry.rollback(s, "pcb", "a", version="2"),
        "no model version '9'": lambda s: model_registry.promote(s, "pcb", "9", "a"),
        "no model version is registered for product type 'bolts'": lambda s: model_registry.promote(
            s, "bolts", "1", "a"
        ),
    }
    for message, change in refused.items():
        with pytest.raises(RegistryError, match=message) as raised, db.session(engine, write=True) as session:
            change(session)
        assert "'pcb'" in str(raised.value) or "'bolts'" in str(raised.value)
    assert "'2' of 'pcb' is shadow: it cannot be promoted to shadow" in str(
        pytest.raises(RegistryError, _promote_twice, engine).value
    )
    assert _stages(engine) == {"1": "production", "2": "shadow"}


def _promote_twice(engine):
    with db.session(engine, write=True) as session:
        model_registry.promote(session, "pcb", "2", "a")  # to shadow: committed
    with db.session(engine, write=True) as session:
        model_registry.promote(session, "pcb", "2", "a", to=Stage.SHADOW)  # it is shadow now: refused
    raise AssertionError("unreachable")


def test_migration_0008_makes_the_active_version_production(postgres_url):
    engine = make_engine(postgres_url)
    try:
        upgrade(engine, "0007")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO product_types (name, preprocessing, nominal_ranges) VALUES ('pcb', '{}', '{}')")
            )
            for version, active in (("1", False), ("2", True)):
                conn.execute(
                    text(
                        "INSERT INTO model_versions (product_type, version, artifact_uri, threshold, metrics, active,"
                        " created_at) VALUES ('pcb', :v, 'file:///m', 0.5, '{}', :a, now())"
                    ),
                    {"v": version, "a": active},
                )
        upgrade(engine)
        assert _stages(engine) == {"1": "candidate", "2": "production"}
    finally:
        engine.dispose()


def test_diffqc_model_cli(engine, postgres_url):
    _register(engine, "1", "2")

    def run(*args: str):
        no_triton = (
            ["--no-triton"] if args[0] != "list" else []
        )  # Triton's part: tests/services/test_inference_registry.py
        return CliRunner().invoke(app, ["model", *args, *no_triton], env={"DIFFQC_DATABASE_URL": postgres_url})

    listed = run("list", "--product", "pcb")
    assert listed.exit_code == 0 and "candidate" in listed.output and "fp2" in listed.output
    assert (
        run("promote", "--product", "pcb", "--version", "2").output.strip()
        == "model version '2' of 'pcb' is now shadow"
    )
    promoted = run("promote", "--product", "pcb", "--version", "2")
    assert promoted.output.strip() == "model version '2' of 'pcb' is now production (version '1' archived)"
    back = run("rollback", "--product", "pcb")
    assert back.exit_code == 0, back.output
    assert back.output.strip() == "rolled back 'pcb': version '1' is in production, '2' archived"
    again = run("archive", "--product", "pcb", "--version", "2")
    assert again.exit_code == 1 and "model version '2' of 'pcb' is already archived" in again.output
    assert run("promote", "--product", "pcb").exit_code == 2  # --version is required
    with db.session(engine) as session:
        actors = {e.actor for e in session.query(AuditEntry).all()}
    assert all(actor.startswith("cli") for actor in actors)
