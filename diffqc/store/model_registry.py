"""The model registry's lifecycle: each product's model versions move candidate → shadow → production → archived.

One version per product is in production: inference asks Triton for exactly that version and
scoring thresholds with its row. Promoting a version to production archives the one it replaces
and remembers it, so ``rollback`` puts that one back in one step (and a second rollback goes one
further back). Every change is audited in the same transaction (diffqc.store.audit), and the
rows of the product are locked meanwhile, so two changes of one product run one after the other.
A change of production (promote, rollback) ends the product's open canaries, and archiving a version
ends its own: a canary compares one candidate with one production version.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.store import audit
from diffqc.store.models import ModelCanary, ModelVersion


class Stage(enum.StrEnum):
    CANDIDATE = "candidate"
    SHADOW = "shadow"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# What promote moves a version to, from each stage; production and archived are left by
# promoting another version, rollback or archive.
NEXT = {Stage.CANDIDATE: Stage.SHADOW, Stage.SHADOW: Stage.PRODUCTION}


class RegistryError(ValueError):
    """A lifecycle change that is not allowed or names no registered version; the message says which."""


def _rows(session: Session, product: str) -> list[ModelVersion]:
    """The product's versions, locked for this transaction (PostgreSQL) so stage changes serialize."""
    rows = list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.product_type == product)
            .order_by(ModelVersion.created_at, ModelVersion.id)
            .with_for_update()
        )
    )
    if not rows:
        raise RegistryError(f"no model version is registered for product type {product!r}")
    return rows


def _find(rows: list[ModelVersion], product: str, version: str) -> ModelVersion:
    for row in rows:
        if row.version == version:
            return row
    known = ", ".join(f"{r.version} ({r.stage})" for r in rows)
    raise RegistryError(f"product type {product!r} has no model version {version!r}; registered: {known}")


def _set(row: ModelVersion, stage: Stage) -> None:
    row.stage, row.active, row.stage_changed_at = stage.value, stage is Stage.PRODUCTION, clock.now()


def end_canaries(
    session: Session, product: str, reason: str, version: str | None = None, line: str | None = None
) -> list[ModelCanary]:
    """End the product's open canaries (of ``version``, on ``line``, when given); returns them."""
    query = select(ModelCanary).where(ModelCanary.product_type == product, ModelCanary.ended_at.is_(None))
    if version is not None:
        query = query.where(ModelCanary.version == version)
    if line is not None:
        query = query.where(ModelCanary.line_id == line)
    ended = list(session.scalars(query.with_for_update()))
    for canary in ended:
        canary.ended_at, canary.end_reason = clock.now(), reason
    return ended


def make_production(session: Session, rows: list[ModelVersion], row: ModelVersion) -> str | None:
    """``row`` becomes the production version; the one it replaces is archived. Returns that one's version."""
    replaced = None
    for other in rows:
        if other is not row and (other.stage == Stage.PRODUCTION or other.active):
            _set(other, Stage.ARCHIVED)
            replaced = other.version
    if replaced is not None:
        row.replaced_version = replaced
    _set(row, Stage.PRODUCTION)
    end_canaries(session, row.product_type, f"version {row.version} became production")
    session.flush()
    return replaced


def production_version(session: Session, product: str) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion).where(ModelVersion.product_type == product, ModelVersion.stage == Stage.PRODUCTION.value)
    ).first()


def shadow_versions(session: Session, product: str) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.product_type == product, ModelVersion.stage == Stage.SHADOW.value)
            .order_by(ModelVersion.created_at, ModelVersion.id)
        )
    )


def list_versions(session: Session, product: str | None = None) -> list[ModelVersion]:
    query = select(ModelVersion).order_by(ModelVersion.product_type, ModelVersion.created_at, ModelVersion.id)
    if product is not None:
        query = query.where(ModelVersion.product_type == product)
    return list(session.scalars(query))


def _audit(session: Session, actor: str, action: str, row: ModelVersion, **details: Any) -> None:
    audit.append(session, actor, action, f"{row.product_type}/{row.version}", details)


def promote(session: Session, product: str, version: str, actor: str, to: Stage | None = None) -> ModelVersion:
    """Move ``version`` one stage on (candidate → shadow → production); ``to`` must be that stage when given."""
    rows = _rows(session, product)
    row = _find(rows, product, version)
    current = Stage(row.stage)
    target = NEXT.get(current)
    if target is None or (to is not None and to is not target):
        allowed = f"it can only go to {target.value}" if target else "promote another version or use rollback"
        wanted = f" to {to.value}" if to else ""
        raise RegistryError(
            f"model version {version!r} of {product!r} is {current.value}: it cannot be promoted{wanted}; {allowed}"
        )
    if target is Stage.PRODUCTION:
        replaced = make_production(session, rows, row)
        _audit(
            session, actor, "model.promote", row, **{"from": current.value, "to": target.value, "replaced": replaced}
        )
    else:
        _set(row, target)
        session.flush()
        _audit(session, actor, "model.promote", row, **{"from": current.value, "to": target.value})
    return row


def rollback(
    session: Session, product: str, actor: str, version: str | None = None
) -> tuple[ModelVersion, ModelVersion]:
    """Archive the production version (``version``, when given, must be it) and put the one it replaced back
    in production; returns (restored, archived)."""
    rows = _rows(session, product)
    current = next((r for r in rows if r.stage == Stage.PRODUCTION), None)
    if current is None:
        raise RegistryError(f"product type {product!r} has no production model version to roll back")
    if version is not None and version != current.version:
        raise RegistryError(
            f"model version {version!r} of {product!r} is not in production ({current.version!r} is); "
            "nothing rolled back"
        )
    if current.replaced_version is None:
        raise RegistryError(
            f"model version {current.version!r} of {product!r} replaced no earlier production version; "
            "there is nothing to roll back to"
        )
    previous = _find(rows, product, current.replaced_version)
    was = previous.stage
    _set(current, Stage.ARCHIVED)
    _set(previous, Stage.PRODUCTION)
    end_canaries(session, product, f"rolled back to version {previous.version}")
    session.flush()
    _audit(
        session,
        actor,
        "model.rollback",
        previous,
        **{"from": was, "to": Stage.PRODUCTION.value, "archived": current.version},
    )
    return previous, current


def archive(session: Session, product: str, version: str, actor: str) -> ModelVersion:
    """Retire a candidate or shadow version (a production version is replaced by promoting another)."""
    rows = _rows(session, product)
    row = _find(rows, product, version)
    current = Stage(row.stage)
    if current is Stage.PRODUCTION:
        raise RegistryError(
            f"model version {version!r} of {product!r} is in production: promote another version or roll back instead"
        )
    if current is Stage.ARCHIVED:
        raise RegistryError(f"model version {version!r} of {product!r} is already archived")
    _set(row, Stage.ARCHIVED)
    end_canaries(session, product, f"version {version} archived", version)
    session.flush()
    _audit(session, actor, "model.archive", row, **{"from": current.value, "to": Stage.ARCHIVED.value})
    return row
