"""Progress bars of the long stages: drawn on a terminal only, and gone when the stage is done."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import Progress


@contextlib.contextmanager
def progress_bar(label: str, total: int, console: Console | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar of ``total`` steps on ``console`` (default: stderr); yields ``advance(steps)``."""
    with Progress(console=console or Console(stderr=True), transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda steps: progress.advance(task, steps)


@contextlib.contextmanager
def generation_progress(
    generators: list, label: str, total: int, console: Console | None = None
) -> Iterator[None]:
    """A progress bar advanced by the ``generators`` (their ``on_progress``: prompts done per batch)."""
    with progress_bar(label, total, console) as advance:
        for generator in generators:
            generator.on_progress = advance
        try:
            yield
        finally:
            for generator in generators:
                generator.on_progress = None
