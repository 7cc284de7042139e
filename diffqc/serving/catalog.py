"""Which detector serves which product type, inside one Triton model version.

A version directory holds ``artifacts/<name>/`` detector artifacts. Each artifact serves the
product types it was trained for (a multi-product artifact serves several through its class
embedding); ``default`` names the product when the version serves exactly one.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from diffqc.core.errors import ArtifactError, ProductError
from diffqc.core.precision import Precision
from diffqc.detector.detector import DEFAULT_PRODUCT, Detector


class Served(NamedTuple):
    detector: Detector
    product: str  # the name the detector knows the product by


class ProductCatalog:
    def __init__(self, detectors: list[Detector]):
        self.by_product: dict[str, Detector] = {}
        for detector in detectors:
            for product in detector.product_names:
                if product in self.by_product:
                    raise ArtifactError(f"product type {product!r} is served by two artifacts in this version")
                self.by_product[product] = detector

    @classmethod
    def load(
        cls, version_dir: Path, device: str = "cpu", precision: Precision | str = Precision.fp32
    ) -> ProductCatalog:
        """Every artifact of ``version_dir``, computing on ``device`` (``Detector.to``)."""
        artifacts = sorted(p for p in (Path(version_dir) / "artifacts").glob("*") if p.is_dir())
        if not artifacts:
            raise ArtifactError(f"{version_dir}/artifacts holds no detector artifact (diffqc export stages one)")
        return cls([Detector.load(path).to(device, precision) for path in artifacts])

    @property
    def products(self) -> list[str]:
        return sorted(self.by_product)

    def resolve(self, product: str) -> Served:
        """The detector for ``product`` and the name it knows the product by."""
        if product == DEFAULT_PRODUCT and len(self.by_product) == 1:
            product = next(iter(self.by_product))
        if product not in self.by_product:
            raise ProductError(f"unknown product type {product!r}; this model serves {self.products}")
        return Served(self.by_product[product], product)
