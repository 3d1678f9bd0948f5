"""The one syntax of value lists on the command line: ``0,0.001,0.01``, ``lin:1:40:8``,
``log:1e-4:1e-1:4``, named values such as ``ideal``, and several of these (as one comma-separated
string or as a list of them). Every sweep option that takes several values goes through
``parse_range``; its messages name the option and the item at fault."""

from __future__ import annotations

import math

import numpy as np

from .sweep_errors import EmptyRangeError, SweepOptionError


def round12(v: float) -> float:
    """12 significant digits: stable ids and manifests for lin/log grids (no 0.30000000000000004)."""
    return float(f"{v:.12g}")


def _pieces(spec) -> list:
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    pieces: list = []
    for it in items:
        if isinstance(it, str):
            pieces += [p.strip() for p in it.split(",") if p.strip()]
        else:
            pieces.append(it)
    return pieces


def _spaced(opt: str, p: str) -> list[float]:
    """The values of one ``lin:START:STOP:NUM`` or ``log:START:STOP:NUM`` item."""
    parts = p.split(":")
    if len(parts) != 4:
        raise SweepOptionError(f"{opt}: {p!r} must be lin:START:STOP:NUM or log:START:STOP:NUM")
    try:
        a, b, k = float(parts[1]), float(parts[2]), int(parts[3])
    except ValueError:
        raise SweepOptionError(f"{opt}: {p!r} must be lin:START:STOP:NUM with numbers (NUM an integer)") from None
    if not (math.isfinite(a) and math.isfinite(b)):
        raise SweepOptionError(f"{opt}: {p!r} needs finite START and STOP")
    if k < 1:
        raise EmptyRangeError(f"{opt}: {p!r} is empty (NUM must be >= 1)")
    if a > b:
        raise EmptyRangeError(f"{opt}: {p!r} is empty (START {a:g} > STOP {b:g})")
    if parts[0].lower() == "log":
        if a <= 0:
            raise SweepOptionError(f"{opt}: {p!r}: a log range needs START > 0")
        return list(np.geomspace(a, b, k)) if k > 1 else [a]
    return list(np.linspace(a, b, k)) if k > 1 else [a]


def count(spec) -> int:
    """How many values spec gives at most (before deduplication), without making them: a sweep's
    size is checked against its limit before a ``lin:1:40:1000000000`` allocates gigabytes. An item
    that parse_range would refuse counts 1 (parse_range then names it)."""
    total = 0
    for p in _pieces(spec):
        parts = p.split(":") if isinstance(p, str) else ()
        try:
            total += max(int(parts[3]), 1) if len(parts) == 4 and parts[0].lower() in ("lin", "log") else 1
        except ValueError:
            total += 1
    return total


def _value(opt: str, p, words: dict[str, float] | None) -> list[float]:
    if isinstance(p, str) and p.lower() in (words or {}):
        return [float(words[p.lower()])]
    if isinstance(p, str) and p.split(":")[0].lower() in ("lin", "log"):
        return _spaced(opt, p)
    try:
        return [float(p)]
    except (TypeError, ValueError):
        hint = f" or one of {', '.join(words)}" if words else ""
        raise SweepOptionError(f"{opt}: {p!r} is not a number{hint}") from None


def _check(opt: str, v: float, lo, hi, lo_open, hi_open, integer) -> None:
    if math.isnan(v):
        raise SweepOptionError(f"{opt}: NaN is not a value")
    if integer and not (math.isfinite(v) and v == int(v)):
        raise SweepOptionError(f"{opt}: {v:g} is not an integer")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise SweepOptionError(f"{opt}: {v:g} is out of range (must be {'>' if lo_open else '>='} {lo:g})")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise SweepOptionError(f"{opt}: {v:g} is out of range (must be {'<' if hi_open else '<='} {hi:g})")


def parse_range(
    name: str,
    spec,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open=False,
    hi_open=False,
    integer=False,
    words: dict[str, float] | None = None,
    sort: bool = True,
) -> list[float]:
    """Parse a range option into its values, sorted and deduplicated (sort=False: in the order
    given, repeats kept, for lists whose order numbers the runs).

    spec: a number, a list of numbers/strings, or a string of comma-separated items, each a number,
    a word from `words` (e.g. "ideal" -> inf), ``lin:START:STOP:NUM`` or ``log:START:STOP:NUM``.
    Bounds lo/hi (open or closed) are checked on every value; an empty result is an error."""
    opt = f"--{name.replace('_', '-')}"
    pieces = _pieces(spec)
    if not pieces:
        raise EmptyRangeError(f"{opt}: empty range (give values like 1,2,3 or lin:1:3:3 or log:1e-3:1e-1:3)")
    vals = [round12(v) for p in pieces for v in _value(opt, p, words)]
    out = sorted(set(vals)) if sort else vals
    for v in out:
        _check(opt, v, lo, hi, lo_open, hi_open, integer)
    return [int(v) for v in out] if integer else out
