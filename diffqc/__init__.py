"""diffqc: visual quality inspection with diffusion reconstruction, trained on good parts only."""

import os

__version__ = "0.1.0"

# Before torch loads its OpenMP runtime (which reads this once): idle OpenMP threads sleep instead
# of spinning. On CPUs shared by Triton, the services and the tools, spinning threads starve each
# other: one frame through the local pipeline took 1-3 s instead of 0.25-0.35 s. Set it to ACTIVE
# for a process that owns its cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
