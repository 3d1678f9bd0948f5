"""Timing model of one SPU call in the TNGD loop (paper, "Timing model").

One call = send the data over the link, program the resistor arrays, load b through the DACs,
let the analog dynamics run for t*tau, read the N outputs through the ADCs, send them back.
The stages are added serially, which is conservative: real hardware would overlap the link
transfer with resistor programming.

Defaults and where they come from:

* tau = 1 us: paper, tau = RC = 1 kOhm * 1 nF.
* bits = 16, link_bps = 50e9: paper (16-bit values over a 50 Gb/s link).
* resistor counts: paper, b*dz*(b*dz + 2N) resistors for the GGN crossbar (see resistor_count).
* dac_settle_s = 100 ns, adc_sample_s = 100 ns: OUR ASSUMPTION, typical of 16-bit converters
  at ~10 MS/s; the paper does not give converter speeds. One converter per cell by default
  (parallel_dacs / parallel_adcs = None), so these cost one settle / one sample per call.
* resistor_program_s = 10 ns per write, program_parallel = 256 writes at once: OUR ASSUMPTION
  (a digitally switched resistor bank latches a 16-bit code like a register; 256 row drivers).
  With these the link, not programming, bounds the device side, matching the paper's claim that
  the digital J_f / H_L computation dominates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .core.errors import DesignError


@dataclass(frozen=True)
class TimingModel:
    # s, RC time constant (paper): 1 kOhm * 1 nF written as that product, the default circuit's
    # R0 * C (1 us plus one ulp), so that a device without a circuit times its runs bit for bit alike.
    tau: float = 1e3 * 1e-9
    bits: int = 16  # bits per transferred value (paper)
    link_bps: float = 50e9  # host <-> SPU link, bit/s (paper)
    dac_settle_s: float = 100e-9  # per DAC conversion (assumption)
    adc_sample_s: float = 100e-9  # per ADC conversion (assumption)
    resistor_program_s: float = 10e-9  # per resistor write (assumption)
    program_parallel: int = 256  # resistor writes in flight at once (assumption)
    parallel_dacs: int | None = None  # None: one DAC per cell
    parallel_adcs: int | None = None  # None: one ADC per cell

    def device_time(self, n: int, n_resistors: int, t: float) -> dict:
        """Seconds per stage of one SPU call with n cells, n_resistors to program, analog time t (tau).

        Returns {"transfer", "program", "dac", "analog", "adc", "total"}. Transfer counts b and the
        resistor values in, and the n results out, each `bits` wide.
        """
        if n < 1 or n_resistors < 0 or t < 0:
            raise DesignError(f"need n >= 1, n_resistors >= 0, t >= 0; got {n}, {n_resistors}, {t}")
        values = n + n_resistors + n
        out = {
            "transfer": values * self.bits / self.link_bps,
            "program": math.ceil(n_resistors / self.program_parallel) * self.resistor_program_s,
            "dac": math.ceil(n / (self.parallel_dacs or n)) * self.dac_settle_s,
            "analog": t * self.tau,
            "adc": math.ceil(n / (self.parallel_adcs or n)) * self.adc_sample_s,
        }
        out["total"] = sum(out.values())
        return out


def _dense(n, m, dz, block_diag):
    return n * n


def _factored(n, m, dz, block_diag):
    return 2 * n * m


def _crossbar(n, m, dz, block_diag):
    if block_diag:
        if dz is None:
            raise DesignError("block_diag=True needs dz")
        return m * dz + 2 * n * m
    return m * (m + 2 * n)


# The array layouts that store A, each with its count (n, m, dz, block_diag) -> resistors. The
# topologies name theirs (circuits/topologies: Topology.layout); "ggn" is the crossbar's paper name.
_LAYOUTS = {"dense": _dense, "factored": _factored, "ggn": _crossbar, "crossbar": _crossbar}


def resistor_count(
    kind: str, n: int, m: int | None = None, dz: int | None = None, b: int | None = None, *, block_diag: bool = False
) -> int:
    """Resistors needed to store A for a problem of size n (m = b*dz auxiliary outputs).

    * "dense": n*n, an upper bound (a symmetric array could share mirrored entries).
    * "factored": 2*n*m, the U and U^T arrays of A = lam I + U U^T.
    * "ggn" / "crossbar": J_f (m x n), J_f^T (n x m) and H_L (m x m): m*(m + 2n), which is the
      paper's b*dz*(b*dz + 2N). With block_diag=True only H_L's b blocks of dz x dz are stored:
      m*dz + 2*n*m (needs dz).
    m may be omitted when b and dz are given; if all three are given they must agree.
    """
    if b is not None and dz is not None:
        if m is not None and m != b * dz:
            raise DesignError(f"m={m} disagrees with b*dz={b * dz}")
        m = b * dz
    count = _LAYOUTS.get(kind)
    if m is None and count is not _dense:  # every layout but the dense one is sized by m
        raise DesignError(f"resistor_count({kind!r}) needs m, or b and dz")
    if count is None:
        raise DesignError(f"unknown kind {kind!r}; expected dense, factored, ggn or crossbar")
    return count(n, m, dz, block_diag)


def _crossbar_m(problem) -> int | None:
    ggn = problem.ggn()
    return None if ggn is None else ggn.m


def _factored_m(problem) -> int | None:
    return problem.factored().m if problem.low_rank else None


# The layouts that need the problem's factors, richest first, with the m they take from it (None:
# the problem has no such factors).
_FACTOR_LAYOUTS = {"crossbar": _crossbar_m, "factored": _factored_m}


def programmed_resistors(problem, layout: str | None = None) -> int:
    """Resistors programmed per call for `problem` stored in `layout` (a resistor_count kind; None:
    the richest layout the problem's form fills). A layout whose factors the problem lacks counts
    as the dense n x n array."""
    for kind in _FACTOR_LAYOUTS if layout is None else (layout,):
        factors_m = _FACTOR_LAYOUTS.get(kind)
        m = None if factors_m is None else factors_m(problem)
        if m is not None:
            return resistor_count(kind, problem.n, m)
    return resistor_count("dense", problem.n)
