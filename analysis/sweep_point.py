"""What a sweep point is measured against: the fixed test problem (cached per spec, so a worker
builds it once for all its points), its exact ideal solution and the theory of its errors.
analysis/sweep_eval.py runs one point."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spu.core.softmax import random_softmax_hessian
from spu.core.spectral import DenseSpectrum, ou_transition_var


# -- the test problem -----------------------------------------------------------------------------
def make_problem(form: str = "ggn", n: int = 8, seed: int = 0, lam: float = 0.5, batch: int = 2, dz: int = 3):
    """The fixed test problem of a sweep, scaled so that max |A^-1 b| = 1 (state voltages of about
    1 V against the ADC's 10 V full scale).

    ggn: A = J^T H J + lam I (GGNProblem; crossbar topology) with J (batch*dz x n) Gaussian, entries
         kept >= 0.05 in magnitude (so every resistor is in range), and H block-diagonal with the
         softmax cross-entropy Hessian diag(p) - p p^T of random logits per sample. With
         batch*dz < n, lambda_min = lam exactly (the null space of J).
    spd: A = M M^T / n + lam I with M uniform in [-1, 1] (DenseProblem; dense topology)."""
    from spu.core.problems import DenseProblem, GGNProblem

    rng = np.random.default_rng(seed)
    if form == "spd":
        M = rng.uniform(-1, 1, (n, n))
        A = M @ M.T / n + lam * np.eye(n)
        b = rng.normal(size=n)
        b = b / np.abs(np.linalg.solve(A, b)).max()
        return DenseProblem(A, b)
    m = batch * dz
    J = rng.normal(size=(m, n))
    J = np.where(J < 0, -1.0, 1.0) * np.maximum(np.abs(J), 0.05)
    H = random_softmax_hessian(rng, batch, dz)
    b = rng.normal(size=n)
    prob = GGNProblem(J, H, lam, b)
    x = np.linalg.solve(prob.matrix(), b)
    return GGNProblem(J, H, lam, b / np.abs(x).max())


# -- evaluating one point (runs in worker processes) ---------------------------------------------
@dataclass
class _Context:
    problem: object
    x_star: np.ndarray
    norm: float
    w: np.ndarray  # eigenvalues of A
    c: np.ndarray  # Q^T x*
    lam_min: float


@lru_cache(maxsize=8)
def _context(spec_json: str) -> _Context:
    spec = json.loads(spec_json)
    problem = make_problem(**spec["problem"])
    A = problem.matrix()
    spec_A = DenseSpectrum(A)
    x_star = np.linalg.solve(A, problem.b)
    return _Context(
        problem, x_star, float(np.linalg.norm(x_star)), spec_A.eigs, spec_A.project(x_star), float(spec_A.eigs[0])
    )


def ideal_ou(ctx: _Context, s, kappa0: float = 0.0):
    """The ideal OU process dx = -(A x - b) dt + sqrt(2 kappa0) dW from x0 = 0, exactly, in A's
    eigenbasis: at time s (a number, or an array of times) the mean error Q^T (x* - E x(s)) =
    exp(-w s) c, and the trace of the covariance kappa0 sum (1 - exp(-2 w s)) / w.
    Returns (mean_error, covariance_trace), shaped (n,) and () for one time, (T, n) and (T,) for T."""
    mean_error = np.exp(-np.multiply.outer(s, ctx.w)) * ctx.c
    return mean_error, np.sum(ou_transition_var(ctx.w, np.asarray(s)[..., None], kappa0), axis=-1)


def theory_rms(ctx: _Context, t: float, kappa0: float) -> float:
    """sqrt(E||x(t) - x*||^2)/||x*|| of the ideal OU process from x0 = 0: the mean error
    -exp(-A t) x* plus the covariance kappa0 A^-1 (I - exp(-2 A t))."""
    mean_error, var = ideal_ou(ctx, t, kappa0)
    return math.sqrt(float(np.sum(mean_error**2)) + float(var)) / ctx.norm


def settle_time(times: np.ndarray, X: np.ndarray, tol: float) -> float:
    """First time after which ||x(s) - x(end)|| <= tol * ||x(end)|| holds for every later sample,
    interpolated linearly between samples; inf if that happens only in the last 10% of the run."""
    final = X[-1]
    scale = max(float(np.linalg.norm(final)), np.finfo(float).tiny)
    d = np.linalg.norm(X - final, axis=1) / scale
    out = np.flatnonzero(d > tol)
    if out.size == 0:
        return float(times[0])
    k = int(out[-1])
    if k + 1 >= len(times):
        return math.inf
    t0, t1, d0, d1 = times[k], times[k + 1], d[k], d[k + 1]
    ts = float(t0 + (t1 - t0) * (d0 - tol) / (d0 - d1)) if d0 != d1 else float(t1)
    return math.inf if ts > 0.9 * times[-1] else ts


def growing(times: np.ndarray, E: np.ndarray) -> bool:
    """Whether the peak of ||E|| over the last quarter of the run exceeds that over the third
    quarter by more than 1%: an unstable (e.g. oscillating, growing) circuit, not a slow one."""
    nrm = np.linalg.norm(E, axis=1)
    T = times[-1]
    q3 = nrm[(times >= 0.5 * T) & (times < 0.75 * T)]
    q4 = nrm[times >= 0.75 * T]
    return bool(q3.size and q4.size and q4.max() > 1.01 * q3.max())


def ideal_settle_time(ctx: _Context, t: float, tol: float, samples: int = 20001) -> float:
    """settle_time of the exact ideal solution x(s) = x* - exp(-A s) x* on a fine grid (in the
    eigenbasis, where norms are the same)."""
    s = np.linspace(0.0, t, samples)
    E, _ = ideal_ou(ctx, s)  # Q^T (x* - x(s))
    X = ctx.c - E  # Q^T x(s)
    return settle_time(s, X, tol)
