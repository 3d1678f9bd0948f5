"""The circuit against theory, with real ngspice: steady state, transient, noise, Johnson noise."""

from __future__ import annotations

import numpy as np
import pytest
from physics import exact_mean, problem, problem_for, sampled_mean_cov_sigma, trapezoid_bound
from scipy import stats

from circuits.design import BOLTZMANN, Design
from spu import SPU, DenseProblem

TOPOLOGIES = ["ideal", "dense", "factored", "crossbar"]


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("n", [2, 9, 32])
def test_steady_state_matches_direct_solve(topology, n):
    p = problem_for(topology, n, seed=n)
    lam_min = p.eig_extremes()[0]
    t = np.log(1e9) / lam_min  # slowest mode decayed to 1e-9
    res = SPU("ngspice", topology=topology).run(p, t=t)
    x_star = np.linalg.solve(p.matrix(), p.b)
    rel = np.linalg.norm(res.x - x_star) / np.linalg.norm(x_star)
    assert rel <= 1e-6, f"{topology} n={n}: relative error {rel:.3g}"
    # The mixed-sign claim is real: the test matrix has negative couplings.
    assert (p.matrix() < 0).any()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_transient_matches_matrix_exponential(topology):
    p = problem_for(topology, 6, seed=11)
    A = p.matrix()
    x0 = np.random.default_rng(5).normal(size=p.n) * 2
    design = Design(dt_max=0.01)
    times = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    res = SPU("ngspice", topology=topology, design=design).run(p, t=4.0, x0=x0, times=times)
    for k, tk in enumerate(times):
        want = exact_mean(A, p.b, x0, tk)
        err = np.linalg.norm(res.trajectory[k] - want)
        bound = trapezoid_bound(A, x0, p.b, tk, design.dt_max)
        assert err <= bound, f"{topology} t={tk}: error {err:.3g} above the step-error bound {bound:.3g}"
    # The run really moved: the start is far from the end.
    assert np.linalg.norm(res.trajectory[-1] - x0) > 1.0


def test_noise_statistics_match_kappa_A_inverse():
    A = np.array([[1.0, -0.4], [-0.4, 0.8]])
    b = np.array([0.5, -1.0])
    p = DenseProblem(A, b)
    kappa, T, burn, dt = 0.05, 1500.0, 20.0, 0.25
    # Hold time 0.05 tau against lambda_max ~1.3: bias ~(lambda h)^2/12 ~ 4e-4, far below the
    # statistical error.
    design = Design(noise_dt=0.05, dt_max=0.05)
    times = np.arange(burn, T, dt)
    res = SPU("ngspice", topology="dense", design=design, kappa0=kappa, seed=7).run(
        p, t=T, x0=np.linalg.solve(A, b), times=times
    )
    X = res.trajectory
    K = len(X)
    mean_cov, cov_sigma = sampled_mean_cov_sigma(A, kappa, dt, K)
    err = X.mean(0) - np.linalg.solve(A, b)
    chi2 = err @ np.linalg.solve(mean_cov, err)
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=2), f"sample mean off: chi2 = {chi2:.2f}"
    z = (np.cov(X.T) - kappa * np.linalg.inv(A)) / cov_sigma
    # Three distinct entries, each tested at ~1e-4 two-sided.
    assert np.abs(z).max() < 4.0, f"sample covariance z-scores {z}"
    # The tolerance is tight enough to matter: a 20% wrong kappa would fail it.
    z_wrong = (np.cov(X.T) - 1.2 * kappa * np.linalg.inv(A)) / cov_sigma
    assert np.abs(z_wrong).max() > 4.0


@pytest.mark.parametrize("topology", ["ideal", "dense"])
def test_johnson_noise_of_one_rc_cell_is_kT_over_C(topology):
    """One cell, A = [[1]], b = 0: a single resistor R0 across C (ideal: to ground; dense: the
    op-amp integrator's feedback resistor), so the voltage variance is kT/C."""
    temperature = 300.0
    design = Design(temperature=temperature, noise_dt=0.02, dt_max=0.02)
    p = DenseProblem(np.array([[1.0]]), np.array([0.0]))
    T, burn, dt = 1500.0, 10.0, 0.25
    res = SPU("ngspice", topology=topology, design=design, seed=3).run(p, t=T, times=np.arange(burn, T, dt))
    v = res.trajectory[:, 0] * design.v_unit
    var_theory = BOLTZMANN * temperature / design.C
    kappa_equiv = var_theory / design.v_unit**2
    _, sigma = sampled_mean_cov_sigma(np.array([[1.0]]), kappa_equiv, dt, len(v))
    z = (np.var(v, ddof=1) - var_theory) / (sigma[0, 0] * design.v_unit**2)
    assert abs(z) < 4.0, f"variance {np.var(v):.4g} V^2 vs kT/C {var_theory:.4g} V^2 (z = {z:.2f})"


def test_backends_agree_without_noise():
    for kind in ["dense", "factored", "ggn"]:
        p = problem(kind, 7, seed=3)
        A = p.matrix()
        x0 = np.linspace(-1, 1, p.n)
        t = 2.0
        ou = SPU("ou").run(p, t=t, x0=x0).x
        want = exact_mean(A, p.b, x0, t)
        assert np.allclose(ou, want, atol=1e-10)
        design = Design()
        ng = SPU("ngspice", design=design).run(p, t=t, x0=x0).x
        assert np.linalg.norm(ng - ou) <= trapezoid_bound(A, x0, p.b, t, design.dt_max)
        dt = 1e-3
        eu = SPU("euler", dt=dt).run(p, t=t, x0=x0).x
        lam_max = np.linalg.eigvalsh(A)[-1]
        # Euler's global error: <= t*dt/2*lam_max^2*|x0 - x*|.
        bound = t * dt / 2 * lam_max**2 * np.linalg.norm(x0 - np.linalg.solve(A, p.b))
        assert np.linalg.norm(eu - ou) <= bound
        assert np.allclose(SPU("ou").run(p, t=np.inf, x0=x0).x, SPU("direct").run(p, t=0).x, rtol=1e-10, atol=1e-12)


def test_ngspice_seed_reproducible_and_distinct():
    p = problem("dense", 3, seed=1)
    spu = SPU("ngspice", topology="dense", kappa0=0.1, design=Design(noise_dt=0.05, dt_max=0.05))
    a = spu.run(p, t=5.0, seed=11).x
    b = spu.run(p, t=5.0, seed=11).x
    c = spu.run(p, t=5.0, seed=12).x
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    # Noise is on: the noisy end differs from the noiseless one by far more than round-off.
    d = SPU("ngspice", topology="dense").run(p, t=5.0).x
    assert np.abs(a - d).max() > 1e-3


def test_spu_base_seed_gives_fresh_but_reproducible_noise():
    p = problem("factored", 6, seed=2)
    runs = [SPU("ou", kappa0=0.1, seed=5) for _ in range(2)]
    first = [r.run(p, t=1.0).x for r in runs]
    second = runs[0].run(p, t=1.0).x
    assert np.array_equal(first[0], first[1])  # same base seed, same sequence
    assert not np.allclose(first[0], second)  # next run of the sequence has fresh noise
