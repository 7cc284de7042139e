"""The ELPV solar-cell benchmark: real electroluminescence images with real defects.

``elpv-dataset`` (PyPI, the ``bench`` extra; data licensed CC BY-NC-SA 4.0) ships 2,624
300x300 grayscale cells with a defect probability (0, 1/3, 2/3, 1) and a type (mono/poly).
The benchmark uses mono cells only: train on good cells (p = 0), test on held-out good cells
and on cells with p = 1.0. Labels are per image: there are no masks. The data is never
committed: it is written to a folder the caller chooses.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from diffqc.data.mvtec import DatasetError, building

INSTALL_HINT = "pip install elpv-dataset  (or: pip install -e '.[bench]')"


class ElpvNotInstalledError(ImportError):
    """The optional ``elpv-dataset`` package is missing."""


def labels_file() -> Path:
    """The package's labels.csv (its images sit beside it)."""
    try:
        import elpv_dataset  # optional and 91 MB: imported only when the benchmark is built
    except ImportError as exc:
        raise ElpvNotInstalledError(f"the ELPV benchmark needs the elpv-dataset package: {INSTALL_HINT}") from exc
    path = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    if not path.is_file():
        raise DatasetError(f"elpv-dataset is installed but {path} is missing; reinstall it: {INSTALL_HINT}")
    return path


def read_labels(path: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """(image paths, defect probabilities, types) as the package's own loader reads them."""
    data = np.genfromtxt(path, dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"])
    files = [path.parent / f for f in np.char.decode(data["path"])]
    return files, data["probability"], np.char.decode(data["type"])


def build_elpv_benchmark(
    root: str | Path,
    n_train: int | None = None,
    seed: int = 0,
    test_good_fraction: float = 0.25,
    n_test_defect: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``root/elpv`` in the MVTec AD layout (``test/defect`` for p = 1.0, no masks).

    A seeded shuffle holds out ``test_good_fraction`` of the good mono cells for testing; the
    rest (or a random ``n_train`` of them) is the training set. ``n_test_defect`` keeps a random
    subset of the defective cells (all by default). File names keep the source cell names.
    """
    files, prob, kind = read_labels(labels_file())
    mono = kind == "mono"
    good = np.flatnonzero(mono & (prob == 0.0))
    bad = np.flatnonzero(mono & (prob == 1.0))
    if not 0 < test_good_fraction < 1:
        raise ValueError(f"test_good_fraction must be in (0, 1), got {test_good_fraction}")
    rng = np.random.default_rng(seed)
    good = rng.permutation(good)
    n_hold = max(1, round(test_good_fraction * good.size))
    test_good, train = np.sort(good[:n_hold]), good[n_hold:]
    if n_train is not None:
        if not 1 <= n_train <= train.size:
            raise ValueError(f"n_train must be between 1 and {train.size} (good mono cells not held out)")
        train = train[:n_train]
    train = np.sort(train)
    if n_test_defect is not None:
        if not 1 <= n_test_defect <= bad.size:
            raise ValueError(f"n_test_defect must be between 1 and {bad.size}")
        bad = np.sort(rng.permutation(bad)[:n_test_defect])

    manifest = {
        "generator": "diffqc.data.elpv",
        "source": "elpv-dataset (PyPI)",
        "license": "CC BY-NC-SA 4.0",
        "note": "never commit this data",
        "cell_type": "mono",
        "seed": seed,
        "n_train": int(train.size),
        "n_test_good": int(test_good.size),
        "n_test_defect": int(bad.size),
        "defect_rule": "probability == 1.0",
        "masks": False,
    }
    tick = progress or (lambda _n: None)
    with building(Path(root) / "elpv", manifest) as out:
        for split, folder, indices in (("train", "good", train), ("test", "good", test_good), ("test", "defect", bad)):
            dest = out / split / folder
            dest.mkdir(parents=True, exist_ok=True)
            for i in indices:
                # The source PNGs are already 8-bit grayscale: copy the bytes, no re-encoding.
                shutil.copyfile(files[i], dest / files[i].name)
                tick(1)
    return Path(root) / "elpv"
