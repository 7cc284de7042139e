"""``diffqc export``: stage a detector artifact into a Triton model repository, with the model
configuration for CPU or GPU instances (``diffqc.serving.model_config``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from diffqc.core.errors import DetectorError
from diffqc.core.precision import Precision
from diffqc.extras import require_extra
from diffqc.serving.model_config import render_config
from diffqc.serving.repository import stage_version

console = Console()


class ExportFormat(StrEnum):
    python = "python"
    onnx = "onnx"


class ConfigDevice(StrEnum):
    cpu = "cpu"
    gpu = "gpu"


def export(
    model: Annotated[Path, typer.Option(help="Detector artifact directory (from diffqc train)")],
    repo: Annotated[Path, typer.Option(help="Triton model repository")] = Path("model-repository"),
    format: Annotated[ExportFormat, typer.Option(help="onnx: also export the denoiser to ONNX")] = ExportFormat.python,
    device: Annotated[
        ConfigDevice | None,
        typer.Option(
            help="Write the model config for CPU or GPU instances (default: keep the repository's; CPU if new)"
        ),
    ] = None,
    precision: Annotated[
        Precision, typer.Option(help="GPU config: fp32, or fp16/bf16 autocast of the denoiser")
    ] = Precision.fp32,
    instances: Annotated[
        int | None, typer.Option(min=1, help="Instances per CPU config / per GPU (default 1 / 2)")
    ] = None,
) -> None:
    """Stage MODEL into REPO as the next version of the diffqc_detector model."""
    if precision is not Precision.fp32 and device is not ConfigDevice.gpu:
        raise typer.BadParameter("applies to the GPU config: add --device gpu", param_hint="--precision")
    if instances is not None and device is None:
        raise typer.BadParameter("sets the config that --device writes: add --device cpu|gpu", param_hint="--instances")
    config = None if device is None else render_config(device.value, instances, precision)
    if format is ExportFormat.onnx:  # python: staging copies files, no torch
        require_extra("onnx", "diffqc export --format onnx")
    try:
        version_dir = stage_version(model, repo, config)
        console.print(f"staged {model} as {version_dir}" + (f" ({device.value} config)" if device else ""))
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
