"""Prefect's console logging, made to fit a CLI: user-fixable errors are one line, not a traceback."""
from __future__ import annotations

import logging

from prefect.logging.configuration import setup_logging

from datagen.errors import DatagenError


def _user_error_markers() -> set[str]:
    todo, names = [DatagenError], set()
    while todo:
        cls = todo.pop()
        names.update((cls.__name__ + ":", cls.__name__ + "("))
        todo.extend(cls.__subclasses__())
    return names


class HideUserErrors(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for errors the user can fix, the CLI's
    one-line message says it all. The full record still reaches Prefect's API (and UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DatagenError):
            return False
        if record.levelno >= logging.ERROR:
            msg = record.getMessage()
            return not any(marker in msg for marker in _user_error_markers())
        return True


def quiet_user_errors() -> None:
    """Set up Prefect's logging now (it would do so lazily at the first run) and filter its console."""
    setup_logging()
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, HideUserErrors) for f in handler.filters):
            handler.addFilter(HideUserErrors())
