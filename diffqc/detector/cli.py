"""``diffqc train | distill | onboard | evaluate | detect``: the detector from the command line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from diffqc.core.errors import DetectorError, ProductError
from diffqc.data.images import ImageLimits, ImageReadError, guard_decompression_bombs, read_image
from diffqc.data.mvtec import DatasetError
from diffqc.detector.config import DetectorConfig, load_overrides
from diffqc.extras import require_extra
from diffqc.progress import progress_bar, track
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import SettingsError, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()
err = Console(stderr=True)
USER_ERRORS = (DetectorError, ImageReadError, DatasetError, SettingsError)

Threads = Annotated[int | None, typer.Option(help="CPU threads for torch (default: all cores).")]


def _fail(problem: Exception | str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {problem}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _say(message: str) -> None:
    console.print(message, highlight=False)


@contextmanager
def _reported() -> Iterator[None]:
    """Bad input ends the command with one line naming the problem (exit 2), not a traceback."""
    try:
        yield
    except USER_ERRORS as exc:
        raise _fail(exc) from None


def _start(command: str, n: int | None) -> None:
    """Before a command runs: the detector extra (one clear line without it), then torch's threads."""
    require_extra("detector", f"diffqc {command}")
    import torch  # lazy: `diffqc --help` works without torch (the base install)

    if n is not None:
        if n < 1:
            raise typer.BadParameter("--threads must be >= 1")
        torch.set_num_threads(n)


def _load(model: Path):
    from diffqc.detector.detector import Detector

    return Detector.load(model)


def _data_product(detector, data: Path, product: str | None) -> str:
    """The product to evaluate ``data`` as: --product, else the data set's own product name,
    which must be one the model was trained for (a model for another product is refused)."""
    from diffqc.detector.fit import product_name

    if product is not None:
        return detector.resolve_product(product)
    name = product_name(data)
    if name in detector.product_names:
        return name
    raise ProductError(
        f"data set {data} is product {name!r}, but model was trained for {detector.product_names}; "
        f"pass --product {detector.product_names[0]} to use it on this data anyway"
    )


@app.command()
def train(
    data: Annotated[
        list[Path], typer.Option("--data", help="MVTec-layout folder of one product (repeat for several).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Artifact directory to write.")],
    minutes: Annotated[float | None, typer.Option(help="Training budget in minutes (default 10).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training budget in optimizer steps.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (crops, noise, holdout split).")] = 0,
    product: Annotated[
        list[str] | None,
        typer.Option("--product", help="Product name per --data (default: dataset.json's product or the folder name)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML/JSON file of config overrides, e.g. {recon: {steps: 5}}.")
    ] = None,
    threads: Threads = None,
) -> None:
    """Train a detector on the good images (train/good) of one or more products and calibrate it."""
    _start("train", threads)
    from diffqc.detector.fit import product_name, train_detector

    with _reported():
        if product and len(product) != len(data):
            raise DetectorError(f"--product given {len(product)} time(s) for {len(data)} --data folder(s)")
        names = product or [product_name(d) for d in data]
        if len(set(names)) != len(names):
            raise DetectorError(f"product names must differ: {names} (use --product)")
        cfg = DetectorConfig()
        if config is not None:
            cfg = cfg.with_overrides(load_overrides(config))
        detector = train_detector(
            dict(zip(names, data, strict=True)),
            cfg,
            steps=steps,
            minutes=minutes,
            seed=seed,
            log=_say,
        )
        path = detector.save(out)
    console.print(f"[green]saved[/green] {path}  (products {detector.product_names}, {_thresholds(detector)})")


@app.command()
def distill(
    model: Annotated[Path, typer.Option("--model", help="Teacher artifact (a multi-step DDIM detector).")],
    out: Annotated[Path, typer.Option("--out", help="Student artifact directory to write.")],
    minutes: Annotated[float | None, typer.Option(help="Distillation budget in minutes (default 5).")] = None,
    steps: Annotated[int | None, typer.Option(help="Distillation budget in optimizer steps.")] = None,
    intervals: Annotated[
        int, typer.Option(help="Teacher DDIM steps over [0, t*] the student is made consistent on.")
    ] = 5,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Training folder per --product (default: the folders recorded in the teacher)."),
    ] = None,
    product: Annotated[list[str] | None, typer.Option("--product", help="Product of each --data.")] = None,
    threads: Threads = None,
) -> None:
    """Distill a one-step consistency student from a trained detector and calibrate it."""
    _start("distill", threads)
    from diffqc.detector.distill import distill_detector

    with _reported():
        data = data or []
        if data and (not product or len(product) != len(data)):
            raise DetectorError("give one --product per --data folder")
        teacher = _load(model)
        student = distill_detector(
            teacher,
            dict(zip(product or [], data, strict=True)) or None,
            steps=steps,
            minutes=minutes,
            intervals=intervals,
            log=_say,
        )
        path = student.save(out)
    console.print(f"[green]saved[/green] {path}  (one-step student of {model}; {_thresholds(student)})")


def _thresholds(detector) -> str:
    return "thresholds " + ", ".join(f"{p}={detector.threshold(p):.3f}" for p in detector.product_names)


@app.command()
def onboard(
    base: Annotated[Path, typer.Option("--base", help="Base artifact (ideally multi-product) to fine-tune.")],
    data: Annotated[Path, typer.Option("--data", help="MVTec-layout folder of the new product (5-10 good images).")],
    out: Annotated[Path, typer.Option("--out", help="Artifact directory to write.")],
    product: Annotated[
        str | None, typer.Option(help="New product's name (default: dataset.json's product or the folder name).")
    ] = None,
    minutes: Annotated[float | None, typer.Option(help="Fine-tuning budget in minutes (default 3).")] = None,
    steps: Annotated[int | None, typer.Option(help="Fine-tuning budget in optimizer steps.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (crops, noise, holdout split).")] = 0,
    repo: Annotated[
        Path | None,
        typer.Option(help="Also stage the result into this Triton model repository as a new model version."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="With --repo: register the new version in this metadata database (the platform's "
            "DIFFQC_DATABASE_URL), active for the new product."
        ),
    ] = None,
    threads: Threads = None,
) -> None:
    """Onboard a new product type: fine-tune a base model on a few good images and calibrate it."""
    _start("onboard", threads)
    from diffqc.detector.onboard import onboard_detector

    with _reported():
        if database_url and repo is None:
            raise DetectorError("--database-url registers a staged model version: give --repo too")
        detector = onboard_detector(
            _load(base),
            data,
            product=product,
            steps=steps,
            minutes=minutes,
            seed=seed,
            log=_say,
        )
        path = detector.save(out)
    name = detector.product_names[0]
    console.print(f"[green]saved[/green] {path}  (product {name!r}, threshold {detector.threshold():.3f})")
    if repo is not None:
        try:
            _publish(path, repo, database_url)
        except (DetectorError, DependencyUnavailable) as exc:
            raise _fail(f"saved {path}, but publishing it failed: {exc}", code=1) from None


def _publish(artifact: Path, repo: Path, database_url: str | None) -> None:
    """Stage ``artifact`` into the Triton repository as a new version, and register it when asked."""
    from diffqc.serving.register import register_version
    from diffqc.serving.repository import stage_version
    from diffqc.store.engine import make_engine

    version_dir = stage_version(artifact, repo)
    console.print(f"staged as {version_dir}")
    if database_url:
        engine = make_engine(database_url)
        try:
            products = register_version(version_dir, engine)
        finally:
            engine.dispose()
        console.print(
            f"registered version {version_dir.name} for {sorted(products)}: in production for a product that had no "
            "model, else a candidate until `diffqc model promote`; `diffqc model sync` loads it into a Triton under "
            "explicit model control (docs/models.md)"
        )


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option("--data", help="MVTec-layout folder with test/ (and ground_truth/).")],
    model: Annotated[Path, typer.Option("--model", help="Artifact directory.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    product: Annotated[str | None, typer.Option(help="Product type of the data (default: the data set's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the number of DDIM steps k.")] = None,
    calibrate_f1: Annotated[
        bool, typer.Option("--calibrate-f1", help="Store the F1-max threshold from these labelled images in the model.")
    ] = False,
    threads: Threads = None,
) -> None:
    """Image AUROC, pixel AUROC, PRO, F1-max, recall at FPR 3%, FPR at recall 98% and latency."""
    _start("evaluate", threads)
    from diffqc.data.mvtec import list_samples
    from diffqc.detector.artifact import update_thresholds
    from diffqc.detector.evaluation import evaluate_detector, f1_threshold

    with _reported():
        detector = _load(model)
        prod = _data_product(detector, data, product)
        n = len(list_samples(data, "test"))
        with progress_bar(f"evaluate {prod}", n, unit="img") as bar:
            ev = evaluate_detector(detector, data, prod, steps=steps, progress=bar.advance)
    report = ev.report()
    table = Table(title=f"{prod} — {data}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in report.items():
        table.add_row(k, "n/a" if v is None else f"{v:.4f}" if k != "latency_ms_p50" else f"{v:.1f}")
    console.print(table)
    for note in ev.notes:
        console.print(f"note: {note}")
    labels = np.array([s.label for s in ev.samples])
    if calibrate_f1:
        if len(set(labels.tolist())) < 2:
            raise _fail(DetectorError(f"--calibrate-f1 needs good and defective test images in {data}"))
        f1, thr = f1_threshold(ev.scores, labels)
        cal = detector.products[prod].calibration
        # metrics.f1_max flags score >= threshold; verdicts flag score > threshold.
        cal.threshold, cal.method, cal.calibration_fpr = float(np.nextafter(thr, -np.inf)), "f1_max", None
        update_thresholds(model, prod, cal)
        console.print(f"threshold for {prod!r} set to {thr:.4f} (F1-max {f1:.3f} on {len(labels)} labelled images)")
    if json_out is not None:
        payload = {
            **report,
            "product": prod,
            "data": str(data),
            "model": str(model),
            "n_images": len(labels),
            "n_defective": int(labels.sum()),
            "notes": ev.notes,
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {json_out}")


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files to inspect.")],
    model: Annotated[Path, typer.Option("--model", help="Artifact directory.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for one JSON and one heatmap PNG per image.")],
    product: Annotated[str | None, typer.Option(help="Product type (required when the model has several).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the number of DDIM steps k.")] = None,
    threads: Threads = None,
) -> None:
    """Score images: verdict, score, threshold, component scores, defect regions and a heatmap overlay."""
    _start("detect", threads)
    from diffqc.core.regions import find_regions, overlay, save_png

    with _reported():
        # The ingestion limits (max pixels, memory budget), checked from each header before decoding.
        limits = ImageLimits.of(load_settings().ingestion)
        guard_decompression_bombs(limits)
        detector = _load(model)
        prod = detector.resolve_product(product)
        threshold = detector.threshold(prod)
        level = detector.products[prod].calibration.region_level
        out.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        defects = 0
        for path in track(images, "detect", unit="img"):
            img = read_image(path, limits)
            t0 = time.perf_counter()
            result = detector.predict(img.transpose(2, 0, 1)[None], prod, steps, names=[str(path)])
            ms = (time.perf_counter() - t0) * 1000
            amap, score = result.anomaly_map, result.score
            verdict = "defect" if score[0] > threshold else "good"
            defects += verdict == "defect"
            regions = find_regions(amap[0, 0], level)
            stem = path.stem
            while stem in used:  # same file name from different folders
                stem += "_"
            used.add(stem)
            heatmap = save_png(
                out / f"{stem}_heatmap.png", overlay(img, amap[0, 0], level, regions, verdict == "defect")
            )
            record = {
                "image": str(path),
                "product": prod,
                "score": float(score[0]),
                "threshold": threshold,
                "verdict": verdict,
                "components": result.component_dict(0),
                "regions": regions,
                "region_level": level,
                "heatmap": str(heatmap),
                "model": str(model),
                "steps": steps or detector.cfg.recon.steps,
                "latency_ms": round(ms, 1),
            }
            (out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"{len(images)} image(s): {defects} defect(s), {len(images) - defects} good → {out}")
