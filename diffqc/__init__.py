"""diffqc: visual quality inspection with diffusion reconstruction, trained on good parts only."""

__version__ = "0.1.0"
