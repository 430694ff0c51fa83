"""Where and how commands print: rich consoles for people, pydantic JSON for agents."""

from __future__ import annotations

import os
import sys
from contextvars import ContextVar
from typing import TYPE_CHECKING, Self

from rich.console import Console

if TYPE_CHECKING:  # pydantic is imported by the models, not needed to print them
    from pydantic import BaseModel

#: Set by every command from its ``--json`` flag; the error handler reads it.
JSON_MODE: ContextVar[bool] = ContextVar("JSON_MODE", default=False)


def _width() -> int | None:
    """Rich uses 80 columns when stdout is not a terminal; tables here need more."""
    if sys.stdout.isatty():
        return None
    try:
        return max(int(os.environ.get("COLUMNS", "")), 60)
    except ValueError:
        return 160


def console() -> Console:
    """A console on the current stdout (looked up per call, so test runners capture it)."""
    return Console(file=sys.stdout, width=_width(), soft_wrap=False, highlight=False)


def err_console() -> Console:
    return Console(file=sys.stderr, width=_width(), highlight=False)


def begin(json_output: bool) -> None:
    """Record the output mode of the running command."""
    JSON_MODE.set(json_output)


def emit_json(model: BaseModel) -> None:
    """Print ``model`` as JSON (its published schema validates it)."""
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")
    sys.stdout.flush()


def fmt_ns(ns: float) -> str:
    """Human time for an estimated duration in nanoseconds."""
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def fmt_count(n: int) -> str:
    return f"{n:,}"


STATUS_STYLE = {"ok": "green", "not-supported": "yellow", "partial": "red", "error": "red"}


class ProgressBar:
    """A rich progress bar on stderr for long runs; silent when stderr is not a terminal
    or JSON is requested. Use as a context manager; call :meth:`update` from a runner."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.enabled = enabled and sys.stderr.isatty() and not JSON_MODE.get()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self._task = self._progress.add_task(label, total=None)
        self.label = label

    def __enter__(self) -> Self:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def update(self, done: int, total: int, label: str) -> None:
        if self.enabled:
            self._progress.update(
                self._task, completed=done, total=total, description=f"{self.label}: {label[:50]}"
            )
