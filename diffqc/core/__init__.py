"""The torch-free core the platform shares with the detector.

Everything a service needs to know about the detector's outputs lives here, so that no service
process imports torch, diffusers or timm: the score components (``components``), the process
component (``process``), tile geometry (``tiles``), the region rule and the heatmap overlay
(``regions``), the reader of a detector artifact's metadata and calibration (``artifact``),
the errors both sides raise (``errors``), one clock (``clock``), backoff with jitter
(``backoff``), atomic folders (``files``), the rendering of validation errors (``validation``)
and the precisions a GPU deployment may ask of the denoiser (``precision``). Beyond the standard
library it imports only numpy, scipy, Pillow, protobuf and pydantic.
"""
