"""``diffqc model list|promote|rollback|archive|sync|canary|canary-stop|compare``: the model registry's
lifecycle and trials, against the configured database and Triton (DIFFQC_TRITON_GRPC_URL).

A change first has Triton load what the registry needs before and after it, then commits; inference
picks the new routes up within a few seconds, and once it has, Triton unloads what is no longer
needed (diffqc.serving.lifecycle). Every change is in the audit log
under the caller's name. Exit codes: 0 done, 1 the database or Triton is unavailable or the change is
not allowed (the message names product, version and stage; nothing changed), 2 invalid settings or
arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from diffqc.settings import load_settings
from diffqc.store import db, model_registry, trials
from diffqc.store.cli import _actor, _database
from diffqc.store.model_registry import RegistryError, Stage

T = TypeVar("T")
model_app = typer.Typer(no_args_is_help=True, add_completion=False)

ProductOption = Annotated[str, typer.Option("--product", help="The product type")]
VersionOption = Annotated[str, typer.Option("--version", help="The model version (diffqc model list)")]


TritonOption = Annotated[
    bool,
    typer.Option(
        "--triton/--no-triton",
        help="Load the versions the registry needs into Triton (--no-triton: the registry only, for a Triton "
        "that polls its repository)",
    ),
]


def _refused(exc: Exception) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(1)


def _change(triton: bool, apply: Callable[[Session], T]) -> T:
    """One registry change with Triton in step (diffqc.serving.lifecycle); refused changes exit 1."""
    from diffqc.serving.lifecycle import apply_change
    from diffqc.serving.loader import ModelLoadError

    with _database() as engine:
        try:
            return apply_change(engine, load_settings(), apply, triton, typer.echo)
        except (RegistryError, ModelLoadError) as exc:
            raise _refused(exc) from None


@model_app.command("list")
def list_(product: Annotated[str | None, typer.Option("--product", help="Only this product type")] = None) -> None:
    """The registered model versions: stage, threshold and lineage."""
    with _database() as engine, db.session(engine) as session:
        rows = model_registry.list_versions(session, product)
    table = Table("product", "version", "stage", "threshold", "parent", "replaced", "data", "trained by", "since")
    for row in rows:
        since = row.stage_changed_at or row.created_at
        table.add_row(
            row.product_type,
            row.version,
            row.stage,
            f"{row.threshold:.4g}",
            row.parent_version or "",
            row.replaced_version or "",
            (row.data_fingerprint or "")[:12],
            row.trained_by or "",
            since.isoformat(timespec="seconds"),
        )
    Console(width=200).print(table)


@model_app.command("promote")
def promote(
    product: ProductOption,
    version: VersionOption,
    to: Annotated[Stage | None, typer.Option("--to", help="The stage expected next (shadow or production)")] = None,
    triton: TritonOption = True,
) -> None:
    """Move a version one stage on: candidate → shadow → production (the production one it replaces is archived)."""
    row = _change(triton, lambda session: model_registry.promote(session, product, version, _actor(), to))
    stage, replaced = row.stage, row.replaced_version if row.stage == Stage.PRODUCTION else None
    tail = f" (version {replaced!r} archived)" if replaced else ""
    typer.echo(f"model version {version!r} of {product!r} is now {stage}{tail}")


@model_app.command("rollback")
def rollback(
    product: ProductOption,
    version: Annotated[
        str | None, typer.Option("--version", help="The production version expected (refused if another is)")
    ] = None,
    triton: TritonOption = True,
) -> None:
    """Archive the production version and put the one it replaced back in production."""
    restored, archived = _change(triton, lambda session: model_registry.rollback(session, product, _actor(), version))
    restored_version, archived_version = restored.version, archived.version
    typer.echo(f"rolled back {product!r}: version {restored_version!r} is in production, {archived_version!r} archived")


@model_app.command("archive")
def archive(product: ProductOption, version: VersionOption, triton: TritonOption = True) -> None:
    """Retire a candidate or shadow version."""
    _change(triton, lambda session: model_registry.archive(session, product, version, _actor()))
    typer.echo(f"model version {version!r} of {product!r} is now archived")


@model_app.command("sync")
def sync() -> None:
    """Load into Triton exactly the versions the registry needs (after a Triton restart or diffqc onboard)."""
    from diffqc.serving.loader import ModelLoadError, load, needed_versions

    with _database() as engine, db.session(engine) as session:
        settings = load_settings()
        versions = needed_versions(session)
    try:
        typer.echo(load(settings.triton, versions, settings.grpc))
    except ModelLoadError as exc:
        raise _refused(exc) from None


@model_app.command("canary")
def canary(
    product: ProductOption,
    version: VersionOption,
    line: Annotated[str, typer.Option("--line", help="The line whose frames are split")],
    share: Annotated[float, typer.Option("--share", help="Share of the line's frames the candidate judges")] = 0.1,
    max_excess: Annotated[
        float, typer.Option("--max-excess", help="Alarm rate above production's that rolls the canary back")
    ] = 0.02,
    min_frames: Annotated[int, typer.Option("--min-frames", help="Canary frames before the guard may judge")] = 200,
) -> None:
    """Let a shadow version judge a share of one line's frames (A/B split), rolled back automatically when
    it raises more alarms than production on the same frames."""
    with _database() as engine:
        try:
            with db.session(engine, write=True) as session:
                trials.start_canary(session, product, version, line, share, _actor(), max_excess, min_frames)
        except RegistryError as exc:
            raise _refused(exc) from None
    typer.echo(f"model version {version!r} of {product!r} judges {share:.0%} of line {line!r}'s frames")


@model_app.command("canary-stop")
def canary_stop(
    product: ProductOption, line: Annotated[str, typer.Option("--line", help="The line running the canary")]
) -> None:
    """End a line's canary: all its frames go back to production."""
    with _database() as engine:
        try:
            with db.session(engine, write=True) as session:
                ended = trials.stop_canary(session, product, line, _actor()).version
        except RegistryError as exc:
            raise _refused(exc) from None
    typer.echo(f"canary of version {ended!r} on line {line!r} stopped; production judges every frame")


@model_app.command("compare")
def compare(product: ProductOption, version: VersionOption) -> None:
    """A shadow or canary version against production on the same live frames, and the recommendation."""
    with _database() as engine:
        try:
            with db.session(engine) as session:
                result = trials.compare(session, product, version)
        except RegistryError as exc:
            raise _refused(exc) from None
    table = Table("", f"candidate {version}", f"production {', '.join(result.production_versions) or '-'}")
    table.add_row("alarm rate", f"{result.alarms.candidate:.2%}", f"{result.alarms.production:.2%}")
    for name, field in (("labelled recall", "recall"), ("labelled FPR", "false_positive_rate")):
        values = [getattr(rates, field) for rates in (result.candidate_labelled, result.production_labelled)]
        table.add_row(name, *("-" if v is None else f"{v:.1%}" for v in values))
    Console(width=120).print(table)
    agreement = "-" if result.agreement is None else f"{result.agreement:.1%}"
    typer.echo(f"{result.frames} paired frames ({result.canary_frames} in a canary), verdicts agree on {agreement}")
    typer.echo(f"recommendation: {result.recommendation}: {result.reason}")
