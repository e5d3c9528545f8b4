"""Errors a user can act on, and the one place that turns them into a one-sentence exit.

Every job (`train.py`, `eval.py`, `bench.py`) wraps its `main` with :func:`cli_main`, so bad input, a missing
file or an unreachable hub ends the process with a single actionable line on stderr and exit status 2,
instead of a 40-line traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem with the user's input or environment that a message can explain (no traceback needed)."""


class DataError(UserError, ValueError):
    """A bad record in a data file; the message starts with ``path:line:``."""

    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")


class HubUnavailableError(UserError):
    """The Hugging Face hub could not serve a dataset or model (offline, gated, or missing)."""


def cli_main(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorate a job's ``main``: a :class:`UserError` prints ``error: <message>`` and exits with status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
