"""Second-order (underdamped Langevin) numerics: exact propagator, BAOAB, sampling theory.

References are independent of the code under test: closed-form damped-oscillator solutions,
scipy's expm / Lyapunov solvers on the full 2N x 2N system, the AR(1) formulas, and
tests/physics.py's OU sampling errors (written for the RC cells). Statistical checks allow
NSIG = 5 standard deviations computed from theory for the seeded run, and each checks it would
see a plausible wrong answer.
"""

import numpy as np
import pytest
from cases import random_factored
from physics import sampled_mean_cov_sigma, spd_spectrum
from scipy import integrate, linalg

from spu import SPU, DenseProblem, FactoredProblem, GGNProblem
from spu.backends import langevin as lbackend
from spu.core.errors import ProblemError
from spu.core.underdamped import (
    DenseLangevin,
    ExactLangevin,
    OscillatorParams,
    dense_system,
    integrated_autocorr_time,
    lag_sums,
    mode_autocov,
    mode_transition,
    position_acf,
    sampling_theory,
)

NSIG = 5.0


def dense(n=6, seed=0, lo=0.2, hi=1.0):
    return DenseProblem(spd_spectrum(n, seed, lo, hi), np.random.default_rng(seed + 7).normal(size=n))


# ------------------------------------------------------------------------- the 2x2 mode algebra


def test_position_acf_closed_form_matches_expm_in_all_regimes():
    # under-, critically and over-damped, and a nearly critical one (b -> 0 branch)
    m = np.array([1.0, 1.0, 1.0, 2.0, 1.0])
    w = np.array([1.0, 0.25, 0.1, 0.5, 1.0])
    g = np.array([0.2, 1.0, 3.0, 2.0, 2.0 + 1e-9])
    lags = np.linspace(0, 30, 13)
    acf = position_acf(m, w, g, lags)
    for j, h in enumerate(lags):
        Phi, _ = mode_transition(m, w, g, float(h), 0.0)
        np.testing.assert_allclose(acf[:, j], Phi[:, 0, 0], atol=1e-12)


def test_mode_transition_covariance_short_and_long_steps():
    """Van Loan (short steps) and Sigma_inf - Phi Sigma_inf Phi^T (long) agree where they meet,
    and both match the integral int_0^h e^{Fs} Q e^{F^T s} ds by quadrature."""
    m, w, g, kappa = np.array([1.0]), np.array([0.7]), np.array([0.4]), 0.3
    F = np.array([[0, 1], [-0.7, -0.4]])
    Q = np.array([[0, 0], [0, 2 * kappa * 0.4]])
    for h in (1e-3, 0.3, 0.9, 1.1, 7.0):
        _, S = mode_transition(m, w, g, h, kappa)
        # Reference by quadrature: e^{Fs} from F's eigendecomposition (underdamped: distinct eigenvalues),
        # composite Simpson with 2000 panels (error ~ (h/2000)^4 h max|f^(4)| / 180 < 1e-10 relative).
        lam, V = np.linalg.eig(F)
        Vi = np.linalg.inv(V)
        s = np.linspace(0, h, 2001)
        E = np.real(np.einsum("ik,sk,kj->sij", V, np.exp(np.outer(s, lam)), Vi))
        ref = integrate.simpson(E @ Q @ np.swapaxes(E, 1, 2), x=s, axis=0)
        np.testing.assert_allclose(S[0], ref, rtol=1e-8, atol=1e-15)
    # Stationary limit
    _, S = mode_transition(m, w, g, np.inf, kappa)
    np.testing.assert_allclose(S[0], np.diag([kappa / 0.7, kappa / 1.0]))


# --------------------------------------------------------------- exact propagator vs 2N x 2N system


@pytest.mark.parametrize("coupling", ["resistive", "capacitive"])
@pytest.mark.parametrize("zeta", [0.25, 1.0, 3.0])
def test_exact_modal_matches_dense_2n_system(coupling, zeta):
    p0 = dense()
    p = p0 if coupling == "resistive" else DenseProblem(p0.A, np.zeros(p0.n))
    params = OscillatorParams(zeta=zeta, coupling=coupling, mass=1.5, stiffness=0.8)
    ex = ExactLangevin(p, params, 0.2)
    ds = dense_system(p, params, 0.2)
    rng = np.random.default_rng(3)
    q0, v0 = rng.normal(size=p.n), rng.normal(size=p.n)
    for h in (0.05, 1.3, 9.0):
        q, v = ExactLangevin(p, params, 0.0).step(q0, v0, h, None)
        Q, V = ds.mean([h], q0, v0)
        np.testing.assert_allclose(q, Q[0], atol=1e-12)
        np.testing.assert_allclose(v, V[0], atol=1e-12)
        # transition covariance: modal 2x2 blocks rotated back vs Van Loan on the full system
        Phi, S = mode_transition(ex.m, ex.w, ex.g, h, 0.2)
        Qm = ex.spec.Q
        n = p.n
        T = linalg.block_diag(Qm, Qm)
        Sm = np.zeros((2 * n, 2 * n))
        for k in range(n):
            Sm[np.ix_([k, n + k], [k, n + k])] = S[k]
        _, S_ref = ds.transition(h)
        np.testing.assert_allclose(T @ Sm @ T.T, S_ref, atol=1e-12)
    # The damping ratio of the slowest mode is the requested one.
    # (resistive: the slowest mode is the softest, the most damped; capacitive: the heaviest, the least damped)
    slowest = ex.zetas.max() if coupling == "resistive" else ex.zetas.min()
    assert slowest == pytest.approx(zeta)


def test_stationary_law_constants():
    """q ~ N(A^-1 b, kappa A^-1), v ~ N(0, kappa/m I), independent (resistive); capacitive: v ~ N(0, kappa A^-1)."""
    p = dense()
    kappa = 0.37
    S = dense_system(p, OscillatorParams(zeta=0.6, mass=2.0), kappa).stationary_cov()
    n = p.n
    np.testing.assert_allclose(S[:n, :n], kappa * np.linalg.inv(p.A), atol=1e-12)
    np.testing.assert_allclose(S[n:, n:], kappa / 2.0 * np.eye(n), atol=1e-12)
    np.testing.assert_allclose(S[:n, n:], 0, atol=1e-12)
    pc = DenseProblem(p.A, np.zeros(n))
    S = dense_system(pc, OscillatorParams(zeta=0.6, coupling="capacitive", stiffness=3.0), kappa).stationary_cov()
    np.testing.assert_allclose(S[n:, n:], kappa * np.linalg.inv(p.A), atol=1e-12)
    np.testing.assert_allclose(S[:n, :n], kappa / 3.0 * np.eye(n), atol=1e-12)


def test_one_dimensional_closed_form():
    """m q'' = -a (q - b/a) - g q' from q0, v0: the textbook underdamped solution."""
    a, b, g, m = 0.8, 0.4, 0.3, 1.0
    q0, v0 = 1.5, -0.7
    p = DenseProblem(np.array([[a]]), np.array([b]))
    res = SPU("langevin", gamma=g, mass=m, v0=[v0]).run(p, t=12.0, x0=[q0], times=np.linspace(0, 12, 25))
    al, wd = g / (2 * m), np.sqrt(a / m - (g / (2 * m)) ** 2)
    x = b / a
    s = res.times
    d0 = q0 - x
    want = x + np.exp(-al * s) * (d0 * np.cos(wd * s) + (v0 + al * d0) / wd * np.sin(wd * s))
    np.testing.assert_allclose(res.trajectory[:, 0], want, atol=1e-12)
    assert res.extra["zeta_min"] == pytest.approx(g / (2 * np.sqrt(a * m)))


def test_low_rank_path_never_forms_the_matrix_and_matches_dense(monkeypatch):
    pf = random_factored(40, 3, 0.3, seed=1)
    pd = DenseProblem(pf.matrix(), pf.b)
    x0 = np.linspace(-1, 1, pf.n)
    params = OscillatorParams(zeta=0.4)
    times = np.array([0.5, 3.0, 10.0])
    ref = SPU("langevin", oscillator=params).run(pd, t=10.0, x0=x0, times=times)

    def boom(self):
        raise AssertionError("the N x N matrix was formed")

    monkeypatch.setattr(FactoredProblem, "matrix", boom)
    monkeypatch.setattr(GGNProblem, "matrix", boom)
    lr = SPU("langevin", oscillator=params).run(pf, t=10.0, x0=x0, times=times)
    np.testing.assert_allclose(lr.trajectory, ref.trajectory, atol=1e-10)
    np.testing.assert_allclose(lr.extra["velocity"], ref.extra["velocity"], atol=1e-10)
    # t = inf: the exact stationary mean A^-1 b.
    x = SPU("langevin").run(pf, t=np.inf, x0=x0).x
    np.testing.assert_allclose(pf.matvec(x), pf.b, atol=1e-10)
    # The low-rank noise operators are the dense ones: compare L11(A), L21(A), L22(A) column by column.
    exd, exl = ExactLangevin(pd, params, 0.3), ExactLangevin(pf, params, 0.3)
    h = 0.7
    for ex in (exd, exl):
        ex._trans(h)
    Ld, Ll = exd._trans(h)[1], exl._trans(h)[1]
    E = np.eye(pf.n)
    for a, b in ((0, 0), (1, 0), (1, 1)):
        fd = np.interp(exd.spec.eigs, exd.spec.eigs, Ld[:, a, b])
        Md = exd.spec.matrix_function(fd)
        Ml = np.column_stack(
            [exl.spec.combine(E[:, [j]], exl.spec.project(E[:, [j]]), Ll[None, :, a, b]) for j in range(pf.n)]
        )
        np.testing.assert_allclose(Ml, Md, atol=1e-10)


def test_ggn_problem_runs_through_the_factored_path():
    rng = np.random.default_rng(0)
    J = rng.normal(size=(6, 12))
    H = np.diag(rng.uniform(0.1, 1, 6))
    p = GGNProblem(J, H, 0.5, rng.normal(size=12))
    x = SPU("langevin").run(p, t=np.inf).x
    np.testing.assert_allclose(x, np.linalg.solve(p.matrix(), p.b), rtol=1e-10)


def test_exact_noisy_samples_follow_the_stationary_law():
    """Independent t = inf draws (exact): sample mean / covariance within Wishart sigmas."""
    p = dense(n=4)
    kappa, K = 0.2, 2000
    spu = SPU("langevin", kappa0=kappa, seed=11, oscillator=dict(zeta=0.5))
    X = np.array([spu.run(p, t=np.inf).x for _ in range(K)])
    S = kappa * np.linalg.inv(p.A)
    mu = np.linalg.solve(p.A, p.b)
    D = X - mu
    C = D.T @ D / K
    d = np.diag(S)
    sig = np.sqrt((np.outer(d, d) + S**2) / K)
    assert np.abs((C - S) / sig).max() < NSIG
    assert np.abs(D.mean(0) / np.sqrt(d / K)).max() < NSIG
    assert np.abs((C - 1.2 * S) / sig).max() > NSIG  # power: a 20% wrong kappa is seen


# ------------------------------------------------------------------------------------------- BAOAB


def test_baoab_transient_converges_at_second_order():
    p = dense(n=5)
    x0 = np.ones(p.n)
    ref = SPU("langevin", oscillator=dict(zeta=0.3)).run(p, t=8.0, x0=x0).x
    errs = [
        np.linalg.norm(SPU("langevin", method="baoab", dt=h, oscillator=dict(zeta=0.3)).run(p, t=8.0, x0=x0).x - ref)
        for h in (0.1, 0.05, 0.025)
    ]
    r1, r2 = errs[0] / errs[1], errs[1] / errs[2]
    assert 3.5 < r1 < 4.5 and 3.5 < r2 < 4.5, errs


def _baoab_mode_chain(a, m, g, h, kappa):
    """Exact linear AR map (T, noise covariance) of one BAOAB step for the mode q'' m = -a q - g q'."""
    B = np.array([[1, 0], [-h / 2 * a / m, 1]])
    Ah = np.array([[1, h / 2], [0, 1]])
    c = np.exp(-g * h / m)
    O = np.array([[1, 0], [0, c]])
    T = B @ Ah @ O @ Ah @ B
    # noise enters at O: sqrt(kappa (1 - c^2)/m) z on v, then passes A B
    e = B @ Ah @ np.array([0, np.sqrt(kappa * (1 - c * c) / m)])
    return T, np.outer(e, e)


def test_baoab_samples_exact_configurational_law_at_a_large_step():
    """h = 1 (half the stability limit 2 sqrt(m/lambda_max) = 2): the positions still have
    covariance kappa A^-1 (exact for quadratic potentials); velocities are inflated by 1/(1 - h^2 a/4m).
    Tolerance: the exact autocovariance of the BAOAB chain per mode gives the sampling sd."""
    p = dense(n=3, lo=0.3)
    kappa, h, g, m = 0.1, 1.0, 0.8, 1.0
    K = 20000
    res = SPU("langevin", method="baoab", dt=h, kappa0=kappa, seed=5, oscillator=dict(gamma=g)).run(
        p, t=float(K + 30), x0=np.linalg.solve(p.A, p.b), times=30.0 + np.arange(K)
    )
    X = res.trajectory
    w, Q = np.linalg.eigh(p.A)
    Y = (X - np.linalg.solve(p.A, p.b)) @ Q  # mode coordinates
    c = np.zeros((3, K))
    var_theory = np.zeros(3)
    for k in range(3):
        T, N = _baoab_mode_chain(w[k], m, g, h, kappa)
        S = linalg.solve_discrete_lyapunov(T, N)
        var_theory[k] = S[0, 0]
        P = np.eye(2)
        for j in range(K):  # autocovariance of q at lag j
            c[k, j] = (P @ S)[0, 0]
            P = T @ P
            if abs(c[k, j]) < 1e-14 * S[0, 0] and j > 10:
                break
    np.testing.assert_allclose(var_theory, kappa / w, rtol=1e-12)  # the exactness claim itself
    Skk = np.diag(lag_sums(c, K))
    var_hat = (Y**2).mean(0)
    z = (var_hat - kappa / w) / np.sqrt(2 * Skk)
    assert np.abs(z).max() < NSIG, z
    assert np.abs((var_hat - 1.15 * kappa / w) / np.sqrt(2 * Skk)).max() > NSIG


def test_baoab_errors():
    p = dense(n=3)
    with pytest.raises(ProblemError, match="stability limit"):
        SPU("langevin", method="baoab", dt=5.0).run(p, t=500.0, x0=np.ones(3))
    with pytest.raises(ProblemError, match="capacitive"):
        SPU("langevin", method="baoab", coupling="capacitive").run(DenseProblem(p.A, np.zeros(3)), t=1.0)
    with pytest.raises(ProblemError, match="method"):
        SPU("langevin", method="rk4").run(p, t=1.0)
    with pytest.raises(ProblemError, match="t = inf"):
        SPU("langevin", method="baoab").run(p, t=np.inf)


# --------------------------------------------------------------------------- parameters and errors


@pytest.mark.parametrize(
    "kw, needle",
    [
        (dict(mass=0.0), "mass"),
        (dict(mass=np.nan), "mass"),
        (dict(gamma=-1.0), "gamma"),
        (dict(zeta=0.0), "zeta"),
        (dict(coupling="inductive"), "coupling"),
        (dict(stiffness=-2.0), "stiffness"),
    ],
)
def test_bad_oscillator_parameters(kw, needle):
    with pytest.raises(ProblemError, match=needle):
        SPU("langevin", **kw).run(dense(n=2), t=1.0)


def test_gamma_and_zeta_are_exclusive_and_override():
    with pytest.raises(ProblemError, match="not both"):
        OscillatorParams(gamma=1.0, zeta=1.0).check()
    p = OscillatorParams.make({"gamma": 1.0}, zeta=0.5)
    assert p.gamma is None and p.zeta == 0.5
    with pytest.raises(ProblemError, match="unknown oscillator option"):
        OscillatorParams.make({"damping": 1.0})


def test_capacitive_coupling_cannot_solve():
    p = dense(n=3)
    with pytest.raises(ProblemError, match="cannot solve A x = b"):
        SPU("langevin", coupling="capacitive").run(p, t=1.0)
    out = SPU("langevin", coupling="capacitive").run(DenseProblem(p.A, np.zeros(3)), t=5.0, x0=np.ones(3))
    assert out.extra["state"] == "velocity"


# --------------------------------------------------------------------------- sampling theory


def test_sampling_theory_rc_matches_the_ou_formulas_of_the_rc_tests():
    """Large K: the exact finite-K sums reduce to tests/physics.py's asymptotic OU formulas."""
    p = dense(n=4, lo=0.5)
    kappa, dt, K = 0.05, 0.25, 40000
    th = sampling_theory(p, None, kappa, K, dt)
    mean_cov, cov_sigma = sampled_mean_cov_sigma(p.A, kappa, dt, K)
    np.testing.assert_allclose(th["mean_cov"], mean_cov, rtol=2e-3, atol=1e-12)
    np.testing.assert_allclose(th["cov_sd"], cov_sigma, rtol=2e-3)


def test_ar1_mean_variance_and_iat():
    """An OU mode sampled at interval dt is AR(1) with rho = e^{-a dt}: finite-K variance of the mean
    (1/K^2)[K + 2 sum_j (K-j) rho^j] c0, and integrated autocorrelation time (1 + rho)/(1 - rho)."""
    a, dt, kappa, K = 0.5, 0.4, 1.0, 200
    rho = np.exp(-a * dt)
    j = np.arange(1, K)
    want = (K + 2 * np.sum((K - j) * rho**j)) / K**2 * kappa / a
    th = sampling_theory(DenseProblem(np.array([[a]]), np.array([0.0])), None, kappa, K, dt)
    assert th["mean_var_mode"][0] == pytest.approx(want, rel=1e-12)
    rng = np.random.default_rng(0)
    N = 400_000
    x = np.empty(N)
    x[0] = rng.normal()
    e = rng.normal(size=N) * np.sqrt(1 - rho**2)
    for i in range(1, N):
        x[i] = rho * x[i - 1] + e[i]
    tau = integrated_autocorr_time(x)[0]
    assert tau == pytest.approx((1 + rho) / (1 - rho), rel=0.05)
    assert integrated_autocorr_time(rng.normal(size=(20000, 2))) == pytest.approx([1, 1], abs=0.1)


def test_oscillator_sampling_theory_matches_brute_force_monte_carlo():
    """Exact sample-mean and sample-covariance spreads of K = 50 samples vs R = 4000 independent
    replicas, stepped together with the exact (Phi, Sigma) transition of the full 2N system."""
    p = dense(n=2, lo=0.3)
    kappa, K, dt, R = 0.1, 50, 0.7, 4000
    params = OscillatorParams(zeta=0.3)
    th = sampling_theory(p, params, kappa, K, dt)
    ds = dense_system(p, params, kappa)
    Phi, S = ds.transition(dt)
    Ls = np.linalg.cholesky(ds.stationary_cov())
    Lt = np.linalg.cholesky(S)
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(R, 4)) @ Ls.T  # stationary start (deviations from the mean)
    sums = np.zeros((R, 2))
    sq = np.zeros((R, 2, 2))
    for _ in range(K):
        q = Z[:, :2]
        sums += q
        sq += q[:, :, None] * q[:, None, :]
        Z = Z @ Phi.T + rng.normal(size=(R, 4)) @ Lt.T
    means, covs = sums / K, sq / K
    # An sd estimated from R replicas has relative sd ~ sqrt((2 + excess kurtosis) / 4R); the sample
    # covariance of K_eff ~ 30 correlated samples has excess kurtosis ~ 12 / K_eff < 1: use sqrt(3 / 4R).
    tol = NSIG * np.sqrt(3 / (4 * R))
    np.testing.assert_allclose(means.std(0), th["mean_sd"], rtol=tol)
    np.testing.assert_allclose(covs.reshape(R, 4).std(0).reshape(2, 2), th["cov_sd"], rtol=tol)
    # Power: the independent-sample formula (no autocorrelation) is far off.
    assert np.abs(means.std(0) / np.sqrt(np.diag(kappa * np.linalg.inv(p.A)) / K) - 1).max() > tol


def test_held_noise_bias_is_second_order_in_the_hold():
    """ngspice holds each noise value for `hold`: the exact chain's covariance tends to the white-noise
    one as hold -> 0, with an O(hold^2) error for the positions (the force is integrated twice)."""
    p = dense(n=3)
    ds = dense_system(p, OscillatorParams(zeta=0.5), 0.1)
    S = ds.stationary_cov()
    n = p.n
    errs = [np.abs(ds.held_noise_cov(h)[:n, :n] - S[:n, :n]).max() for h in (0.2, 0.1, 0.05)]
    assert 3.0 < errs[0] / errs[1] < 5.0 and 3.0 < errs[1] / errs[2] < 5.0, errs
    assert errs[-1] < 1e-3 * np.abs(S[:n, :n]).max()


def test_mode_autocov_capacitive_is_the_velocity_autocovariance():
    p = DenseProblem(np.array([[1.0, -0.3], [-0.3, 0.8]]), np.zeros(2))
    params = OscillatorParams(zeta=0.4, coupling="capacitive")
    ex = ExactLangevin(p, params, 0.2)
    c = mode_autocov(ex.spec.eigs, params, ex.gamma, 0.2, [0.0, 1.0, 2.5])
    ds = dense_system(p, params, 0.2)
    S = ds.stationary_cov()
    n = 2
    for j, h in enumerate([0.0, 1.0, 2.5]):
        Phi, _ = ds.transition(h)
        Cv = (Phi @ S)[n:, n:]  # Cov(v(s + h), v(s))
        want = ex.spec.Q.T @ Cv @ ex.spec.Q
        np.testing.assert_allclose(np.diag(want), c[:, j], atol=1e-12)


def test_dense_langevin_rejects_unstable_systems():
    with pytest.raises(ProblemError, match="not stable"):
        DenseLangevin(np.eye(2), -np.eye(2), np.eye(2), np.zeros(2))


def test_backend_contract_times_and_velocities():
    p = dense(n=3)
    times = np.array([0.0, 0.5, 0.5, 2.0])
    res = lbackend.run(p, t=2.0, x0=np.ones(3), kappa0=0.0, seed=None, times=times, options={"zeta": 0.5})
    assert res.trajectory.shape == (4, 3) and res.extra["velocities"].shape == (4, 3)
    np.testing.assert_allclose(res.trajectory[0], 1.0)
    np.testing.assert_allclose(res.trajectory[1], res.trajectory[2])
    np.testing.assert_allclose(res.trajectory[-1], res.x)
    # Velocity is the derivative of the position (finite difference of the exact trajectory).
    h = 1e-5
    a = lbackend.run(p, t=1.0, x0=np.ones(3), kappa0=0.0, seed=None, times=None, options={}).x
    b = lbackend.run(p, t=1.0 + h, x0=np.ones(3), kappa0=0.0, seed=None, times=None, options={})
    np.testing.assert_allclose((b.x - a) / h, b.extra["velocity"], atol=1e-4)


@pytest.mark.parametrize(
    "params",
    [None, OscillatorParams(zeta=0.5), OscillatorParams(zeta=2.0), OscillatorParams(zeta=0.7, coupling="capacitive")],
)
def test_continuous_time_errors_are_the_long_window_limit_of_the_exact_sums(params):
    """K samples dt apart with dt -> 0 and K dt = T >> correlation time: the exact finite sums tend
    to the closed-form integrals (rel. differences O(dt) and O(t_corr / T), both <= 1% here)."""
    from spu.core.underdamped import continuous_time_errors

    p = dense(n=4, lo=0.3)
    if params is not None and params.coupling == "capacitive":
        p = DenseProblem(p.A, np.zeros(p.n))
    kappa, dt, K = 0.1, 0.02, 100_000
    ct = continuous_time_errors(p, params, kappa)
    th = sampling_theory(p, params, kappa, K, dt)
    assert ct["cov_err2_T"] / (K * dt) == pytest.approx(th["cov_err2"], rel=0.01)
    if params is None or params.coupling == "resistive":
        assert ct["mean_err2_T"] / (K * dt) == pytest.approx(th["mean_err2"], rel=0.01)
    else:
        assert ct["mean_err2_T"] == 0.0  # a velocity's time average is a displacement / T -> O(1/T^2)
    assert ct["cov_norm"] == pytest.approx(np.linalg.norm(kappa * np.linalg.inv(p.A)))
