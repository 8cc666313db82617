"""Progress bars for the long steps of the lab (k-fold evaluation, embedding a table, distilling the
static token table), on stderr through ``rich``.

A command that wants them opens :func:`progress_scope`; the steps inside ask :func:`step` for a bar
and get None outside a scope (a library call, a test, the gateway stays silent) or when the step is
too small to be worth one. All bars of a scope share one live display (rich allows one at a time),
each step a row that goes away when the step ends.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

__all__ = ["progress_scope", "step", "Step"]

_ACTIVE: ContextVar[Any] = ContextVar("thrifty_progress", default=None)  # a rich Progress while a scope is open


class Step:
    """One row of the live display: ``advance(n)``, then ``close()`` (or use it as a context manager)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.remove_task(self._task)

    def __enter__(self) -> "Step":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def progress_scope(enabled: bool = True) -> Iterator[None]:
    """Show the bars of the steps run inside (nested scopes share the outer display)."""
    if not enabled or _ACTIVE.get() is not None:
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    progress.start()
    token = _ACTIVE.set(progress)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        progress.stop()


def step(description: str, total: int | None, *, min_total: int = 0) -> Step | None:
    """A bar for a step of ``total`` units inside a :func:`progress_scope` (None: of unknown length,
    a pulsing bar and the time so far); None outside a scope, or when ``total < min_total`` (too
    small to show)."""
    progress = _ACTIVE.get()
    if progress is None or (total is not None and total < min_total):
        return None
    return Step(progress, progress.add_task(description, total=total))
