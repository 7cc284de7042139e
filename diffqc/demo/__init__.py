"""The end-to-end demo (``diffqc demo``, ``make run``): a synthetic production line through the pipeline."""

from diffqc.demo.command import demo

__all__ = ["demo"]
