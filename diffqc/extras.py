"""The optional parts of diffqc (pip extras), and one clear line when a command needs a missing one.

The base install (the services image) has no torch: ``diffqc --help`` and every command's
``--help`` work there, and a command that needs an extra says which one instead of a traceback.
"""

from __future__ import annotations

import importlib

import typer
from rich.console import Console

# The modules each extra provides that the commands import (a missing one means a missing extra).
EXTRAS: dict[str, tuple[str, ...]] = {
    "detector": ("torch", "diffusers", "safetensors", "sklearn"),
    "onnx": ("torch", "diffusers", "safetensors", "sklearn", "onnx", "onnxruntime"),
}


def missing_module(extra: str) -> str | None:
    """The first module of ``extra`` that does not import, or None when the extra is installed."""
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


def require_extra(extra: str, command: str) -> None:
    """Exit 1 with one line naming the extra when ``command`` cannot run without it."""
    if missing_module(extra) is not None:
        Console(stderr=True).print(
            f"{command} needs the {extra} extra: pip install 'diffqc[{extra}]'",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(1)
