"""The coupled-oscillator circuit against theory, with real ngspice.

* steady mean (noise off) = A^-1 b for mixed-sign SPD systems, dense / factored / GGN forms;
* the noiseless trajectory (positions AND velocities) = the exact second-order solution, within a
  bound on the trapezoidal rule's error;
* with noise: sample mean and covariance of positions and velocities = theory, within standard
  errors computed from the exact autocovariance of the sampled process (effective sample size);
* 8x8 inverse from the sample covariance: its error at K/16, K/4 and K samples lies in the
  chi-square band the theory predicts, so it falls like 1/sqrt(K) as expected;
* the capacitive (Melanson) realisation: node-voltage covariance = kappa (capacitance matrix)^-1;
* clear errors for impossible mappings and out-of-range components.

Noise in ngspice is held constant for design.noise_dt (TRRANDOM). The exact covariance of the held
process (DenseLangevin.held_noise_cov) differs from the white-noise law by O((omega*hold)^2); each
noisy test asserts that this bias is below a tenth of its statistical tolerance before comparing
with kappa A^-1.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from physics import problem, spd_spectrum
from scipy import stats

from circuits.design import Design
from circuits.oscillator import InductorRange, build_oscillator
from circuits.report import component_report
from circuits.topologies import build
from spu import SPU, DenseProblem, GGNProblem
from spu.backends.direct import solve as direct_solve
from spu.core.errors import DesignError, ProblemError
from spu.core.underdamped import ExactLangevin, OscillatorParams, expm_batch, lag_sums, mode_autocov, sampling_theory
from spu.ngspice.run import run_ngspice

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("THERMOSPICE_NGSPICE") or "ngspice") is None, reason="ngspice not installed"
)
ZMAX = 4.0  # per-statistic z bound: two-sided p ~ 6e-5, a few dozen statistics per file


def spectrum(n, seed, lo, hi):
    """Mixed-sign SPD matrix with spectrum exactly [lo, hi] (extremes attained)."""
    A = spd_spectrum(n, seed, lo, hi)
    assert (A < 0).any() and (A - np.diag(np.diag(A)) > 0).any()
    return A


def acov_sequence(system, interval, K):
    """Stationary Cov(z(s + j*interval), z(s)) for j < K of the full (q, v) state, by powers of Phi."""
    Phi, _ = system.transition(interval)
    S = system.stationary_cov()
    out = np.empty((K,) + S.shape)
    P = S
    for j in range(K):
        out[j] = P
        P = Phi @ P
        if j > 5 and np.abs(P).max() < 1e-13 * np.abs(S).max():
            out[j + 1 :] = 0.0
            break
    return out


def sample_cov_sd(acov, idx):
    """sd of each entry of the sample covariance (about the true mean) of K samples of the
    coordinates idx, from the autocovariance sequence (Isserlis; C(-h) = C(h)^T)."""
    K = acov.shape[0]
    C = acov[:, idx][:, :, idx]
    w = 2.0 * (K - np.arange(K))
    w[0] = K
    a = np.einsum("j,jii,jkk->ik", w, C, C)  # sum C_ii(h) C_kk(h) over +-h
    b = np.einsum("j,jik,jki->ik", w, C, C)  # sum C_ik(h) C_ki(h)  (C_ki(h) = C_ik(-h))
    return np.sqrt((a + b) / K**2)


def sample_mean_cov(acov, idx):
    K = acov.shape[0]
    C = acov[:, idx][:, :, idx]
    w = (K - np.arange(K)).astype(float)
    M = C[0] * K + np.einsum("j,jik->ik", w[1:], C[1:] + np.swapaxes(C[1:], 1, 2))
    return M / K**2


# --------------------------------------------------------------------------------- steady state


@pytest.mark.parametrize("kind, zeta", [("dense", 1.0), ("dense", 0.4), ("factored", 1.0), ("ggn", 0.7)])
def test_steady_mean_is_A_inverse_b(kind, zeta):
    p = problem(kind, 6, seed=5)
    lo, hi = p.eig_extremes()
    params = OscillatorParams(zeta=zeta)
    ex = ExactLangevin(p, params, 0.0)
    # Slowest envelope rate of the modes; (1 + r t) covers the polynomial factor at critical damping.
    r = min(zeta, 1.0) * np.sqrt(lo) if zeta <= 1 else np.sqrt(lo) * (zeta - np.sqrt(zeta**2 - 1))
    t = (np.log(1e9) + np.log(1 + np.log(1e9))) / r
    res = SPU("ngspice", topology="oscillator", oscillator=params).run(p, t=t)
    x_star = np.linalg.solve(p.matrix(), p.b)
    rel = np.linalg.norm(res.x - x_star) / np.linalg.norm(x_star)
    assert rel <= 1e-6, f"{kind} zeta={zeta}: relative error {rel:.3g}"
    assert np.abs(ex.q_eq - x_star).max() < 1e-10
    assert (p.matrix() < 0).any()  # mixed signs really
    rep = res.report
    assert rep["counts"]["inductors"] == p.n and rep["timing"]["zeta_max"] == pytest.approx(zeta)
    assert rep["quantisation"]["steady_state_rel_error"] < 1e-12


# ------------------------------------------------------------------------------------ trajectory


def test_noiseless_trajectory_matches_exact_second_order_solution():
    p = DenseProblem(spectrum(5, 3, 0.3, 1.0), np.random.default_rng(1).normal(size=5))
    params = OscillatorParams(zeta=0.2)  # underdamped: several visible oscillations
    design = Design(dt_max=0.01)
    rng = np.random.default_rng(2)
    x0, v0 = rng.normal(size=5), 0.5 * rng.normal(size=5)
    T = 25.0
    circ = build_oscillator(p, design, x0=x0, v0=v0, t=T, oscillator=params)
    raw = run_ngspice(circ.text()).raw
    s = raw["time"] / design.tau
    Q = np.stack([raw[f"v({x})"] for x in circ.state_nodes], axis=1) / design.v_unit
    V = circ.velocities(raw)
    times = np.linspace(0.5, T, 50)
    got = np.hstack(
        [
            np.stack([np.interp(times, s, Q[:, i]) for i in range(5)], 1),
            np.stack([np.interp(times, s, V[:, i]) for i in range(5)], 1),
        ]
    )
    system = circ.system()
    Qe, Ve = system.mean(times, x0, v0)
    want = np.hstack([Qe, Ve])
    # Trapezoidal rule, steps <= h: global error <= G * t * h^2 / 12 * max|z'''| plus linear-interpolation
    # error h^2 / 8 * max|z''|, G = max ||e^{F s}|| (the error propagates through the stable system),
    # doubled for ngspice's backward-Euler start step. z^(k) = F^k (z - z_eq).
    F, h = system.F, design.dt_max
    grid = np.linspace(0, T, 400)
    d0 = np.concatenate([x0, v0]) - system.z_eq
    E = np.array([expm_batch(F * g) for g in grid])
    D = E @ d0
    z2 = np.linalg.norm(D @ (F @ F).T, axis=1).max()
    z3 = np.linalg.norm(D @ (F @ F @ F).T, axis=1).max()
    G = max(np.linalg.norm(e, 2) for e in E)
    for k, tk in enumerate(times):
        bound = 2 * G * h**2 * (tk * z3 / 12 + z2 / 8)
        err = np.linalg.norm(got[k] - want[k])
        assert err <= bound, f"t={tk:.2f}: error {err:.3g} above the step-error bound {bound:.3g}"
    # It really oscillated: the positions overshoot the fixed point.
    assert np.abs(np.diff(np.sign(Qe[:, 0] - system.q_eq[0]))).sum() >= 4
    # The as-built system is the ideal one (ideal parts).
    np.testing.assert_allclose(system.F[5:, :5], -p.A, atol=1e-12)


# --------------------------------------------------------------------------------- noise: statistics


def test_noisy_sample_mean_and_covariance_match_theory():
    A = spectrum(3, 7, 0.3, 1.0)
    b = np.array([0.6, -1.0, 0.3])
    p = DenseProblem(A, b)
    kappa, T, burn, dt = 0.1, 1500.0, 30.0, 1.0
    params = OscillatorParams(zeta=0.5)
    design = Design(noise_dt=0.1, dt_max=0.1)
    circ = build_oscillator(p, design, x0=np.linalg.solve(A, b), kappa0=kappa, t=T, seed=21, oscillator=params)
    raw = run_ngspice(circ.text()).raw
    s = raw["time"] / design.tau
    times = np.arange(burn, T, dt)
    K = len(times)
    Q = np.stack([np.interp(times, s, raw[f"v({x})"]) for x in circ.state_nodes], 1) / design.v_unit
    V = np.stack([np.interp(times, s, c) for c in circ.velocities(raw).T], 1)
    Z = np.hstack([Q, V])
    system = circ.system()
    S = system.stationary_cov()
    acov = acov_sequence(system, dt, K)
    idx = np.arange(6)
    cov_sd = sample_cov_sd(acov, idx)
    mean_cov = sample_mean_cov(acov, idx)
    # The exact sampling theory for the positions agrees with this generic computation.
    th = sampling_theory(p, params, kappa, K, dt)
    np.testing.assert_allclose(cov_sd[:3, :3], th["cov_sd"], rtol=1e-6)
    np.testing.assert_allclose(mean_cov[:3, :3], th["mean_cov"], rtol=1e-6, atol=1e-15)
    # Held noise: its exact covariance is within a tenth of a standard error of the white-noise law.
    held = system.held_noise_cov(design.noise_dt)
    assert (np.abs(held - S) / cov_sd).max() < 0.1
    # Constants: q ~ N(A^-1 b, kappa A^-1), v ~ N(0, kappa/m I).
    np.testing.assert_allclose(S[:3, :3], kappa * np.linalg.inv(A), atol=1e-12)
    np.testing.assert_allclose(S[3:, 3:], kappa * np.eye(3), atol=1e-12)
    mu = np.concatenate([np.linalg.solve(A, b), np.zeros(3)])
    err = Z.mean(0) - mu
    chi2 = err @ np.linalg.solve(mean_cov, err)
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=6), f"sample mean off: chi2 = {chi2:.2f}"
    D = Z - mu
    C = D.T @ D / K
    z = (C - S) / cov_sd
    assert np.abs(z).max() < ZMAX, f"sample covariance z-scores\n{np.round(z, 2)}"
    # Power: a 20% wrong kappa would fail.
    assert np.abs((C - 1.2 * S) / cov_sd).max() > ZMAX
    # The data-driven ESS agrees with the theory's order of magnitude (it is an estimate).
    ess_th = th["ess_mode"]
    assert ess_th.min() > 100


def test_inverse_8x8_error_falls_with_samples_as_theory_predicts():
    """kappa^-1 * sample covariance of one run, at K/16, K/4, K samples. The squared Frobenius
    error is (asymptotically) a weighted sum of independent chi2_1 terms over mode pairs; the
    Satterthwaite chi2 fit of that sum gives the band each observed error must fall in."""
    n = 8
    A = spectrum(n, 4, 0.3, 1.0)
    p = DenseProblem(A, np.zeros(n))
    kappa, dt, burn, K = 0.1, 1.0, 25.0, 1600
    params = OscillatorParams(zeta=1.0)
    design = Design(noise_dt=0.1, dt_max=0.1)
    times = burn + dt * np.arange(K)
    res = SPU("ngspice", topology="oscillator", design=design, kappa0=kappa, seed=8, oscillator=params).run(
        p, t=float(times[-1]), times=times
    )
    X = res.trajectory
    Ainv = np.linalg.inv(A)
    # Held-noise bias vs the smallest statistical error (largest K).
    th_full = sampling_theory(p, params, kappa, K, dt)
    held = build_oscillator(p, design, kappa0=kappa, oscillator=params).system().held_noise_cov(design.noise_dt)[:n, :n]
    assert np.linalg.norm(held - kappa * Ainv) < 0.1 * np.sqrt(th_full["cov_err2"])
    errs, expected = [], []
    for k in (K // 16, K // 4, K):
        th = sampling_theory(p, params, kappa, k, dt)
        Xk = X[:k]
        Chat = Xk.T @ Xk / k  # about the known mean 0
        e2 = np.linalg.norm(Chat - kappa * Ainv) ** 2
        # Weights: 2 S_kk (diagonal mode entries) and 2 S_kl (k < l, counted twice in ||.||_F^2).
        c = mode_autocov(th["modes"], params, th["gamma"], kappa, np.arange(k) * dt)
        Skl = lag_sums(c, k)
        iu = np.triu_indices(n)
        wts = 2 * Skl[iu]
        mean, var = wts.sum(), 2 * (wts**2).sum()
        assert mean == pytest.approx(th["cov_err2"], rel=1e-10)
        dof = 2 * mean**2 / var
        lo, hi = mean / dof * stats.chi2.ppf([1e-4, 1 - 1e-4], dof)
        assert lo <= e2 <= hi, f"K={k}: squared error {e2:.3g} outside [{lo:.3g}, {hi:.3g}] (expected {mean:.3g})"
        errs.append(np.sqrt(e2) / np.linalg.norm(kappa * Ainv))
        expected.append(np.sqrt(mean) / np.linalg.norm(kappa * Ainv))
    # Falls with K: the expected errors scale as 1/sqrt(K) (4x samples -> half the error) and so do the observed.
    assert expected[0] / expected[1] == pytest.approx(2.0, rel=0.1)
    assert errs[0] > errs[1] > errs[2]
    assert errs[-1] < 0.2


# --------------------------------------------------------------------------------- capacitive coupling


def test_capacitive_coupling_node_voltages_have_inverse_capacitance_covariance():
    A = np.array([[1.0, -0.3, -0.2], [-0.3, 0.9, -0.4], [-0.2, -0.4, 1.1]])  # Stieltjes, diagonally dominant
    p = DenseProblem(A, np.zeros(3))
    kappa, T, burn, dt = 0.1, 1500.0, 30.0, 1.0
    params = OscillatorParams(coupling="capacitive", zeta=0.7)
    design = Design(noise_dt=0.1, dt_max=0.1)
    times = np.arange(burn, T, dt)
    res = SPU("ngspice", topology="oscillator", design=design, kappa0=kappa, seed=4, oscillator=params).run(
        p, t=T, times=times
    )
    X = res.trajectory
    K = len(times)
    th = sampling_theory(p, params, kappa, K, dt)
    circ = build_oscillator(p, design, kappa0=kappa, oscillator=params)
    system = circ.system()
    S = system.stationary_cov()[3:, 3:]
    np.testing.assert_allclose(S, kappa * np.linalg.inv(A), atol=1e-12)
    np.testing.assert_allclose(th["cov_true"], S, atol=1e-12)
    # Holding the noise for `hold` biases the covariance at second order, ~ (rate * hold)^2 / 12 with
    # rate = the fastest of omega and gamma/m; the heavy damping of the light modes (gamma/m up to
    # 4.4 here) makes it 1.4% at hold = 0.1 tau, a third of a standard error, and the report flags the
    # hold as too long. The exact law of the held process is the target; the held -> white limit is
    # tested in test_langevin.py.
    held = system.held_noise_cov(design.noise_dt)[3:, 3:]
    rel_bias = np.abs(held - S).max() / np.abs(S).max()
    rate = max((circ.gamma_eff / np.linalg.eigvalsh(A)[0]).max(), 1 / np.sqrt(np.linalg.eigvalsh(A)[0]))
    assert rel_bias < 1.5 * (rate * design.noise_dt) ** 2 / 12, rel_bias
    rep = res.report
    assert not rep["timing"]["noise_hold_ok"]
    C = X.T @ X / K
    z = (C - held) / th["cov_sd"]
    assert np.abs(z).max() < ZMAX, np.round(z, 2)
    assert np.abs(X.mean(0) / th["mean_sd"]).max() < ZMAX
    assert np.abs((C - 1.2 * S) / th["cov_sd"]).max() > ZMAX
    assert rep["counts"]["capacitors"] == 3 + 3 and rep["counts"]["op_amps"] == 0


# --------------------------------------------------------------------------------------------- errors


def test_impossible_mappings_are_clear_errors():
    A_mixed = np.array([[1.0, 0.3], [0.3, 1.0]])
    with pytest.raises(DesignError, match="negative capacitance"):
        build(DenseProblem(A_mixed, np.zeros(2)), "oscillator", oscillator=dict(coupling="capacitive"))
    A_weak = np.array([[1.0, -0.8, -0.5], [-0.8, 2.0, 0.0], [-0.5, 0.0, 1.0]])
    with pytest.raises(DesignError, match="diagonally dominant"):
        build(DenseProblem(A_weak, np.zeros(3)), "oscillator", oscillator=dict(coupling="capacitive"))
    with pytest.raises(ProblemError, match="cannot encode b"):
        build(DenseProblem(np.eye(2), np.ones(2)), "oscillator", oscillator=dict(coupling="capacitive"))
    # A GGN problem in the capacitive realisation: J^T H J has positive couplings here.
    rng = np.random.default_rng(0)
    g = GGNProblem(np.abs(rng.normal(size=(2, 3))), np.eye(2), 0.5, np.zeros(3))
    with pytest.raises(DesignError, match="negative capacitance"):
        build(g, "oscillator", oscillator=dict(coupling="capacitive"))
    with pytest.raises(DesignError, match="no options"):
        build(DenseProblem(np.eye(2), np.ones(2)), "dense", oscillator=dict(zeta=1.0))
    with pytest.raises(DesignError, match="unknown oscillator build option"):
        build(DenseProblem(np.eye(2), np.ones(2)), "oscillator", damping=2.0)


def test_components_out_of_range_are_clear_errors():
    p = DenseProblem(np.array([[1.0, -0.2], [-0.2, 0.5]]), np.array([1.0, 0.0]))
    with pytest.raises(DesignError, match="inductor range"):
        build(p, "oscillator", oscillator=dict(mass=1e4))  # L = 10 H > 1 H
    with pytest.raises(DesignError, match="inductor range"):
        build(p, "oscillator", oscillator=dict(mass=1.0), inductors=InductorRange(l_max=1e-4))
    with pytest.raises(DesignError, match="damping resistor"):
        build(p, "oscillator", oscillator=dict(gamma=1e-3))  # 1 ohm < r_min = 10 ohm
    with pytest.raises(DesignError, match="damping resistor"):
        build(DenseProblem(p.A, np.zeros(2)), "oscillator", oscillator=dict(gamma=1e-6, coupling="capacitive"))
    # A coupling needing R0/|a| = 1e12 ohm > r_max is left open (issue 10), an error only beyond the bound.
    tiny = DenseProblem(np.array([[1.0, 1e-9], [1e-9, 1.0]]), np.ones(2))
    assert build(tiny, "oscillator").record.arrays["negA"].opened == 2
    with pytest.raises(DesignError, match=r"left open .*R above r_max"):
        build(tiny, "oscillator", Design(open_error_max=1e-12))
    with pytest.raises(DesignError, match="l_min"):
        build(p, "oscillator", inductors=InductorRange(l_min=1.0, l_max=0.1))
    with pytest.raises(ProblemError, match="mass"):
        build(p, "oscillator", oscillator=dict(mass=-1.0))
    with pytest.raises(DesignError, match="v0 applies"):
        build(DenseProblem(p.A, np.zeros(2)), "oscillator", v0=np.ones(2), oscillator=dict(coupling="capacitive"))


def test_report_of_an_underdamped_solve():
    p = problem("dense", 4, seed=1)
    circ = build(p, "oscillator", t=30.0, oscillator=dict(zeta=0.2))
    rep = component_report(circ, p, 30.0, x_star=direct_solve(p, p.b))
    tm, vol = rep["timing"], rep["voltages"]
    assert tm["dynamics"].startswith("second order") and tm["zeta_max"] == pytest.approx(0.2)
    lo = p.eig_extremes()[0]
    assert tm["slowest_decay_rate_per_tau"] == pytest.approx(0.2 * np.sqrt(lo))  # underdamped: gamma / 2m
    assert rep["counts"]["op_amps"] == 3 * p.n and rep["counts"]["inductors"] == p.n
    # Underdamped from 0: the positions overshoot the fixed point; the report sees the transient peak.
    assert vol["transient_state_peak_v"] > np.abs(np.linalg.solve(p.matrix(), p.b)).max() * 1.05
    assert vol["inductor_peak_a"] > 0
    assert rep["power"]["energy_per_solve_j"] == pytest.approx(rep["power"]["total_w"] * 30.0 * 1e-6)


def test_noise_seed_reproducible_and_distinct():
    p = DenseProblem(np.array([[1.0, -0.3], [-0.3, 0.6]]), np.array([0.5, 0.2]))
    spu = SPU("ngspice", topology="oscillator", kappa0=0.1, design=Design(noise_dt=0.1, dt_max=0.1))
    a, b, c = (spu.run(p, t=10.0, seed=s).x for s in (11, 11, 12))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    quiet = SPU("ngspice", topology="oscillator").run(p, t=10.0).x
    assert np.abs(a - quiet).max() > 1e-3
