"""Data for diffqc: image I/O, the MVTec AD layout, and the benchmark builders.

- ``images``: read/write images and masks as float32 arrays, with errors naming the file;
- ``mvtec``: list and write samples in the MVTec AD folder layout;
- ``synth``: procedural product surfaces with exact defect masks;
- ``textures``: scikit-image texture photographs with injected defects;
- ``elpv``: the ELPV solar-cell benchmark (optional ``elpv-dataset`` package);
- ``preview``: a contact sheet of any of these.
"""

from diffqc.data.elpv import build_elpv_benchmark
from diffqc.data.images import ImageReadError, read_image, read_mask, write_image, write_mask
from diffqc.data.mvtec import DatasetError, Sample, has_masks, list_samples, sample_mask, write_sample
from diffqc.data.preview import contact_sheet
from diffqc.data.synth import PRODUCTS, generate_product
from diffqc.data.textures import TEXTURES, build_texture_benchmark

__all__ = [
    "PRODUCTS",
    "TEXTURES",
    "DatasetError",
    "ImageReadError",
    "Sample",
    "build_elpv_benchmark",
    "build_texture_benchmark",
    "contact_sheet",
    "generate_product",
    "has_masks",
    "list_samples",
    "read_image",
    "read_mask",
    "sample_mask",
    "write_image",
    "write_mask",
    "write_sample",
]
