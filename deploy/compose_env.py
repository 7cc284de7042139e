"""Write the secrets docker-compose.yml needs into .env (compose reads it from the project directory).

    python3 deploy/compose_env.py            # creates or completes ./.env, mode 0600
    python3 deploy/compose_env.py --file F   # another file (docker compose --env-file F)

Each missing secret gets a random value (Python's ``secrets``); values already in the file are kept,
so running it again never changes a password a volume was initialised with. The gateway starts with
no API key, so every route but /health and /login answers 401 until one exists:
``docker compose exec gateway diffqc keys create --name admin --role admin`` (docs/deployment.md).
Standard library only: it runs on the Docker host before any image exists.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Hex: safe inside the Postgres URL and in .env without quoting.
GENERATED = (
    "POSTGRES_PASSWORD",
    "INFLUXDB_ADMIN_PASSWORD",
    "DIFFQC_INFLUX_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
    "DIFFQC_GATEWAY_LINK_SECRET",
    "DIFFQC_GATEWAY_SESSION_SECRET",
    "MINIO_ROOT_PASSWORD",  # the s3 profile's MinIO, and the services' key to it
)
NO_API_KEYS = "[]"


def names_in(text: str) -> set[str]:
    """The variables an env file sets (KEY=VALUE lines; comments and blank lines ignored)."""
    return {
        line.split("=", 1)[0].strip().removeprefix("export ").strip()
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }


def complete(path: Path) -> list[str]:
    """Add the missing secrets to ``path`` (created 0600); return the names added."""
    text = path.read_text() if path.exists() else ""
    present = names_in(text)
    added = {name: secrets.token_hex(32) for name in GENERATED if name not in present}
    if "DIFFQC_GATEWAY_API_KEYS" not in present:
        added["DIFFQC_GATEWAY_API_KEYS"] = NO_API_KEYS
    if added:
        lines = [f"{name}={value}" for name, value in added.items()]
        if text and not text.endswith("\n"):
            text += "\n"
        # Create it private; an existing file keeps its mode.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n".join(lines) + "\n")
    return list(added)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=ROOT / ".env", help="env file to create or complete")
    args = parser.parse_args(argv)
    try:
        added = complete(args.file)
    except OSError as exc:
        print(f"compose_env: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: added {', '.join(added)}" if added else f"{args.file}: nothing missing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
