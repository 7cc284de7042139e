"""Which Triton model versions see a product's frames: the model registry's routes.

Every frame is judged by its product's production version, except the share of one line's frames
that an open canary routes to a candidate (chosen by the frame id, so a redelivered frame takes the
same route). Versions under trial are scored beside the judging one: the product's shadow versions
(their verdicts do not count), or, for a canary frame, production (so canary and production are
compared on the same frames). Inference asks Triton for exactly these versions.

The routes are read from the registry at most every ``CACHE_S`` seconds per product, so a promotion,
a rollback or a canary takes effect within seconds, without a restart. A product with no registered
version is judged by Triton's default (its newest loaded version), as before the registry existed.
While the database does not answer, the last routes read keep serving; with none read yet the frame
waits (DependencyUnavailable, retried).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.startup import migrated_database
from diffqc.settings import Settings
from diffqc.store import db
from diffqc.store.model_registry import production_version, shadow_versions
from diffqc.store.trials import open_canaries

log = logging.getLogger(__name__)
CACHE_S = 2.0  # how stale a promotion or rollback may be at inference: "within seconds", one query per product


@dataclass(frozen=True)
class Route:
    """How one frame is inferred: ``judge`` decides (None: Triton's newest), ``beside`` are scored too."""

    judge: str | None
    beside: tuple[str, ...] = ()
    canary: bool = False


@dataclass(frozen=True)
class ProductRoutes:
    production: str | None
    shadows: tuple[str, ...] = ()
    canaries: dict[str, tuple[str, float]] = field(default_factory=dict)  # line -> (version, share)

    def route(self, line: str, frame_id: str) -> Route:
        canary = self.canaries.get(line)
        if canary is not None and self.production is not None and in_share(frame_id, canary[1]):
            return Route(canary[0], (self.production,), canary=True)
        return Route(self.production, self.shadows)


def in_share(frame_id: str, share: float) -> bool:
    """Whether a frame falls in a ``share`` (0..1) of frames: a stable hash of its id, the same on every replica."""
    bucket = int.from_bytes(hashlib.sha256(frame_id.encode()).digest()[:4], "big") / 2**32
    return bucket < share


def read_routes(engine: Engine, product: str) -> ProductRoutes:
    with db.session(engine) as session:
        row = production_version(session, product)
        shadows = tuple(r.version for r in shadow_versions(session, product))
        canaries = {c.line_id: (c.version, c.share) for c in open_canaries(session, product)}
    return ProductRoutes(row.version if row is not None else None, shadows, canaries)


class ModelRoutes:
    def __init__(self, engine: Engine, cache_s: float = CACHE_S):
        self.engine, self.cache_s = engine, cache_s
        self._known: dict[str, tuple[float, ProductRoutes]] = {}
        self._lock = threading.Lock()

    def routes(self, product: str) -> ProductRoutes:
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(product)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        try:
            routes = read_routes(self.engine, product)
        except DependencyUnavailable as exc:
            if cached is None:
                raise
            log.warning("model registry unreadable (%s); %r keeps its routes %s", exc, product, cached[1])
            with self._lock:  # ask again after cache_s, not on every frame meanwhile
                self._known[product] = (now, cached[1])
            return cached[1]
        if cached is not None and cached[1] != routes:
            log.info("model routes of %r: %s -> %s", product, cached[1], routes)
        with self._lock:
            self._known[product] = (now, routes)
        return routes

    def route(self, product: str, line: str, frame_id: str) -> Route:
        return self.routes(product).route(line, frame_id)


def model_routes(settings: Settings) -> ModelRoutes | None:
    """The inference service's view of the registry (database migrated). None when DIFFQC_DATABASE_URL is not
    set: a deployment that gives inference no database (the chart, until its inference pods may reach
    PostgreSQL) keeps Triton's newest version, as before the registry."""
    if "url" not in settings.database.model_fields_set:
        log.warning("DIFFQC_DATABASE_URL is not set: Triton's newest model version judges every frame")
        return None
    return ModelRoutes(migrated_database(settings))
