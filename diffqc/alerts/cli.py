"""``diffqc alerts failed`` and ``diffqc alerts redrive``: alerts the MES refused for good, against the configured
database (``diffqc.store.alerts``).

Exit codes: 0 done, 1 the database is unavailable or a given id is not a failed alert, 2 invalid settings or
options (neither or both of --id and --all, a bad page token).
"""

from __future__ import annotations

from typing import Annotated

import typer

from diffqc.store import db
from diffqc.store.alerts import BadPageToken, failed_alerts, redrive
from diffqc.store.cli import _actor, _database

alerts_app = typer.Typer(no_args_is_help=True, add_completion=False)


@alerts_app.command("failed")
def list_failed(
    line: Annotated[str, typer.Option(help="Only alerts of this line")] = "",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Show at most this many, the oldest first")] = 100,
    page_token: Annotated[str, typer.Option(help="The next-page token a previous call printed")] = "",
) -> None:
    """Alerts the MES refused for good: id, line, when raised, attempts and the refusal."""
    with _database() as engine, db.session(engine) as session:
        try:
            rows, token = failed_alerts(session, line, limit, page_token)
        except BadPageToken as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        typer.echo("\t".join(("alert id", "line", "created at (UTC)", "attempts", "last error")))
        for row in rows:
            error = (row.last_error or "").replace("\n", " ")
            typer.echo("\t".join((row.id, row.line_id, row.created_at.isoformat(), str(row.attempts), error)))
    typer.echo(f"{len(rows)} failed alert(s)" + (f"; next page: --page-token {token}" if token else ""), err=True)


@alerts_app.command("redrive")
def redrive_alerts(
    alert_id: Annotated[list[str] | None, typer.Option("--id", help="Re-drive this failed alert (repeatable)")] = None,
    all_failed: Annotated[bool, typer.Option("--all", help="Re-drive every failed alert")] = False,
) -> None:
    """Deliver failed alerts to the MES again once the cause is fixed (audited under your name); the bridge sends
    them on its next round. Failed line stops are not re-driven."""
    if bool(alert_id) == all_failed:
        typer.echo("give --id (one or more) or --all, not both", err=True)
        raise typer.Exit(2)
    with _database() as engine, db.session(engine, write=True) as session:
        done, not_failed = redrive(session, None if all_failed else alert_id, _actor())
    typer.echo(f"re-driven {len(done)} alert(s)")
    if not_failed:
        typer.echo(f"not failed alerts (unknown, pending or delivered): {', '.join(not_failed)}", err=True)
        raise typer.Exit(1)
