"""Numeric backends (ou, euler, direct) against closed-form OU results.

Statistical checks use tolerances from sampling theory: for n samples of a zero-mean Gaussian
with covariance S, the entry (i, j) of the sample covariance (about the known mean) has standard
deviation sqrt((S_ii S_jj + S_ij^2) / n) (Wishart). We allow 5 sigma per entry; the seeds are
fixed, so the tests are deterministic, and a 5-sigma margin keeps them from being tuned to a seed.
Each statistical test also checks it has the power to see a plausible wrong answer.
"""

import numpy as np
import pytest
from cases import random_factored
from physics import exact_mean
from scipy import linalg

from spu.backends import direct, euler, ou
from spu.core.errors import ProblemError
from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem
from spu.core.softmax import softmax_ce_hessian

NSIG = 5.0


def spd(n, lo, hi, seed):
    """Random SPD matrix with eigenvalues spread over [lo, hi]."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = np.linspace(lo, hi, n)
    return (Q * w) @ Q.T


def dense(n=50, seed=0, lo=0.5, hi=3.0):
    rng = np.random.default_rng(seed + 100)
    return DenseProblem(spd(n, lo, hi, seed), rng.standard_normal(n))


def factored(n=50, m=5, lam=0.5, seed=0):
    return random_factored(n, m, lam, seed, scale=2.0)


def run(mod, p, t, x0=None, kappa0=0.0, seed=0, times=None, **options):
    x0 = np.zeros(p.n) if x0 is None else x0
    return mod.run(p, t=t, x0=x0, kappa0=kappa0, seed=seed, times=times, options=options)


def forbid_matrix(monkeypatch):
    def boom(self):
        raise AssertionError("the N x N matrix was formed")

    monkeypatch.setattr(FactoredProblem, "matrix", boom)
    monkeypatch.setattr(GGNProblem, "matrix", boom)


def sample_cov_check(X, mean, S):
    """Assert the sample covariance of rows X about `mean` is S within NSIG Wishart sigmas."""
    n = X.shape[0]
    D = X - mean
    C = D.T @ D / n
    d = np.diag(S)
    sig = np.sqrt((np.outer(d, d) + S**2) / n)
    z = np.abs(C - S) / sig
    assert z.max() < NSIG, f"sample covariance off by {z.max():.1f} sigma"
    # Mean: std of the sample mean is sqrt(S_ii / n).
    zm = np.abs(D.mean(0)) / np.sqrt(d / n)
    assert zm.max() < NSIG, f"sample mean off by {zm.max():.1f} sigma"
    # Whitened (L^-1 D with S = L L^T has covariance I): weak directions of S, where an error is
    # invisible next to the large entries, get the same relative resolution sqrt(2/n).
    Y = linalg.solve_triangular(np.linalg.cholesky(S), D.T, lower=True)
    zw = np.abs(Y @ Y.T / n - np.eye(len(d))) / np.sqrt((1 + np.eye(len(d))) / n)
    assert zw.max() < NSIG, f"whitened sample covariance off by {zw.max():.1f} sigma"
    return C, sig


# ----------------------------------------------------------------------------- ou: the mean


def test_ou_dense_mean_matches_expm():
    p = dense()
    x0 = np.random.default_rng(1).standard_normal(p.n)
    for t in (0.05, 0.7, 4.0):
        ref = exact_mean(p.A, p.b, x0, t)
        np.testing.assert_allclose(run(ou, p, t, x0).x, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_ou_factored_mean_matches_expm_without_forming_A(monkeypatch):
    p = factored(50, 5)
    A = p.lam * np.eye(p.n) + p.U @ p.U.T  # reference built before matrix() is forbidden
    x0 = np.random.default_rng(2).standard_normal(p.n)
    forbid_matrix(monkeypatch)
    for t in (0.05, 0.7, 4.0):
        ref = exact_mean(A, p.b, x0, t)
        r = run(ou, p, t, x0)
        assert r.extra["method"] == "lowrank" and r.extra["rank"] == 5
        np.testing.assert_allclose(r.x, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_ou_ggn_mean_matches_dense_without_forming_A(monkeypatch):
    rng = np.random.default_rng(3)
    n, bsz, dz = 40, 3, 4
    J = rng.standard_normal((bsz * dz, n)) / np.sqrt(n)
    # softmax cross-entropy Hessian diag(p) - p p^T per sample (singular)
    H = softmax_ce_hessian([rng.dirichlet(np.ones(dz)) for _ in range(bsz)])
    g = GGNProblem(J, H, 0.1, rng.standard_normal(n))
    A = J.T @ H @ J + 0.1 * np.eye(n)
    x0 = rng.standard_normal(n)
    forbid_matrix(monkeypatch)
    ref = exact_mean(A, g.b, x0, 0.9)
    np.testing.assert_allclose(run(ou, g, 0.9, x0).x, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_ou_rank_deficient_factor():
    """A duplicated column makes U^T U singular: the zero mode is dropped, the answer stays exact."""
    p0 = factored(30, 4, seed=5)
    U = np.hstack([p0.U, p0.U[:, :1]])
    p = FactoredProblem(U, p0.lam, p0.b)
    x0 = np.ones(p.n)
    A = p.lam * np.eye(p.n) + U @ U.T
    r = run(ou, p, 1.3, x0)
    assert r.extra["rank"] == 4
    ref = exact_mean(A, p.b, x0, 1.3)
    np.testing.assert_allclose(r.x, ref, rtol=0, atol=1e-10 * np.abs(ref).max())


def test_ou_with_a_given_gram_skips_the_product_and_stays_exact(monkeypatch):
    """FactoredProblem(gram=U^T U): the propagator decomposes the given m x m matrix instead of
    forming U^T U (O(N m^2)), and the transition is the expm reference; a Gram that is not U^T U
    is refused at construction, naming it."""
    p0 = factored(40, 6, seed=8)
    A = p0.lam * np.eye(p0.n) + p0.U @ p0.U.T
    p = FactoredProblem(p0.U, p0.lam, p0.b, gram=p0.U.T @ p0.U)
    x0 = np.random.default_rng(9).standard_normal(p.n)
    seen = []
    real_eigh = np.linalg.eigh
    monkeypatch.setattr(np.linalg, "eigh", lambda M: seen.append(M) or real_eigh(M))
    ref = exact_mean(A, p.b, x0, 0.8)
    np.testing.assert_allclose(run(ou, p, 0.8, x0).x, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert len(seen) == 1 and seen[0] is p.gram  # the given matrix itself, no U^T U formed
    wrong = p0.U.T @ p0.U
    wrong[0, 1] = wrong[1, 0] = wrong[0, 1] + 0.1
    with pytest.raises(ProblemError, match="gram is not U\\^T U"):
        FactoredProblem(p0.U, p0.lam, p0.b, gram=wrong)
    with pytest.raises(ProblemError, match="gram must be U\\^T U of shape \\(6, 6\\)"):
        FactoredProblem(p0.U, p0.lam, p0.b, gram=np.eye(5))
    with pytest.raises(ProblemError, match="gram is not symmetric"):
        FactoredProblem(p0.U, p0.lam, p0.b, gram=np.triu(p0.U.T @ p0.U))


def test_ou_reuses_the_decomposition_of_a_problem_it_has_seen():
    """TNGD with a delay runs each step's problem twice (t, then t_d as the stale system): the
    second run reuses the propagator, and gives what a fresh one would."""
    p = factored(30, 4, seed=10)
    assert ou.propagator(p) is ou.propagator(p)
    x0 = np.ones(p.n)
    twin = FactoredProblem(p.U, p.lam, p.b)
    assert ou.propagator(twin) is not ou.propagator(p)
    np.testing.assert_array_equal(run(ou, p, 0.7, x0).x, run(ou, twin, 0.7, x0).x)


def test_ggn_factored_is_computed_once():
    """The backends and the timing model's resistor count both ask GGNProblem.factored()."""
    rng = np.random.default_rng(11)
    J = rng.standard_normal((6, 10))
    g = GGNProblem(J, np.eye(6) * 0.5, 0.1, rng.standard_normal(10))
    f = g.factored()
    assert g.factored() is f
    np.testing.assert_allclose(f.U @ f.U.T, J.T @ (0.5 * J), rtol=1e-12, atol=1e-12)


def test_ou_trajectory_rows_are_transitions():
    p = factored(30, 3, seed=6)
    A = p.matrix()
    x0 = np.random.default_rng(7).standard_normal(p.n)
    times = np.array([0.0, 0.1, 0.5, 2.0])
    r = run(ou, p, 3.0, x0, times=times)
    assert r.trajectory.shape == (4, p.n)
    np.testing.assert_array_equal(r.times, times)
    for row, s in zip(r.trajectory, times):
        np.testing.assert_allclose(row, exact_mean(A, p.b, x0, s), rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.x, exact_mean(A, p.b, x0, 3.0), rtol=0, atol=1e-10)
    assert run(ou, p, 3.0, x0).trajectory is None


@pytest.mark.parametrize("mod", [ou, euler])
@pytest.mark.parametrize("make", [dense, factored])
def test_t_zero_returns_x0(mod, make):
    p = make()
    x0 = np.random.default_rng(8).standard_normal(p.n)
    r = run(mod, p, 0.0, x0, kappa0=0.5)
    np.testing.assert_array_equal(r.x, x0)
    assert r.x is not x0


@pytest.mark.parametrize("make", [dense, factored])
def test_ou_t_inf_equals_direct(make):
    p = make()
    x0 = np.full(p.n, 7.0)  # forgotten entirely at t = inf
    x = run(ou, p, np.inf, x0).x
    ref = direct.run(p, t=np.inf, x0=x0, kappa0=0.0, seed=None, times=None, options={}).x
    np.testing.assert_allclose(x, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref, np.linalg.solve(p.matrix(), p.b), rtol=1e-10)


@pytest.mark.parametrize("mod,t", [(ou, 0.5), (ou, np.inf), (euler, 0.5)])
def test_seeds_reproducible_and_distinct(mod, t):
    p = factored(20, 3)
    a = run(mod, p, t, kappa0=0.2, seed=11).x
    b = run(mod, p, t, kappa0=0.2, seed=11).x
    c = run(mod, p, t, kappa0=0.2, seed=12).x
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


# ----------------------------------------------------------------------------- ou: the noise

NS = 4000  # samples per covariance test: diagonal relative std sqrt(2/NS) ~ 2.2 %


def ou_samples(p, t, x0, kappa0):
    return np.array([run(ou, p, t, x0, kappa0=kappa0, seed=i).x for i in range(NS)])


@pytest.mark.parametrize("make", [lambda: dense(4, seed=1), lambda: factored(6, 2, seed=1)])
def test_ou_stationary_covariance(make):
    p = make()
    kappa0 = 0.3
    A = p.matrix()
    S = kappa0 * np.linalg.inv(A)
    X = ou_samples(p, np.inf, np.zeros(p.n), kappa0)
    C, sig = sample_cov_check(X, np.linalg.solve(A, p.b), S)
    # Power: a 20 % error in the noise variance would have been caught.
    assert (np.abs(np.diag(C) - 0.8 * np.diag(S)) / np.diag(sig)).max() > NSIG


@pytest.mark.parametrize("make", [lambda: dense(4, seed=2), lambda: factored(6, 2, seed=2)])
def test_ou_transition_covariance(make):
    p = make()
    kappa0, t = 0.5, 0.3
    A = p.matrix()
    x0 = np.linspace(-1, 1, p.n)
    S = kappa0 * np.linalg.solve(A, np.eye(p.n) - linalg.expm(-2 * A * t))
    X = ou_samples(p, t, x0, kappa0)
    C, sig = sample_cov_check(X, exact_mean(A, p.b, x0, t), S)
    # Power: the stationary covariance (what a wrong t -> inf shortcut would give) is far off.
    S_inf = kappa0 * np.linalg.inv(A)
    assert (np.abs(np.diag(C) - np.diag(S_inf)) / np.diag(sig)).max() > NSIG


# ----------------------------------------------------------------------------- euler


def test_euler_converges_first_order_to_ou():
    p = dense(5, seed=3, lo=0.5, hi=3.0)
    x0 = np.random.default_rng(9).standard_normal(p.n)
    exact = run(ou, p, 2.0, x0).x
    errs = [np.linalg.norm(run(euler, p, 2.0, x0, dt=h).x - exact) for h in (0.1, 0.05, 0.025, 0.0125)]
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.3)), ratios  # O(dt): halving dt halves the error
    assert errs[0] > 1e-3  # the paper's dt = 0.1 is visibly inexact here


def test_euler_is_matrix_free(monkeypatch):
    p = factored(30, 3)
    A = p.lam * np.eye(p.n) + p.U @ p.U.T
    t, h = 1.0, 0.01
    a, Q = np.linalg.eigh(A)
    assert h * a[-1] <= 1  # the bound below needs 0 <= 1 - h a <= e^{-h a} for every eigenvalue a
    c = Q.T @ (np.zeros(p.n) - np.linalg.solve(A, p.b))  # x0 - mu per mode (x0 = 0)
    forbid_matrix(monkeypatch)
    r = run(euler, p, t, dt=h)
    # Noiseless Euler is x_K - mu = (I - hA)^K (x0 - mu) against the exact e^{-At} (x0 - mu). Per
    # mode with x = 1 - ha, y = e^{-ha}: 0 <= y - x <= (ha)^2 / 2 and x^K - y^K = (x - y) sum of K
    # terms each <= y^(K-1), so |error| <= K (ha)^2 / 2 e^{-a (t - h)} |c| = t h a^2 / 2 e^{-a(t-h)} |c|
    # (first order in h and close to equality: the leading term of the true error).
    exact = exact_mean(A, p.b, np.zeros(p.n), t)
    bound = np.linalg.norm(t * h * a**2 / 2 * np.exp(-a * (t - h)) * c)
    assert np.linalg.norm(r.x - exact) <= bound


def test_euler_stationary_covariance_has_dt_bias():
    """EM with step h has stationary covariance kappa0 A^-1 (I - h A / 2)^-1 (exact for this
    linear recursion), not kappa0 A^-1: check the former and that the bias is resolved."""
    p = dense(3, seed=4, lo=0.5, hi=3.0)
    kappa0, h = 1.0, 0.1
    A = p.matrix()
    mu = np.linalg.solve(A, p.b)
    S_em = kappa0 * np.linalg.inv(A @ (np.eye(3) - h * A / 2))
    # One long run, recorded every 10 tau: lag-correlation <= (1 - h*0.5)^100 ~ 0.006, negligible.
    n = 3000
    times = 20.0 + 10.0 * np.arange(n)
    r = run(euler, p, times[-1], x0=mu, kappa0=kappa0, seed=5, times=times, dt=h)
    sample_cov_check(r.trajectory, mu, S_em)
    # Along the stiffest mode the dt bias (+17 %) is many sigma: the test sees it.
    w, V = np.linalg.eigh(A)
    v = V[:, -1]
    var = np.mean(((r.trajectory - mu) @ v) ** 2)
    sd = np.sqrt(2 / n) * kappa0 / w[-1]
    assert abs(var - kappa0 / w[-1]) > NSIG * sd


def test_euler_grid_and_recording_times():
    p = dense(4, seed=5)
    assert run(euler, p, 1.0, dt=0.1).extra["steps"] == 10  # no spurious round-off step
    assert run(euler, p, 1.05, dt=0.1).extra["steps"] == 11  # last step shortened to 0.05
    assert run(euler, p, 1.0).extra["dt"] == 0.1  # the paper's default
    times = np.array([0.0, 0.25, 0.3, 1.0])
    r = run(euler, p, 1.0, dt=0.1, times=times)
    assert r.extra["steps"] == 11  # 0.25 splits one step
    # Recording at 0.25 lands exactly there: same as a run that stops at 0.25.
    np.testing.assert_array_equal(r.trajectory[1], run(euler, p, 0.25, dt=0.1).x)
    np.testing.assert_array_equal(r.trajectory[0], np.zeros(p.n))
    np.testing.assert_array_equal(r.trajectory[-1], r.x)


def test_euler_divergence_is_reported():
    p = dense(4, seed=6, lo=1.0, hi=30.0)  # 2 / lambda_max = 0.067 < dt = 0.1
    with pytest.raises(ProblemError, match="stability"):
        run(euler, p, 300.0, dt=0.1)


# ----------------------------------------------------------------------------- direct


@pytest.mark.parametrize("lam", [1.0, 1e-3])
def test_direct_woodbury_matches_numpy(lam):
    p = factored(60, 8, lam=lam, seed=7)
    A = p.matrix()
    rhs = np.random.default_rng(10).standard_normal((p.n, 3))
    np.testing.assert_allclose(direct.solve(p, p.b), np.linalg.solve(A, p.b), rtol=1e-9)
    np.testing.assert_allclose(direct.solve(p, rhs), np.linalg.solve(A, rhs), rtol=1e-9)
    pd = DenseProblem(A, p.b)
    np.testing.assert_allclose(direct.solve(pd, rhs), np.linalg.solve(A, rhs), rtol=1e-9)


def test_direct_run_ignores_time_and_noise():
    p = factored(20, 2)
    r = direct.run(p, t=0.0, x0=np.ones(p.n), kappa0=1.0, seed=1, times=[0.0, 1.0], options={})
    ref = np.linalg.solve(p.matrix(), p.b)
    np.testing.assert_allclose(r.x, ref, rtol=1e-10)
    assert r.trajectory.shape == (2, p.n)
    np.testing.assert_allclose(r.trajectory[0], ref, rtol=1e-10)
    with pytest.raises(ProblemError):
        direct.solve(p, np.ones(p.n + 1))


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kw",
    [
        dict(t=-1.0),
        dict(t=1.0, times=[0.5, 2.0]),
        dict(t=1.0, times=[0.6, 0.5]),
        dict(t=1.0, kappa0=-0.1),
        dict(t=1.0, x0=np.zeros(3)),
    ],
)
def test_bad_arguments_raise(kw):
    p = dense(4)
    args = dict(x0=np.zeros(4), kappa0=0.0, seed=0, times=None, options={})
    args.update(kw)
    for mod in (ou, euler):
        with pytest.raises(ProblemError):
            mod.run(p, **args)


def test_euler_refuses_infinite_time():
    with pytest.raises(ProblemError, match="finite"):
        run(euler, dense(4), np.inf)
