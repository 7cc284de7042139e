"""The start of every service's ``__main__``: settings, logging, bounded waits for dependencies.

Exit codes: 2 for a bad setting (one message naming the variable), 1 for a dependency that stays
down through ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``, else what ``run_service`` returns.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.runtime.logging import configure_logging
from diffqc.settings import Settings, SettingsError, load_settings
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade


def service_main(name: str, start: Callable[[Settings], int], argv: Sequence[str] | None = None) -> int:
    """Load the settings, configure JSON logging, then run ``start(settings)`` to the exit code.

    A service takes no arguments (``--help`` says so): every setting is a ``DIFFQC_*`` variable.
    """
    argparse.ArgumentParser(
        prog=f"python -m services.{name}",
        description=f"Run the diffqc {name} service until SIGTERM. It takes no arguments: it is configured by "
        "DIFFQC_* environment variables and an optional YAML file (DIFFQC_CONFIG); docs/configuration.md "
        "lists them. Exit codes: 0 clean stop, 1 a dependency stayed down, 2 invalid settings.",
    ).parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, name)
    try:
        return start(settings)
    except SettingsError as exc:  # found bad only when used: a TLS file, missing Kafka credentials
        logging.getLogger(name).critical("invalid settings: %s", exc)
        return 2
    except DependencyUnavailable as exc:
        logging.getLogger(name).critical("cannot start: %s", exc)
        return 1


def migrated_database(settings: Settings) -> Engine:
    """The database engine, once the database answers and its schema is current.

    Migrating is a no-op when current; it is retried, so replicas starting together cannot fail
    on the race.
    """
    engine = make_engine(settings.database.url)
    wait_for(
        "database",
        engine.url.render_as_string(hide_password=True),
        lambda: upgrade(engine),
        settings.service.startup_timeout_s,
    )
    return engine
