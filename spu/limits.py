"""Resource limits: estimate what a run needs before it allocates or starts ngspice, and refuse it
with one line that gives the estimate, the limit and the option that raises it.

    limits = Limits(memory=parse_size("8G"))
    limits.check_memory("--A (20000 x 20000)", 20000**2 * 8 * copies)   # LimitError if over
    limits.check_steps("ngspice", transient_steps(t_stop, t_max))

Three limits, each one command-line option (analysis/limit_args.py declares them):
  memory  bytes a command may allocate (--max-memory); default: half the memory the machine has
          available when the command starts (/proc/meminfo MemAvailable), so that a refusal
          comes before the kernel's out-of-memory killer or a numpy MemoryError traceback.
  steps   time steps of one simulated run (--max-steps): ngspice transient points, Euler or BAOAB
          steps. ngspice takes about 7 us per point on the smallest circuit (measured: 5e5 points
          of a 4-cell dense circuit in 3.6 s), so the default 1e8 is about the default 600 s
          --timeout at best; beyond it a run would only end in that timeout.
  points  points of one sweep grid (--max-points): each is at least one ngspice run.
The estimates are lower bounds of the work (ngspice may take more steps than t / step cap), so a
refusal is certain to be right; a run under the limits may still be slow.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from .core.errors import LimitError

DEFAULT_MEMORY_FRACTION = 0.5
DEFAULT_STEPS = 10**8
DEFAULT_POINTS = 10**5
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

__all__ = ["Limits", "LimitError", "parse_size", "format_size", "available_memory", "transient_steps"]


def available_memory() -> int | None:
    """Bytes the machine can give a new allocation now (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # not Linux: free physical pages (an underestimate: no page cache counted)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def parse_size(text: str) -> int:
    """Bytes of a size such as 8G, 512M, 1.5T or 1000000 (binary units; a trailing B or iB is allowed)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"a size must be a number of bytes with an optional K, M, G or T (e.g. 8G), got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not (math.isfinite(value) and value >= 1):
        raise ValueError(f"a size must be at least 1 byte, got {text!r}")
    return int(value)


def format_size(nbytes: float) -> str:
    for unit in ("T", "G", "M", "K"):
        if nbytes >= _UNITS[unit]:
            return f"{nbytes / _UNITS[unit]:.3g} {unit}B"
    return f"{nbytes:.0f} B"


def transient_steps(t_stop: float, t_max: float) -> float:
    """Fewest time points a transient to t_stop with step cap t_max takes (ngspice, Euler, BAOAB)."""
    return t_stop / t_max if t_max > 0 else math.inf


@dataclass(frozen=True)
class Limits:
    """The limits of one command. memory None: DEFAULT_MEMORY_FRACTION of the available memory,
    read when a check first needs it."""

    memory: int | None = None
    steps: float = DEFAULT_STEPS
    points: float = DEFAULT_POINTS

    def memory_limit(self) -> tuple[float, str]:
        """(bytes, how the limit was set) of the memory limit."""
        if self.memory is not None:
            return float(self.memory), "set by --max-memory; raise it to run this"
        free = available_memory()
        if free is None:
            return math.inf, "unknown available memory"
        return DEFAULT_MEMORY_FRACTION * free, (
            f"default: half of the {format_size(free)} available; raise it with --max-memory SIZE"
        )

    def check_memory(self, what: str, nbytes: float) -> None:
        limit, how = self.memory_limit()
        if nbytes > limit:
            raise LimitError(
                f"{what} needs about {format_size(nbytes)} of memory, more than the limit {format_size(limit)} ({how})"
            )

    def check_steps(self, what: str, steps: float) -> None:
        _check(f"{what} needs at least {steps:.3g} time steps", steps, self.steps, "--max-steps")

    def check_points(self, what: str, points: float) -> None:
        _check(f"{what} has {points:.3g} points", points, self.points, "--max-points")


def _check(claim: str, figure: float, limit: float, option: str) -> None:
    if figure > limit:
        raise LimitError(f"{claim}, more than the limit {limit:.3g} (raise it with {option} N)")
