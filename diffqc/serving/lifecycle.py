"""One model-registry change with Triton in step, for the CLI and the dashboard alike.

A dry run (rolled back) tells what Triton must serve before and after the change; Triton loads all of
that (else nothing changes); the change commits in a short transaction of its own (no lock is held
while Triton loads); once inference has seen it (its cache of the registry), Triton drops what is no
longer needed. ``triton=False`` changes the registry only, for a Triton that polls its repository.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from diffqc.serving.loader import ModelLoadError, load, needed_versions
from diffqc.serving.production import CACHE_S
from diffqc.settings import Settings
from diffqc.store import db

T = TypeVar("T")
log = logging.getLogger(__name__)


def apply_change(
    engine: Engine,
    settings: Settings,
    apply: Callable[[Session], T],
    triton: bool = True,
    say: Callable[[str], None] = log.info,
) -> T:
    """Run ``apply`` (a registry change) with Triton serving what it needs; ``say`` hears what Triton did.

    Raises RegistryError (the change is not allowed) or ModelLoadError (Triton did not load what the
    change needs); nothing changed in either case."""
    union: list[int] = []
    after: list[int] = []
    if triton:
        with db.session(engine) as session:
            before = needed_versions(session)
            apply(session)
            after = needed_versions(session)
            session.rollback()
        union = sorted({*before, *after})
        say(load(settings.triton, union, settings.grpc))
    with db.session(engine, write=True) as session:
        result = apply(session)
    if triton and after != union:
        time.sleep(CACHE_S + 1)  # inference may still ask for a dropped version until its cache expires
        try:
            say(load(settings.triton, after, settings.grpc))
        except ModelLoadError as exc:  # the change stands; the extra versions only cost memory
            say(f"{exc} (the change is committed; run diffqc model sync)")
    return result
