"""Noise as a table that ngspice reads from a file: time points aligned to the hold, no breakpoints.

Why: a TRRANDOM source puts a breakpoint at every hold boundary, and after each breakpoint ngspice
cuts the step to a tenth and lets it grow by at most 2x per step, so each hold costs ~5-6 time points
(docs/BENCHMARKS.md). XSPICE's ``filesource`` code model instead interpolates a table linearly and
sets no breakpoints: with the step cap tmax at most the hold, ngspice takes ~1 time point per hold
(measured: 1.01 per hold on factored N = 100, m = 16, against 6.1 with TRRANDOM).

Physics of the linearly interpolated table: knot values v_k ~ N(0, 1) * sigma / sqrt(hold) at
t = k * hold. The hat functions of a linear interpolation sum to one on any uniform grid whose step
divides the hold, so the integrated current over a long time is hold * sum v_k exactly as for a held
value: the Wiener increment variance sigma^2 * hold per interval (low-frequency intensity sigma^2)
is the same as TRRANDOM's. The spectrum rolls off as sinc^4 instead of sinc^2 above 1/hold, which
(like holding) only matters for modes faster than 1/hold; the design's hold rule keeps it short.

The table is written by numpy from the run's seed (reproducible: same seed, same table; no ngspice
seed involved): column 0 the knot time k * hold in seconds (repr: exact), then round(1e4 * N(0,1))
per source as fixed-width integers (the model's amplscale = 1e-4 * sigma turns them into amperes;
quantising a unit normal at 1e-4 adds a relative variance of 1e-9). The integer digits are made by
arithmetic on whole arrays: ~25x faster than np.savetxt's per-row formatting.

Measured: knot times given as an index with the model's `timescale` = hold cost ~4.7 time points
per hold and many rejected steps (filesource then evidently mis-times the knots against ngspice's
steps), absolute times 1.01 per hold: hence seconds in column 0 and timescale = 1.
"""

from __future__ import annotations

import numpy as np

from spu.core.errors import DesignError

# filesource reads each line into a 512-byte buffer (measured, ngspice 39: a longer line is split
# and every later column shifts to garbage; lines of kB make it abort in realloc or segfault), so
# the sources are split into instances of at most COLUMNS nodes, each reading its own file
# noise<j>.txt, and every line is kept below LINE_MAX characters.
COLUMNS = 64
LINE_MAX = 500
SCALE = 1e-4  # table integer -> unit normal
_DIGITS = 5  # |round(1e4 * z)| <= 99999: unit normals clipped at +-9.9999
# Largest table (values) written for one run: beyond it the file would pass ~1 GB; the caller
# falls back to held (TRRANDOM) noise, which needs no table.
MAX_VALUES = 30_000_000


def knots(t_stop_s: float, hold_s: float) -> int:
    """Knots covering [0, t_stop] plus one beyond (the interpolation needs the right end)."""
    return int(np.ceil(t_stop_s / hold_s * (1 + 1e-12))) + 2


def table_values(n_sources: int, t_stop_s: float, hold_s: float) -> int:
    return n_sources * knots(t_stop_s, hold_s)


_LUT: np.ndarray | None = None  # row v: the digits of v, zero-padded to _DIGITS


def _ascii(q: np.ndarray) -> np.ndarray:
    """Each integer of q as ' ' + sign + _DIGITS digits (uint8 rows of fixed width)."""
    global _LUT
    if _LUT is None:
        v = np.arange(10**_DIGITS)
        _LUT = ((v[:, None] // 10 ** np.arange(_DIGITS - 1, -1, -1)) % 10 + ord("0")).astype(np.uint8)
    out = np.empty(q.shape + (_DIGITS + 2,), np.uint8)
    out[..., 0] = ord(" ")
    out[..., 1] = np.where(q < 0, ord("-"), ord("+"))
    out[..., 2:] = _LUT[np.abs(q)]
    return out


def file_name(j: int, stem: str = "noise") -> str:
    """The fixed name of table file j (in the ngspice run directory)."""
    return f"{stem}{j}.txt"


def chunks(n_sources: int) -> list[range]:
    """The source indices of each table instance."""
    return [range(a, min(a + COLUMNS, n_sources)) for a in range(0, n_sources, COLUMNS)]


def noise_files(n_sources: int, t_stop_s: float, hold_s: float, seed: int | None) -> dict[str, bytes]:
    """The table files of a run: one line per knot, its time, then one integer per source."""
    if not (isinstance(n_sources, int) and n_sources >= 1):
        raise DesignError(f"a noise table needs at least one source, got {n_sources!r}")
    if not (np.isfinite(t_stop_s) and t_stop_s > 0 and np.isfinite(hold_s) and hold_s > 0):
        raise DesignError(f"noise table times must be > 0, got t_stop={t_stop_s!r}, hold={hold_s!r}")
    k = knots(t_stop_s, hold_s)
    if k * n_sources > MAX_VALUES:
        raise DesignError(
            f"noise table of {k} knots x {n_sources} sources exceeds {MAX_VALUES} values; "
            "use held (TRRANDOM) noise for this run"
        )
    rng = np.random.default_rng(seed)
    z = np.clip(np.rint(rng.standard_normal((k, n_sources)) / SCALE), -(10**_DIGITS - 1), 10**_DIGITS - 1)
    return table_files(z.astype(np.int32), hold_s)


def table_files(codes: np.ndarray, hold_s: float, stem: str = "noise") -> dict[str, bytes]:
    """Table files for integer codes (knots x sources, |code| < 10**_DIGITS), knot k at k * hold_s:
    file `file_name(j, stem)` holds the sources of chunk j."""
    k = codes.shape[0]
    digits = _ascii(codes)
    times = [repr(j * hold_s) for j in range(k)]
    width = max(len(x) for x in times)
    col = np.frombuffer("".join(x.ljust(width) for x in times).encode("ascii"), np.uint8).reshape(k, width)
    if width + COLUMNS * (_DIGITS + 2) + 1 > LINE_MAX:
        raise DesignError(f"noise table lines would exceed {LINE_MAX} characters (time column {width})")
    newline = np.full((k, 1), ord("\n"), np.uint8)
    return {
        file_name(j, stem): np.concatenate([col, digits[:, c.start : c.stop].reshape(k, -1), newline], axis=1).tobytes()
        for j, c in enumerate(chunks(codes.shape[1]))
    }
