"""Numbers as ngspice text, for netlists (circuits/netlist.py) and the session's control channel
(spu/ngspice/session.py) alike: one check, so that nothing but a finite float's repr (no newline,
no SPICE scale suffix, no word) can reach ngspice through a number."""

from __future__ import annotations

import math

from .errors import DesignError


def spice_number(value, what: str) -> str:
    """repr(float(value)), or DesignError naming `what` for a bool, a non-number or inf/NaN."""
    if isinstance(value, bool):
        raise DesignError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DesignError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise DesignError(f"{what} must be finite, got {value!r}")
    return repr(v)
