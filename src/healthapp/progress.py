"""The command line's progress bar for the long commands (sync, seed-demo)."""

from __future__ import annotations

import sys
from typing import Any

import click


class ProgressBar:
    """A click progress bar, shown only on a terminal and once the total is known."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def start(self, total: int) -> None:
        """Show the bar for ``total`` steps (nothing when not on a terminal)."""
        if total and sys.stdout.isatty():
            self.bar = click.progressbar(length=total, label=self.label)
            self.bar.__enter__()

    def update(self, done: int) -> None:
        """Advance the bar by ``done`` steps."""
        if self.bar is not None:
            self.bar.update(done)

    def finish(self) -> None:
        """Close the bar (again: harmless)."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
