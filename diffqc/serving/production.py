"""Which Triton model version judges a product's frames: its production version in the model registry.

Inference asks Triton for exactly that version (diffqc.store.model_registry), so a promotion or a
rollback takes effect when this cache next reads the registry: within ``CACHE_S`` seconds, without
a restart. A product with no registered version gets ``None`` and Triton's default (its newest
loaded version), as before the registry existed. While the database does not answer, the last
version read keeps serving; with none read yet the frame waits (DependencyUnavailable, retried).
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.engine import Engine

from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.startup import migrated_database
from diffqc.settings import Settings
from diffqc.store import db
from diffqc.store.model_registry import production_version

log = logging.getLogger(__name__)
CACHE_S = 2.0  # how stale a promotion or rollback may be at inference: "within seconds", one query per product


class ProductionVersions:
    def __init__(self, engine: Engine, cache_s: float = CACHE_S):
        self.engine, self.cache_s = engine, cache_s
        self._known: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def version(self, product: str) -> str | None:
        """The production version of ``product``, or None when it has none registered."""
        now = time.monotonic()
        with self._lock:
            cached = self._known.get(product)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1]
        try:
            with db.session(self.engine) as session:
                row = production_version(session, product)
                version = row.version if row is not None else None
        except DependencyUnavailable as exc:
            if cached is None:
                raise
            log.warning("model registry unreadable (%s); %r keeps version %r", exc, product, cached[1])
            with self._lock:  # ask again after cache_s, not on every frame meanwhile
                self._known[product] = (now, cached[1])
            return cached[1]
        if cached is not None and cached[1] != version:
            log.info("production model version of %r: %r -> %r", product, cached[1], version)
        with self._lock:
            self._known[product] = (now, version)
        return version


def production_versions(settings: Settings) -> ProductionVersions | None:
    """The inference service's view of the registry (database migrated). None when DIFFQC_DATABASE_URL is not
    set: a deployment that gives inference no database (the chart, until its inference pods may reach
    PostgreSQL) keeps Triton's newest version, as before the registry."""
    if "url" not in settings.database.model_fields_set:
        log.warning("DIFFQC_DATABASE_URL is not set: Triton's newest model version judges every frame")
        return None
    return ProductionVersions(migrated_database(settings))
