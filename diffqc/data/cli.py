"""Build data sets in the MVTec AD layout, each with a preview contact sheet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from diffqc.data.preview import contact_sheet
from diffqc.data.synth import PRODUCTS, generate_product
from diffqc.data.textures import TEXTURES, build_texture_benchmark

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)

OutDir = Annotated[Path, typer.Option("--out", help="Folder to write into: one MVTec AD data set per subfolder.")]
Preview = Annotated[Path | None, typer.Option("--preview", help="Contact-sheet PNG (default: <out>/preview.png).")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same images.")]
# generate_product and build_texture_benchmark: (name, root, n_train, n_test_good, n_test_defect,
# size, seed, progress) -> the data set's folder.
Builder = Callable[[str, Path, int, int, int, int, int, Callable[[int], None]], Path]


def _names(csv: str, known, what: str) -> list[str]:
    names = [n.strip() for n in csv.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise typer.BadParameter(
            f"unknown {what} {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}"
        )
    return names


@contextmanager
def _progress() -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    with Progress(
        TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:

        def task(name: str, total: int | None) -> Callable[[int], None]:
            tid = bar.add_task(name, total=total)
            return lambda n: bar.advance(tid, n)

        yield task


@contextmanager
def _clear_errors() -> Iterator[None]:
    # Bad parameters and bad data end with one readable line, not a traceback.
    try:
        yield
    except (ValueError, ImportError, OSError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def _finish(paths: list[Path], out: Path, preview: Path | None) -> None:
    sheet = contact_sheet(paths, preview or out / "preview.png")
    for p in paths:
        console.print(f"wrote {p}")
    console.print(f"preview: {sheet}")


def _build_all(
    build: Builder,
    names: list[str],
    out: Path,
    n_train: int,
    n_test_good: int,
    n_test_defect: int,
    size: int,
    seed: int,
    preview: Path | None,
) -> None:
    """One data set per name, each with its progress bar, then the contact sheet of them all."""
    with _clear_errors(), _progress() as task:
        paths = [
            build(
                n, out, n_train, n_test_good, n_test_defect, size, seed, task(n, n_train + n_test_good + n_test_defect)
            )
            for n in names
        ]
        _finish(paths, out, preview)


@app.command()
def synth(
    out: OutDir,
    products: Annotated[str, typer.Option("--products", help="Comma-separated product names.")] = ",".join(PRODUCTS),
    n_train: Annotated[int, typer.Option("--n-train", min=1, help="Good training images per product.")] = 100,
    n_test_good: Annotated[int, typer.Option("--n-test-good", min=0, help="Good test images per product.")] = 30,
    n_test_defect: Annotated[
        int,
        typer.Option(
            "--n-test-defect", min=0, help="Defective test images per product (cycling through defect types)."
        ),
    ] = 40,
    size: Annotated[int, typer.Option("--size", min=64, help="Image size in pixels (square).")] = 256,
    seed: Seed = 0,
    preview: Preview = None,
) -> None:
    """Procedural product surfaces with defect masks."""
    _build_all(
        generate_product,
        _names(products, list(PRODUCTS), "product"),
        out,
        n_train,
        n_test_good,
        n_test_defect,
        size,
        seed,
        preview,
    )


@app.command()
def textures(
    out: OutDir,
    names: Annotated[str, typer.Option("--textures", help="Comma-separated photographs.")] = ",".join(TEXTURES),
    n_train: Annotated[int, typer.Option("--n-train", min=1, help="Training crops per texture.")] = 200,
    n_test_good: Annotated[int, typer.Option("--n-test-good", min=0, help="Good test crops per texture.")] = 40,
    n_test_defect: Annotated[
        int, typer.Option("--n-test-defect", min=0, help="Defective test crops per texture.")
    ] = 60,
    crop: Annotated[int, typer.Option("--crop", min=32, max=256, help="Crop size in pixels.")] = 128,
    seed: Seed = 0,
    preview: Preview = None,
) -> None:
    """Real texture photographs (scikit-image brick, grass, gravel) with injected defects."""
    _build_all(
        build_texture_benchmark,
        _names(names, list(TEXTURES), "texture"),
        out,
        n_train,
        n_test_good,
        n_test_defect,
        crop,
        seed,
        preview,
    )


@app.command()
def elpv(
    out: OutDir,
    n_train: Annotated[
        int | None, typer.Option("--n-train", min=1, help="Good training cells (default: all not held out).")
    ] = None,
    test_good_fraction: Annotated[
        float, typer.Option("--test-good-fraction", help="Good cells held out for test.")
    ] = 0.25,
    seed: Seed = 0,
    preview: Preview = None,
) -> None:
    """ELPV mono solar cells (pip install elpv-dataset); image labels only. Never commit the output."""
    from diffqc.data.elpv import build_elpv_benchmark

    with _clear_errors(), _progress() as task:
        path = build_elpv_benchmark(out, n_train, seed, test_good_fraction, progress=task("elpv", None))
        _finish([path], out, preview)
