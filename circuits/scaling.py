"""Automatic scaling and open cells: how a problem's coefficients become the circuit's, decided once.

Scaling. The circuit realises (A/s) x = b/s, which has the same solution, with one scale s chosen
from the design before anything is built: the directly programmed coefficients (each topology
names its own: the entries of A for dense and the dense oscillator, diag(A) for ideal; lam for the
factored, crossbar and factored oscillator, whose U / J / H arrays autorange on their own; the
capacitive oscillator has none) must have their largest entry placeable
(R0*s/max|c| in [r_min, r_max]) and the DACs must reach b/s at full scale. s = 1 whenever it fits
(so circuits that needed no scaling are unchanged), else s = max|c| (largest entry at R0, where
the default ngspice step resolves the circuit's rates) clamped into the DACs' range. In time
s means: one tau of the problem is s tau of the circuit, so the times a user gives (t, noise_dt)
are in problem tau and are multiplied by s for ngspice, and rates read from the circuit are
multiplied by s (dt_max, a numerical step, stays in circuit tau, where the scale has brought the
rates near 1). The programmable noise is kappa0/s so that the stationary covariance stays
kappa0*A^-1; Johnson noise is what the physics gives and is reported times s (problem units).

Open cells. An entry whose resistor R0/|c| would exceed r_max is left open (no resistor), as an
unprogrammed cell of a real array is an open switch (circuits/builder.Builder.array). The error
that causes is measured on the as-built system with tolerances and quantisation off, and is an
error only above design.open_error_max.
"""

from __future__ import annotations

import math

import numpy as np

from spu.core.errors import DesignError
from spu.core.spectral import DenseSpectrum, LowRankSpectrum

from .design import Design


def scale_range(form, direct: tuple[str, float], design: Design) -> tuple[float, float, str, str]:
    """(lo, hi, why_lo, why_hi): the scales s for which the largest direct coefficient and the
    DACs' full scale fit [r_min, r_max]. direct: (name, largest magnitude) of the coefficients the
    topology programs directly (circuits/topologies: RCTopology.direct_coefficients)."""
    d = design
    name, big = direct
    lo, hi = big * d.r_min / d.R0, big * d.r_max / d.R0
    why_lo = why_hi = f"max |{name}| = {big:.6g}"
    bmax = float(np.abs(form.b).max())
    if bmax > 0:
        # The DAC input resistor R0*v_fs*s/(max|b|*v_unit) must fit as well.
        k = bmax * d.v_unit / (d.R0 * d.v_fullscale)
        if k * d.r_min > lo:
            lo, why_lo = k * d.r_min, f"the DACs for max |b| = {bmax:.6g}"
        if k * d.r_max < hi:
            hi, why_hi = k * d.r_max, f"the DACs for max |b| = {bmax:.6g}"
    return lo, hi, why_lo, why_hi


def choose_scale(form, direct: tuple[str, float], design: Design) -> float:
    """The scale s of the circuit for `form` whose directly programmed coefficients are `direct`
    (1 when it fits, or design.autoscale is off)."""
    if not design.autoscale:
        return 1.0
    lo, hi, why_lo, why_hi = scale_range(form, direct, design)
    if lo > hi:
        raise DesignError(
            f"no circuit scale fits: {why_lo} needs s >= {lo:.4g} but {why_hi} needs s <= {hi:.4g}; "
            f"widen [r_min, r_max] (ratio {design.r_max / design.r_min:.3g}) by {lo / hi:.3g}x or change v_fullscale"
        )
    if lo <= 1.0 <= hi:
        return 1.0
    # Scaled: the largest direct coefficient at R0 (full scale, as Builder.scale programs the
    # arrays), clamped into [lo, hi]. The smallest fitting s would run faster, but it puts the
    # largest conductance at 1/r_min, i.e. circuit rates up to R0/r_min = 100 per tau, which the
    # default ngspice step dt_max = 0.01 tau no longer resolves (measured: 8e-6 from the direct
    # solve at the settling time, factored, lam = 200, against < 1e-6 with the entry at R0).
    # The finite-gain error does not depend on the choice (6.09e-7 relative at s = 7.8 and at
    # s = 783 with gain 1e9: residual and amplification move together).
    return float(min(max(direct[1], lo), hi))


def scaled(form, s: float):
    """The problem the circuit realises: A/s, b/s (U/sqrt(s) or H/s for the factored forms)."""
    if s == 1.0:
        return form
    return form.scaled(s)


def exact_solution(form) -> np.ndarray:
    """A^-1 b from the symmetric decomposition (spu.core.spectral), for the open-cell error."""
    f = form.factored()
    if f is None:
        sp = DenseSpectrum(form.A)
        return sp.apply(form.b, 1.0 / sp.eigs)
    sp = LowRankSpectrum(f.U, f.lam)
    lam = sp.lam
    return sp.apply(form.b, 1.0 / lam, -sp.s / (lam * (lam + sp.s)))


def negligible_columns(U: np.ndarray, full_scale: float, design: Design) -> np.ndarray:
    """Columns of U every entry of which would be an open cell in arrays programmed as U/full_scale."""
    if full_scale == 0:
        return np.ones(U.shape[1], bool)
    return np.all(np.abs(U) / full_scale < design.R0 / design.r_max, axis=0)


def open_error(as_built_nominal, x_star: np.ndarray) -> float:
    """Relative steady-state error of a system whose only defect is its open cells."""
    denom = max(float(np.linalg.norm(x_star)), np.finfo(float).tiny)
    try:
        with np.errstate(all="ignore"):
            x = as_built_nominal.solve()
    except np.linalg.LinAlgError:
        return math.inf
    err = float(np.linalg.norm(x - x_star) / denom)
    return err if math.isfinite(err) else math.inf


def check_open(record, err: float, design: Design) -> None:
    """Record the open-cell error and raise if it exceeds design.open_error_max (one line)."""
    record.open_error = err
    if err <= design.open_error_max:
        return
    worst = max((a for a in record.arrays.values() if a.opened), key=lambda a: a.open_max, default=None)
    span = max((a.span() for a in record.arrays.values()), default=math.inf)
    where = (
        f"largest {worst.label}{worst.open_index} = {worst.open_max:.4g} (R above r_max)" if worst else "columns of U"
    )
    raise DesignError(
        f"{record.open_count()} entries below the smallest programmable conductance (R0/r_max) are left open "
        f"(scale s = {record.scale:.4g}; {where}), changing the steady state by {err:.3g} relative, above "
        f"open_error_max = {design.open_error_max:g}; the entries span {span:.3g} but r_max/r_min = "
        f"{design.r_max / design.r_min:.3g}: widen [r_min, r_max] to a ratio >= {span:.3g} or raise the bound"
    )
