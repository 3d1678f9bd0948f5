"""The op-amps' 1/f noise (circuits/flicker.py): its spectrum against e_n^2 f_c / f, asbuilt against
real ngspice fed the same sampled processes, a cell's stationary variance against the sum of the
filtered Lorentzians, and nothing changed with it off."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from physics import problem
from scipy import stats
from scipy.linalg import solve_continuous_lyapunov

from circuits.amp_input import CELLS
from circuits.design import Design, OpAmp
from circuits.flicker import KNOT, FlickerProcess, band_for, ripple
from circuits.realised import realise
from circuits.topologies import build
from spu import SPU
from spu.backends.asbuilt import transition
from spu.backends.flicker_drive import amp_count
from spu.core.errors import DesignError

AMP = OpAmp(noise_density=1e-3, flicker_corner=3e3)


def test_construction_is_one_over_f_to_its_ripple():
    """Deterministic: two components per decade sum to A/f within the Poisson ripple inside the band."""
    band = band_for(AMP, 10.0)
    lo, hi = band.edges_hz
    assert lo == pytest.approx(0.01) and hi >= 3e3 and len(band.rates) == 12
    f = np.geomspace(30 * lo, hi / 30, 2000)
    dev = np.abs(band.psd(f) * f / band.level - 1)
    # First-order formulas: 10 % room for their second-order terms.
    assert ripple() < 1e-3 and (dev < 1.1 * (ripple() + band.edge_deficit(f))).all()
    assert dev.max() > 0.5 * band.edge_deficit(f).max()  # the edges are what is left over
    assert band.left_out(10.0) < 0.12 * band.level  # what a run of 10 s misses below the band (module doc)
    assert band.interpolation_loss() < KNOT / 6 + 1e-12


def _welch(x: np.ndarray, seg: int, step: float):
    """One-sided Welch PSD with a Hann window and no overlap: each bin ~ S chi2(2 S)/(2 S) for S
    segments, and bins 3 apart are independent (the squared Hann window has no Fourier
    coefficient beyond +-2)."""
    S = x.shape[0] // seg
    w = np.hanning(seg + 1)[:-1]  # periodic Hann: exactly three Fourier coefficients
    X = np.fft.rfft(x[: S * seg].reshape(S, seg) * w, axis=1)
    P = 2 * step * (np.abs(X) ** 2).mean(axis=0) / (w * w).sum()
    return np.fft.rfftfreq(seg, step), P, S


def test_spectrum_matches_the_target_over_two_decades():
    """Sampled knots of one op-amp, Welch-averaged, against A/f from 3 to 300 Hz in six groups of
    independent bins: each group's mean ratio is chi2(2 S M)/(2 S M) distributed, widened by the
    construction's own deviation (ripple, aliasing of the knot sampling) and the window's bias."""
    band = dataclasses.replace(band_for(AMP, 10.0), step=2e-4)  # coarser knots: exact AR(1) anyway
    seg, S = 50_000, 64
    x = FlickerProcess(band, 1, seed=11).knots(seg * S)[:, 0]
    f, P, S = _welch(x, seg, band.step)
    target = band.level / np.where(f > 0, f, 1.0)
    edges = np.geomspace(3.0, 300.0, 7)
    groups = [np.flatnonzero((f >= a) & (f < b))[::3] for a, b in zip(edges[:-1], edges[1:])]
    alpha = 1e-4 / len(groups)
    tilted_out = False
    for idx in groups:
        dof = 2 * S * len(idx)
        ratio = (P[idx] / target[idx]).mean()
        # Expected value: the sampled spectrum (the coarse knots alias the fastest components: +0.3 %
        # at 3 Hz; the continuous sum is A/f to its ripple and edges, tested above) smoothed by the
        # window, whose relative bias on a 1/f spectrum is below 2 / k^2 at bin k.
        model = (band.sampled_psd(f[idx]) / target[idx]).mean()
        bias = 2.0 / idx[0] ** 2
        lo = model * (1 - bias) * stats.chi2.ppf(alpha / 2, dof) / dof
        hi = model * (1 + bias) * stats.chi2.ppf(1 - alpha / 2, dof) / dof
        assert lo < ratio < hi, f"{f[idx[0]]:.3g} Hz: PSD / target {ratio:.4f} outside [{lo:.4f}, {hi:.4f}]"
        # Power: against a 1/f^0.9 target of the same level at 30 Hz, some group falls outside.
        tilted = (P[idx] / (target[idx] * (f[idx] / 30.0) ** 0.1)).mean()
        tilted_out |= not lo < tilted < hi
    assert tilted_out


def _at_points(design, p, x0, t, times, seed, **opts):
    return SPU("asbuilt", topology="factored", design=design, **opts).run(p, t=t, x0=x0, times=times, seed=seed)


def test_asbuilt_matches_ngspice_with_the_same_flicker():
    """Same design, same seed, so the same sampled processes: the netlist's table voltages against
    asbuilt's exact affine-input steps, at ngspice's own time points (no read-out interpolation).
    Tolerance: 2x ngspice's transient error on the same circuit without flicker (against asbuilt,
    exact there up to the splitting), 2x the splitting's step error (step halving), and the
    trapezoidal rule's error at each knot's kink: h^2/8 times the kink of the capacitor's input,
    summed with the circuit's slowest decay per knot interval."""
    p = problem("factored", 6, seed=4)
    base = Design(tol_r=0.02, tol_c=0.02, opamp=OpAmp(gain=300.0), component_seed=1)
    design = base.with_(opamp=OpAmp(gain=300.0, noise_density=1e-4, flicker_corner=2e4))
    x0 = np.random.default_rng(2).normal(size=p.n)
    t, seed = 200.0, 5
    # Every op-amp carries its own source, in the asbuilt process's column order (cells first here).
    sources = build(p, "factored", design, t=t, seed=seed).record.flicker.amps
    sizes = realise(p, "factored", design).amp.sizes
    assert len(sources) == sum(sizes.values()) > p.n and sources[: p.n] == [f"cell{i}" for i in range(p.n)]
    ng = SPU("ngspice", topology="factored", design=design).run(p, t=t, x0=x0, seed=seed)
    tt, X = ng.extra["raw_times_tau"], ng.extra["raw_states"]
    pick = np.unique(np.searchsorted(tt, np.linspace(1.0, t, 40)).clip(max=len(tt) - 2))
    times = tt[pick]
    ab = _at_points(design, p, x0, t, times, seed)
    split = np.abs(ab.trajectory - _at_points(design, p, x0, t, times, seed, step=0.125).trajectory).max()
    ng0 = SPU("ngspice", topology="factored", design=base).run(p, t=t, x0=x0, seed=seed)
    tt0 = ng0.extra["raw_times_tau"]
    pick0 = np.unique(np.searchsorted(tt0, np.linspace(1.0, t, 40)).clip(max=len(tt0) - 2))
    ab0 = _at_points(base, p, x0, t, tt0[pick0], seed)
    ng_err = np.abs(ng0.extra["raw_states"][pick0] - ab0.trajectory).max()
    bound = 2 * ng_err + 2 * split + _kink_bound(p, design, t, seed)
    err = np.abs(X[pick] - ab.trajectory).max()
    assert err <= bound, f"|asbuilt - ngspice| {err:.3g} > bound {bound:.3g}"
    # Power: the flicker moves the state by far more than the tolerance.
    assert np.abs(X[pick] - _at_points(base, p, x0, t, times, seed).trajectory).max() > 10 * bound


def _kink_bound(p, design, t, seed):
    """Trapezoidal error from the kinks of the piecewise linear flicker input (module doc of
    spu/backends/flicker_drive.py): in capacitor coordinates the input (G - M F) e has a kink at
    every knot (G every op-amp's dx/ds per volt, F the cells' own amps' output following), a local
    error <= h^2/8 |kink| each, decaying at the slowest rate."""
    rs, prop = transition(p, "factored", design, 0.0)
    band = band_for(design.opamp, t * rs.tau_s)
    h = band.step / rs.tau_s
    h_ng = design.dt_max * design.tau / rs.tau_s  # ngspice's step cap, problem tau
    E = FlickerProcess(band, amp_count(rs), seed).knots(int(t / h) + 3)
    kinks = np.diff(E, 2, axis=0) / h  # change of de/ds at each knot
    M = (np.diag(rs.D) + rs.P @ rs.Q) / rs.w[:, None]
    G, Fc = _amp_matrix(rs)
    Bc = G - M @ Fc
    lam = np.linalg.eigvals(M).real.min()
    per_knot = h_ng**2 / 8 * np.abs(kinks @ Bc.T).max()
    return per_knot / -math.expm1(-lam * h)


def _amp_matrix(rs):
    """(G, Fc): dx/ds per volt at each op-amp (columns in FlickerProcess order, through the public
    map RealisedSystem.amp_input), and the output following of the cells' own amps (x0_gain /
    v_unit in their columns, 0 for the chain's)."""
    G, Fc = [], []
    for name, size in rs.amp.sizes.items():
        for k in range(size):
            G.append(rs.amp_input({name: np.eye(size)[k]}) / rs.w)
            Fc.append(np.eye(rs.n)[k] * rs.x0_gain / rs.v_unit if name == CELLS else np.zeros(rs.n))
    return np.array(G).T, np.array(Fc).T


def test_stationary_variance_of_a_cell_matches_the_filtered_lorentzians():
    """End states of independent asbuilt runs (flicker only, ideal factored circuit: exact steps)
    against theory: per OU component, the Lyapunov solution of (x, z) with z the component at every op-amp, dz = -g z + noise and
    dx = -M x + (G - g F) z + F noise (G the cells' input per volt at each amp, F = x0_gain / v_unit
    the cells' output following their own amp's input), summed. Tolerance: chi2 of the sample variance over R runs, widened by
    the variance that linear interpolation between knots misses (<= Band.interpolation_loss)."""
    p = problem("factored", 3, seed=8)
    design = Design(opamp=OpAmp(noise_density=1e-3, flicker_corner=2e4))
    t, R = 50.0, 600
    rs, prop = transition(p, "factored", design, 0.0)
    band = band_for(design.opamp, t * rs.tau_s)
    ends = np.array([_at_points(design, p, prop.mean, t, None, seed).x for seed in range(R)])
    var = _filtered_lorentzians(rs, band)
    sample = ends.var(axis=0, ddof=1)
    alpha = 1e-4 / rs.n
    lo = var * (1 - 2 * band.interpolation_loss()) * stats.chi2.ppf(alpha / 2, R - 1) / (R - 1)
    hi = var * stats.chi2.ppf(1 - alpha / 2, R - 1) / (R - 1)
    assert ((lo < sample) & (sample < hi)).all(), f"variance {sample} outside [{lo}, {hi}]"
    # Power: the cells' own amps alone (the chain's left out, as before every amp carried its
    # flicker) fall far short: the inverters and summers reach the cells with gains of up to ~6x.
    own = _filtered_lorentzians(rs, band, own=True)
    assert not ((own * lo / var < sample) & (sample < own * hi / var)).all()


def _filtered_lorentzians(rs, band, own=False):
    """Stationary variance of each cell: per OU component g, the Lyapunov solution of (x, z), z the
    component at every op-amp (own: at the cells' own amps only): dz = -g z + noise,
    dx = -M x + (G - g Fc) z + Fc noise."""
    M = (np.diag(rs.D) + rs.P @ rs.Q) / rs.w[:, None]
    G, Fc = _amp_matrix(rs)
    if own:
        G, Fc = G[:, : rs.n], Fc[:, : rs.n]  # the cells come first (Builder.amp_group order)
    n, k = G.shape
    var = np.zeros(n)
    for g in band.rates * rs.tau_s:  # per problem tau
        J = np.block([[-M, G - g * Fc], [np.zeros((k, n)), -g * np.eye(k)]])
        B = np.vstack([Fc, np.eye(k)]) * math.sqrt(2 * g * band.variance)
        var += np.diag(solve_continuous_lyapunov(J, -B @ B.T))[:n]
    return var


def test_flicker_off_changes_nothing():
    """No corner (e_n alone) or a band below the run: the same netlist bytes and the same asbuilt
    trajectory, bit for bit."""
    p = problem("factored", 5, seed=3)
    x0 = np.random.default_rng(0).normal(size=p.n)
    times = np.linspace(0.5, 5.0, 10)
    ref = Design(tol_r=0.02, component_seed=2)
    for amp in (OpAmp(noise_density=1e-6), OpAmp(noise_density=1e-6, flicker_corner=1e3)):
        d = ref.with_(opamp=amp)  # 1 kHz is below f_lo = 0.1 / 5 us: an offset per run, no band
        assert band_for(d.opamp, 5.0 * d.tau) is None
        assert (
            build(p, "factored", d, t=5.0, kappa0=0.1, seed=1).text()
            == build(p, "factored", ref, t=5.0, kappa0=0.1, seed=1).text()
        )
        a = _at_points(d, p, x0, 5.0, times, 4, kappa0=0.1)
        b = _at_points(ref, p, x0, 5.0, times, 4, kappa0=0.1)
        assert np.array_equal(a.trajectory, b.trajectory) and "flicker_hz" not in a.extra
    assert realise(p, "factored", ref).amp_cells.shape == (p.n,)


def test_oscillator_refuses_flicker():
    d = Design(opamp=AMP)
    with pytest.raises(DesignError, match="flicker_corner"):
        build(problem("dense", 2, seed=1), "oscillator", d)
