"""The command line's logging: rich's handler, through the stderr console, made when the
first record passes the level. A run at the default level rarely logs, and then neither
rich nor the console is imported for it."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["setup_logging"]


def setup_logging(verbose: int, console: Callable[[], Console]) -> None:
    """ERROR and up by default, INFO with -vv, DEBUG with -vvv, on ``console()``."""
    level = {0: logging.ERROR, 1: logging.ERROR, 2: logging.INFO}.get(verbose, logging.DEBUG)
    handler = _OnFirstRecord(console)
    logging.basicConfig(level=level, handlers=[handler], format="%(name)s: %(message)s")


class _OnFirstRecord(logging.Handler):
    def __init__(self, console: Callable[[], Console]) -> None:
        super().__init__()
        self._console = console

    @functools.cached_property
    def _rich(self) -> logging.Handler:
        from rich.logging import RichHandler

        # Through rich's console, so log lines print above the live progress bars.
        handler = RichHandler(
            console=self._console(), show_path=False, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(self.formatter)
        return handler

    def emit(self, record: logging.LogRecord) -> None:
        self._rich.emit(record)
