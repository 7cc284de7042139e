"""The Triton model versions the registry needs, loaded through Triton's model control API.

Under explicit model control (``--model-control-mode=explicit --load-model=diffqc_detector``)
Triton serves what it is told to: each product's production and shadow versions, and the version a
rollback would restore, so that a rollback is instant. ``load`` reloads the model with its config's
``version_policy`` set to exactly those versions (the load API's config override); Triton keeps
serving the versions it has until the new set is ready. A Triton that polls its repository serves
every staged version by itself (version_policy all), so there is nothing to load.
"""

from __future__ import annotations

import json

import tritonclient.grpc as grpcclient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tritonclient.utils import InferenceServerException

from diffqc.serving.client import triton_credentials
from diffqc.settings import GrpcSettings, TritonSettings
from diffqc.store.model_registry import Stage
from diffqc.store.models import ModelVersion

POLLING = "polling is enabled"  # Triton's refusal of the load API when it polls its repository


class ModelLoadError(RuntimeError):
    """Triton did not load the versions asked for (unreachable, or a version failed to load)."""


def needed_versions(session: Session) -> list[int]:
    """Production and shadow versions of every product, and each production version's rollback target."""
    rows = session.execute(
        select(ModelVersion.version, ModelVersion.replaced_version).where(
            ModelVersion.stage.in_([Stage.PRODUCTION.value, Stage.SHADOW.value])
        )
    ).all()
    names = {v for row in rows for v in row if v is not None}
    return sorted(int(v) for v in names if v.isdigit())  # Triton versions are the repository's numbers


def load(settings: TritonSettings, versions: list[int], grpc_settings: GrpcSettings | None = None) -> str:
    """Make Triton serve exactly ``versions`` of the model; returns what was done, in words."""
    if not versions:
        return "no version to load"
    url, name = settings.grpc_url, settings.model_name
    client = grpcclient.InferenceServerClient(url, creds=triton_credentials(settings, grpc_settings))
    try:
        ready = {
            int(m.version)
            for m in client.get_model_repository_index().models
            if m.name == name and m.state == "READY" and m.version.isdigit()
        }
        if ready == set(versions):
            return f"Triton already serves versions {versions}"
        config = client.get_model_config(name, as_json=True)["config"]
        config["version_policy"] = {"specific": {"versions": versions}}
        client.load_model(name, config=json.dumps(config))
    except InferenceServerException as exc:
        if POLLING in (exc.message() or ""):
            return "Triton polls its repository and serves every staged version"
        raise ModelLoadError(f"Triton at {url} did not load versions {versions} of {name!r}: {exc.message()}") from None
    finally:
        client.close()
    return f"Triton serves versions {versions}"
