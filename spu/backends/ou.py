"""Exact Ornstein–Uhlenbeck backend: the SPU's law sampled without time-stepping error.

Over a time step dt (in tau) the dynamics dx = -(A x - b) ds + sqrt(2 kappa0) dW have the exact
Gaussian transition

    x(s + dt) = mu + exp(-A dt) (x(s) - mu) + xi,   mu = A^-1 b,
    xi ~ N(0, kappa0 A^-1 (I - exp(-2 A dt))).

Every matrix function here is f(A) for a symmetric A, so one symmetric decomposition gives all of
them (general `eig`, as in thermox, goes singular once eigenvalues repeat, which lam*I + U U^T
always does):

* DenseProblem: A = Q diag(w) Q^T via `eigh`, O(N^3) once, O(N^2) per step.
* Factored / GGN: A = lam I + P diag(s) P^T with P = U V diag(s^-1/2) (N x r, orthonormal columns)
  from the m x m eigenproblem U^T U = V diag(s) V^T (P stays implicit as U W). Then
      f(A) v = f(lam) v + P [(f(lam + s) - f(lam)) * (P^T v)],
  O(N m^2 + m^3) once and O(N m) per step; the N x N matrix is never formed.
  We use the *difference* form rather than f(lam)(I - P P^T) + P f(lam+s) P^T: they are equal when
  P is exactly orthonormal, but the difference form multiplies P's round-off (largest for the
  smallest s) by f(lam + s) - f(lam) = O(s), so weak modes cannot spoil the lam part.
  Noise: f = sqrt(var) applied to a standard normal z gives covariance f(A)^2 = the exact one.
"""
from __future__ import annotations

import numpy as np

from ..errors import ProblemError
from ..problems import DenseProblem
from .base import BackendRun

NAME = "ou"

# Modes of U^T U below this fraction of the largest are numerically zero (round-off of a
# rank-deficient U); dropping one changes A by at most that much relative to ||U||^2.
DROP_RTOL = 1e-12


def check_run_args(problem, t, x0, kappa0, times, *, allow_inf: bool = True):
    """Validate the common run() arguments; return (t, x0, kappa0, times) as floats/arrays.

    x0 = None means the zero state. Shared by the numeric backends so they fail the same way.
    """
    n = problem.n
    try:
        t = float(t)
        kappa0 = float(kappa0)
    except (TypeError, ValueError):
        raise ProblemError(f"t and kappa0 must be numbers, got t={t!r}, kappa0={kappa0!r}") from None
    if np.isnan(t) or t < 0 or (np.isinf(t) and not allow_inf):
        raise ProblemError(f"analog time t must be >= 0{'' if allow_inf else ' and finite'}, got {t}")
    if not np.isfinite(kappa0) or kappa0 < 0:
        raise ProblemError(f"noise level kappa0 must be finite and >= 0, got {kappa0}")
    x0 = np.zeros(n) if x0 is None else np.asarray(x0, dtype=np.float64)
    if x0.shape != (n,):
        raise ProblemError(f"x0 has shape {x0.shape} but the problem needs ({n},)")
    if not np.isfinite(x0).all():
        raise ProblemError("x0 contains NaN or inf")
    if times is not None:
        times = np.asarray(times, dtype=np.float64)
        if times.ndim != 1:
            raise ProblemError(f"times must be 1-D, got shape {times.shape}")
        if np.isnan(times).any() or (times.size and (times[0] < 0 or times[-1] > t)):
            raise ProblemError(f"times must lie in [0, t={t}]")
        if np.any(np.diff(times) < 0):
            raise ProblemError("times must be increasing")
    return t, x0, kappa0, times


class DensePropagator:
    """Exact OU transitions of a dense SPD A from its symmetric eigendecomposition."""

    def __init__(self, A: np.ndarray, b: np.ndarray):
        self.w, self.Q = np.linalg.eigh(A)
        self.mean = self.apply(b, 1.0 / self.w)  # A^-1 b

    def apply(self, v, fw):
        return self.Q @ (fw * (self.Q.T @ v))

    def step(self, x, dt, kappa0, rng):
        if dt == 0:
            return x.copy()
        w = self.w
        out = self.mean + self.apply(x - self.mean, np.exp(-w * dt))  # exp(-inf) = 0: t = inf works
        if kappa0 > 0:
            std = np.sqrt(kappa0 * -np.expm1(-2.0 * w * dt) / w)
            # Q^T z is again standard normal, so draw the eigen-coordinates directly.
            out += self.Q @ (std * rng.standard_normal(w.shape[0]))
        return out


class LowRankPropagator:
    """Exact OU transitions of A = lam I + U U^T without forming any N x N matrix."""

    def __init__(self, U: np.ndarray, lam: float, b: np.ndarray):
        U = np.asarray(U, dtype=np.float64)  # m x m algebra in float64 even for float32 factors
        s, V = np.linalg.eigh(U.T @ U)  # the only O(N m^2) work
        smax = float(s[-1]) if s.size else 0.0
        keep = s > DROP_RTOL * smax if smax > 0 else np.zeros(s.shape, bool)
        self.U, self.s = U, s[keep]
        # P = U W is kept implicit: P^T v = W^T (U^T v), P c = U (W c). Forming P would cost
        # another N m^2 product and N m memory for nothing (~0.1 s and 50 MB at N=1e5, m=64).
        self.W = V[:, keep] / np.sqrt(self.s)
        self.lam = float(lam)
        lam, s = self.lam, self.s
        # 1/(lam+s) - 1/lam written without cancellation.
        self.mean = self.apply(b, 1.0 / lam, -s / (lam * (lam + s)))

    @property
    def rank(self) -> int:
        return self.s.shape[0]

    def apply(self, v, f_lam, f_diff):
        """f(A) v given f(lam) and f(lam + s) - f(lam)."""
        return f_lam * v + self.U @ (self.W @ (f_diff * (self.W.T @ (self.U.T @ v))))

    def step(self, x, dt, kappa0, rng):
        if dt == 0:
            return x.copy()
        lam, s, U, W = self.lam, self.s, self.U, self.W
        d = x - self.mean
        e_lam = np.exp(-lam * dt)
        # e^{-(lam+s)dt} - e^{-lam dt} = e^{-lam dt} expm1(-s dt): exact for small s dt.
        e_diff = e_lam * np.expm1(-s * dt) if np.isfinite(dt) else np.zeros_like(s)
        if kappa0 == 0:
            return self.mean + self.apply(d, e_lam, e_diff)
        sd_lam = np.sqrt(kappa0 * -np.expm1(-2.0 * lam * dt) / lam)
        sd_diff = np.sqrt(kappa0 * -np.expm1(-2.0 * (lam + s) * dt) / (lam + s)) - sd_lam
        z = rng.standard_normal(x.shape[0])
        # Mean and noise share one pass over U each way: U^T [d z], then U c.
        R = W.T @ (U.T @ np.column_stack([d, z]))
        c = W @ (e_diff * R[:, 0] + sd_diff * R[:, 1])
        return self.mean + e_lam * d + sd_lam * z + U @ c


def propagator(problem):
    """Build the reusable exact propagator for a problem (DensePropagator or LowRankPropagator).

    ``prop.step(x, dt, kappa0, rng)`` is one exact transition; ``prop.mean`` is A^-1 b.
    """
    if isinstance(problem, DenseProblem):
        return DensePropagator(problem.A, problem.b)
    f = problem.factored()  # GGNProblem -> U = J^T S; FactoredProblem -> itself
    return LowRankPropagator(f.U, f.lam, f.b)


def run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun:
    t, x0, kappa0, times = check_run_args(problem, t, x0, kappa0, times)
    prop = propagator(problem)
    rng = np.random.default_rng(seed)
    x, now, rows = x0.copy(), 0.0, []
    stops = [] if times is None else list(times)
    for target in stops + [t]:
        dt = 0.0 if target == now else target - now  # inf == inf: no step, not inf - inf = nan
        x = prop.step(x, dt, kappa0, rng)
        now = target
        rows.append(x)
    traj = np.array(rows[:-1]).reshape(len(stops), problem.n) if times is not None else None
    extra = {"method": "eigh" if isinstance(prop, DensePropagator) else "lowrank"}
    if isinstance(prop, LowRankPropagator):
        extra["rank"] = prop.rank
    return BackendRun(x=x, times=times, trajectory=traj, extra=extra)
