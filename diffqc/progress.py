"""Progress bars: rich is the one progress-bar library. They go to standard error, so standard
output keeps only the results (tables, paths, JSON).

    with progress_bar("calibrate pcb", total=len(images), enabled=progress) as bar:
        calibrate(..., bar.advance)
    for path in track(paths, "detect", unit="img"):
        ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
console = Console(stderr=True)


class Bar:
    """One bar: ``advance(n)`` moves it on, ``note(text)`` shows a status after it (e.g. the loss)."""

    def __init__(self, progress: Progress, task: TaskID):
        self._progress, self._task = progress, task
        self._state = next(t for t in progress.tasks if t.id == task)  # rich updates it in place

    @property
    def completed(self) -> float:
        return self._state.completed

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)

    def note(self, text: str) -> None:
        self._progress.update(self._task, note=text)


@contextmanager
def progress_bar(
    description: str, total: float | None = None, *, unit: str = "", enabled: bool = True, transient: bool = False
) -> Iterator[Bar]:
    """A bar of ``total`` steps (None: unknown) while the block runs. ``enabled=False`` shows nothing;
    ``transient`` removes the bar when the block ends."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if unit:
        columns.append(TextColumn(unit))
    columns += [TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}")]
    with Progress(*columns, console=console, transient=transient, disable=not enabled) as progress:
        yield Bar(progress, progress.add_task(description, total=total, note=""))


def track(
    items: Iterable[T],
    description: str,
    total: float | None = None,
    *,
    unit: str = "",
    enabled: bool = True,
    transient: bool = False,
) -> Iterator[T]:
    """Iterate ``items`` with a bar (``total``: default ``len(items)`` where it has one)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with progress_bar(description, total, unit=unit, enabled=enabled, transient=transient) as bar:
        for item in items:
            yield item
            bar.advance()
