"""``diffqc export``: stage a detector artifact into a Triton model repository."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from diffqc.core.errors import DetectorError
from diffqc.detector.detector import Detector
from diffqc.serving.onnx_export import export_denoiser
from diffqc.serving.repository import stage_version

console = Console()


class ExportFormat(StrEnum):
    python = "python"
    onnx = "onnx"


def export(
    model: Path = typer.Option(..., help="Detector artifact directory (from diffqc train)"),
    repo: Path = typer.Option(Path("model-repository"), help="Triton model repository"),
    format: ExportFormat = typer.Option(ExportFormat.python, help="onnx: also export the denoiser to ONNX"),
) -> None:
    """Stage MODEL into REPO as the next version of the diffqc_detector model."""
    try:
        version_dir = stage_version(model, repo)
        console.print(f"staged {model} as {version_dir}")
        if format is ExportFormat.onnx:
            exported = export_denoiser(Detector.load(model), version_dir / "onnx")
            console.print(f"ONNX denoiser: {exported.path} "
                          f"(max abs difference to torch in onnxruntime: {exported.max_abs_diff:.1e})")
    except DetectorError as exc:
        console.print(f"[red]export failed:[/red] {exc}")
        raise typer.Exit(1) from None
