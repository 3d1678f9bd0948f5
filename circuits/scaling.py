"""Automatic scaling and open cells: how a problem's coefficients become the circuit's, decided once.

Scaling. The circuit realises (A/s) x = b/s, which has the same solution, with one scale s chosen
from the design before anything is built: the directly programmed coefficients (each topology
names its own: the entries of A for dense and the dense oscillator, diag(A) for ideal; lam for the
factored, crossbar and factored oscillator, whose U / J / H arrays autorange on their own; the
capacitive oscillator has none) must have their largest entry placeable
(R0*s/max|c| in [r_min, r_max]) and the DACs must reach b/s at full scale. s = 1 whenever it fits
(so circuits that needed no scaling are unchanged), else s = max|c| (largest entry at R0, where
the default ngspice step resolves the circuit's rates) clamped into the DACs' range. Where that
leaves direct coefficients open (R0*s/|c| > r_max) at an error above open_error_max, and a smaller
scale places them all (entries spanning up to r_max/r_min), the largest such scale is used, its
ngspice step cap shrunk with its faster rates (Scale.step). In time
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
from dataclasses import dataclass

import numpy as np

from spu.core.errors import DesignError
from spu.core.spectral import DenseSpectrum, LowRankSpectrum

from .design import Design


def scale_range(form, direct: tuple[str, np.ndarray], design: Design) -> tuple[float, float, str, str]:
    """(lo, hi, why_lo, why_hi): the scales s for which the largest direct coefficient and the
    DACs' full scale fit [r_min, r_max]. direct: (name, values) of the coefficients the topology
    programs directly (circuits/topologies: RCTopology.direct_coefficients)."""
    d = design
    name, big = direct[0], _largest(direct[1])
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


@dataclass(frozen=True)
class Scale:
    """The circuit's scale s and its time step: the circuit's dt_max is design.dt_max * step
    (circuit tau). advice: where direct coefficients are left open because no scale places them
    all, what widens the range enough (check_open's message ends with it)."""

    s: float = 1.0
    step: float = 1.0
    advice: str | None = None


def choose_scale(form, direct: tuple[str, np.ndarray], design: Design) -> Scale:
    """The scale of the circuit for `form` whose directly programmed coefficients are `direct`
    (s = 1 when it fits, or design.autoscale is off)."""
    if not design.autoscale:
        return Scale()
    lo, hi, why_lo, why_hi = scale_range(form, direct, design)
    if lo > hi:
        raise DesignError(
            f"no circuit scale fits: {why_lo} needs s >= {lo:.4g} but {why_hi} needs s <= {hi:.4g}; "
            f"widen [r_min, r_max] (ratio {design.r_max / design.r_min:.3g}) by {lo / hi:.3g}x or change v_fullscale"
        )
    if lo <= 1.0 <= hi:
        s = 1.0
    else:
        # Scaled: the largest direct coefficient at R0 (full scale, as Builder.scale programs the
        # arrays), clamped into [lo, hi]. The smallest fitting s would run faster, but it puts the
        # largest conductance at 1/r_min, i.e. circuit rates up to R0/r_min = 100 per tau, which the
        # default ngspice step dt_max = 0.01 tau no longer resolves (measured: 8e-6 from the direct
        # solve at the settling time, factored, lam = 200, against < 1e-6 with the entry at R0).
        # The finite-gain error does not depend on the choice (6.09e-7 relative at s = 7.8 and at
        # s = 783 with gain 1e9: residual and amplification move together).
        s = float(min(max(_largest(direct[1]), lo), hi))
    return _placing_all(form, direct, design, s, lo, hi, why_lo)


def _placing_all(form, direct, design: Design, s: float, lo: float, hi: float, why_lo: str) -> Scale:
    """s, unless it leaves direct coefficients open at an error above open_error_max while a
    smaller scale in [lo, hi] places them all: then the largest such scale (the entries spanning
    up to r_max/r_min fit, where s puts the largest at R0 and leaves only r_max/R0 of range).
    The preferred s stays wherever its open cells are within the bound, so those circuits do not
    change; the decision needs only the form, so a settling time computed before the build
    (circuits/oscillator.settle_time) sees the same scale."""
    name, values = direct
    g_min = design.R0 / design.r_max
    mag = np.abs(values[values != 0])
    if mag.size == 0 or mag.min() / s >= g_min:
        return Scale(s)
    small, big = float(mag.min()), float(mag.max())
    fit = small / g_min  # the smallest entry at r_max, nudged so that the builder's test agrees
    while small / fit < g_min:
        fit = math.nextafter(fit, 0.0)
    fit = min(fit, hi)
    if fit >= lo and design.R0 / (big / fit) >= design.r_min:
        if _direct_open_error(form, values, s, g_min) <= design.open_error_max:
            return Scale(s)
        # Circuit rates up to big/fit per circuit tau instead of big/s: the step shrinks with them,
        # so that ngspice resolves the circuit as it would at the preferred scale.
        return Scale(fit, step=min(1.0, fit / min(s, big)))
    # Nothing places them all: lowering r_min lowers lo, raising r_max raises the scale at which
    # the smallest entry is placed, each by the factor missing (1 % margin for the rounding).
    ratio = design.r_max / design.r_min
    f = lo * design.R0 / (small * design.r_max)
    advice = (
        f"{why_lo} needs s >= {lo:.4g} but min |{name}| = {small:.6g} needs s <= {small * design.r_max / design.R0:.4g} "
        f"(the entries span {big / small:.3g}, r_max/r_min = {ratio:.3g}): widen [r_min, r_max] to a ratio >= "
        f"{ratio * f:.3g}: lower r_min to {design.r_min / (1.01 * f):.3g} or raise r_max to {design.r_max * 1.01 * f:.3g} "
        "(or raise open_error_max)"
    )
    return Scale(s, advice=advice)


def _largest(values: np.ndarray) -> float:
    return float(np.abs(values).max()) if np.size(values) else 0.0


def _direct_open_error(form, values: np.ndarray, s: float, g_min: float) -> float:
    """The steady-state error of leaving open the direct coefficients below g_min at scale s. A
    matrix of them is the system's A; an open diagonal or lam cell leaves its cell without the
    conductance that holds it, which no bound accepts."""
    if values.ndim != 2:
        return math.inf
    A = np.where(np.abs(values / s) < g_min, 0.0, values)
    x_star = exact_solution(form)
    try:
        x = np.linalg.solve(A, form.b)
    except np.linalg.LinAlgError:
        return math.inf
    err = float(np.linalg.norm(x - x_star) / max(float(np.linalg.norm(x_star)), np.finfo(float).tiny))
    return err if math.isfinite(err) else math.inf


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


def check_open(record, err: float, design: Design, advice: str | None = None) -> None:
    """Record the open-cell error and raise if it exceeds design.open_error_max (one line).
    advice: what widens the range (Scale.advice) where the direct coefficients could not all be
    placed; otherwise the arrays left open are ones programmed at their own full scale, which
    only a larger r_max places."""
    record.open_error = err
    if err <= design.open_error_max:
        return
    worst = max((a for a in record.arrays.values() if a.opened), key=lambda a: a.open_max, default=None)
    where = (
        f"largest {worst.label}{worst.open_index} = {worst.open_max:.4g} (R above r_max)" if worst else "columns of U"
    )
    if advice is None:
        smallest = min((_smallest(a.coef) for a in record.arrays.values() if a.opened), default=math.inf)
        advice = (
            f"raise r_max to {1.01 * design.R0 / smallest:.3g} to place them or raise open_error_max"
            if math.isfinite(smallest)
            else "raise r_max or open_error_max"
        )
    raise DesignError(
        f"{record.open_count()} entries below the smallest programmable conductance (R0/r_max) are left open "
        f"(scale s = {record.scale:.4g}; {where}), changing the steady state by {err:.3g} relative, above "
        f"open_error_max = {design.open_error_max:g}; {advice}"
    )


def _smallest(coef: np.ndarray) -> float:
    mag = np.abs(coef[coef != 0])
    return float(mag.min()) if mag.size else math.inf


def check_quantised(record, as_built, design: Design) -> None:
    """Refuse a circuit whose quantisation (bits_r levels of each array's full scale) rounded
    entries to 0 and so left no unique steady state: the programmed system is singular, which
    otherwise surfaces only as a bare "Singular matrix" from whatever solves it next."""
    if not record.quant_zeroed:
        return
    if as_built.dense is None and np.all(as_built.diag > 0):
        # A low-rank realisation, diag + P Q: its diagonal (lam, one constant array, which
        # quantisation keeps exact) stays positive, so zeroed entries of the factors cannot leave
        # it without a steady state; skipping the O(N m^2) solve keeps a training step's build cheap.
        return
    try:
        with np.errstate(all="ignore"):
            ok = bool(np.all(np.isfinite(as_built.solve())))
    except np.linalg.LinAlgError:
        ok = False
    if not ok:
        bits = design.bits_r
        worst = max(record.quant_error, key=record.quant_error.get)
        raise DesignError(
            f"bits_r = {bits} quantises each array to {2**bits - 1} conductance step(s) of its full scale: "
            f"{record.quant_zeroed} nonzero entries round to 0 (error up to {record.quant_error[worst]:.3g} of full "
            f"scale in {worst}) and the programmed system is singular; raise bits_r"
        )
