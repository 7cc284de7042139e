"""``diffqc export``: stage a detector artifact into a Triton model repository."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from diffqc.core.errors import DetectorError
from diffqc.extras import require_extra
from diffqc.serving.repository import stage_version

console = Console()


class ExportFormat(StrEnum):
    python = "python"
    onnx = "onnx"


def export(
    model: Annotated[Path, typer.Option(help="Detector artifact directory (from diffqc train)")],
    repo: Annotated[Path, typer.Option(help="Triton model repository")] = Path("model-repository"),
    format: Annotated[ExportFormat, typer.Option(help="onnx: also export the denoiser to ONNX")] = ExportFormat.python,
) -> None:
    """Stage MODEL into REPO as the next version of the diffqc_detector model."""
    if format is ExportFormat.onnx:  # python: staging copies files, no torch
        require_extra("onnx", "diffqc export --format onnx")
    try:
        version_dir = stage_version(model, repo)
        console.print(f"staged {model} as {version_dir}")
        if format is ExportFormat.onnx:
            from diffqc.detector.detector import Detector
            from diffqc.serving.onnx_export import export_denoiser

            exported = export_denoiser(Detector.load(model), version_dir / "onnx")
            console.print(
                f"ONNX denoiser: {exported.path} "
                f"(max abs difference to torch in onnxruntime: {exported.max_abs_diff:.1e})"
            )
    except DetectorError as exc:
        console.print(f"[red]export failed:[/red] {exc}")
        raise typer.Exit(1) from None
