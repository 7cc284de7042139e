"""Writing a folder atomically: data sets and detector artifacts are either whole or absent."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: Path, marker: str, refuse: Callable[[Path], Exception]) -> Iterator[Path]:
    """Yield a temporary sibling of ``target`` to fill; when the block ends without an error it is
    renamed onto ``target``, replacing what was there. A crash never leaves a half-written folder
    and a rebuild never keeps stale files. ``target`` is replaced only when it is empty or holds
    ``marker`` (a folder this code wrote); otherwise ``refuse(target)`` is raised."""
    if target.exists() and not (target / marker).is_file() and any(target.iterdir()):
        raise refuse(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        # mkdtemp makes the folder private (0700) and some writers (safetensors) write 0600: give
        # the result the usual permissions, so that another user (a Triton server) can read it.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)
        for f in tmp.iterdir():
            if f.is_file():
                f.chmod(0o666 & ~umask)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
