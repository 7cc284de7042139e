"""``diffqc keys create|list|revoke|hash`` and ``diffqc audit verify``, against the configured database.

Keys created here work on every running gateway at once (no restart); ``keys hash`` makes a key for
DIFFQC_GATEWAY_API_KEYS instead (a Secret), touching no database. Exit codes: 0 done, 1 the
database is unavailable, an unknown key or a broken audit chain, 2 invalid settings or arguments.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.security.api_keys import NAME, BootstrapKey, Role, hash_key, new_key
from diffqc.settings import SettingsError, load_settings
from diffqc.store import api_keys, audit, db
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade

keys_app = typer.Typer(no_args_is_help=True, add_completion=False)
audit_app = typer.Typer(no_args_is_help=True, add_completion=False)

NameOption = Annotated[str, typer.Option(help="Who or what holds the key (the audit log's actor)")]
RoleOption = Annotated[Role, typer.Option(help="viewer reads, operator also uploads, admin also manages keys")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # a container user without a passwd entry
        return "cli"


@contextmanager
def _database() -> Iterator[Engine]:
    """The configured database, migrated; a settings or database problem ends the command with its message."""
    try:
        engine = make_engine(load_settings().database.url)
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        with db.database_unavailable():
            upgrade(engine)
        yield engine
    except DependencyUnavailable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


@keys_app.command("create")
def create(name: NameOption, role: RoleOption) -> None:
    """Create an API key in the database; it is printed this once (last line), only its hash is stored."""
    with _database() as engine, db.session(engine, write=True) as session:
        try:
            row, key = api_keys.create_key(session, name, role, _actor())
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
    typer.echo(f"created API key {row.name!r}: role {row.role.value}, id {row.id}, prefix {row.prefix}")
    typer.echo(key)


@keys_app.command("list")
def list_keys() -> None:
    """The API keys in the database (never a key or its hash)."""
    with _database() as engine, db.session(engine) as session:
        rows = api_keys.list_keys(session)
    table = Table("id", "name", "role", "prefix", "created", "revoked")
    for row in rows:
        revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else ""
        table.add_row(
            row.id, row.name, row.role.value, row.prefix, row.created_at.isoformat(timespec="seconds"), revoked
        )
    Console().print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (diffqc keys list)")]) -> None:
    """Revoke an API key: every gateway refuses it within DIFFQC_GATEWAY_KEY_CACHE_S seconds."""
    with _database() as engine:
        try:
            with db.session(engine, write=True) as session:
                row = api_keys.revoke_key(session, key_id, _actor())
        except api_keys.KeyNotFound as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
    typer.echo(f"revoked API key {row.name!r} (id {row.id}, prefix {row.prefix})")


@keys_app.command("hash")
def hash_(name: NameOption, role: RoleOption) -> None:
    """Make a key for DIFFQC_GATEWAY_API_KEYS: prints the key (for its holder) and the entry (for the Secret)."""
    if not NAME.fullmatch(name):
        typer.echo(f"key name {name[:120]!r} must be 1-100 characters without ':' or control characters", err=True)
        raise typer.Exit(2)
    prefix, key = new_key()
    typer.echo("API key (give it to its holder; it is stored nowhere):")
    typer.echo(key)
    typer.echo("entry for the JSON list in DIFFQC_GATEWAY_API_KEYS:")
    typer.echo(BootstrapKey(role, name, prefix, hash_key(key)).entry())


@audit_app.command("verify")
def verify() -> None:
    """Check the audit log's hash chain; exit 1 naming the first row that was changed or removed."""
    with _database() as engine, db.session(engine) as session:
        checked, broken = audit.verify_chain(session)
    if broken is not None:
        typer.echo(
            f"audit log broken at row {broken.id}: {broken.reason} ({checked} rows before it are intact)", err=True
        )
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {checked} rows")
