"""The SPU's backends, found by name: each lives in spu/backends/<name>.py, which defines its run()
and a ``BACKEND`` object (spu/backends/base.py). A module is imported on first use, so that
SPU("ou") loads neither the circuit layer nor ngspice.

To add a backend, write its module and its test, and add its name to NAMES."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ..core.errors import ThermospiceError
from .base import Backend

# Every backend, in the order the command line lists them.
NAMES = ("ngspice", "asbuilt", "ou", "euler", "direct", "langevin")


def get(name: str) -> Backend:
    """The backend called name; ThermospiceError naming the choices for any other name."""
    if name not in NAMES:
        raise ThermospiceError(f"unknown backend {name!r}; choose one of {', '.join(NAMES)}")
    return import_module(f"{__name__}.{name}").BACKEND


def names_where(question: Callable[[Backend], bool]) -> tuple[str, ...]:
    """The names of the backends for which question(backend) holds, in NAMES order (this imports
    every backend module: for messages and choice lists, not for a run)."""
    return tuple(name for name in NAMES if question(get(name)))


def either(names) -> str:
    """ "a", "a or b", "a, b or c": backend names as a message lists the ones that would do."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
