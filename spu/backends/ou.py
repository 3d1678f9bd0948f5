"""Exact Ornstein–Uhlenbeck backend: the SPU's law sampled without time-stepping error.

Over a time step dt (in tau) the dynamics dx = -(A x - b) ds + sqrt(2 kappa0) dW have the exact
Gaussian transition

    x(s + dt) = mu + exp(-A dt) (x(s) - mu) + xi,   mu = A^-1 b,
    xi ~ N(0, kappa0 A^-1 (I - exp(-2 A dt))).

Every matrix function here is f(A) for a symmetric A, so one symmetric decomposition gives all of
them (spu/core/spectral.py; general `eig`, as in thermox, goes singular once eigenvalues repeat,
which lam*I + U U^T always does): O(N^2) per step for a dense A, O(N m) for A = lam I + U U^T.
Noise: f = sqrt(var) applied to a standard normal z gives covariance f(A)^2 = the exact one.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..core.errors import ProblemError
from ..core.spectral import DenseSpectrum, LowRankSpectrum, ou_transition_var
from .base import Backend, BackendRun


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
        self.spec = DenseSpectrum(A)
        self.mean = self.spec.apply(b, 1.0 / self.spec.eigs)  # A^-1 b

    def step(self, x, dt, kappa0, rng):
        if dt == 0:
            return x.copy()
        w, spec = self.spec.eigs, self.spec
        out = self.mean + spec.apply(x - self.mean, np.exp(-w * dt))  # exp(-inf) = 0: t = inf works
        if kappa0 > 0:
            std = np.sqrt(ou_transition_var(w, dt, kappa0))
            # Q^T z is again standard normal, so draw the eigen-coordinates directly.
            out += spec.lift(std * rng.standard_normal(w.shape[0]))
        return out


class LowRankPropagator:
    """Exact OU transitions of A = lam I + U U^T without forming any N x N matrix."""

    def __init__(self, U: np.ndarray, lam: float, b: np.ndarray, gram: np.ndarray | None = None):
        self.spec = LowRankSpectrum(U, lam, gram)
        lam, s = self.spec.lam, self.spec.s
        # 1/(lam+s) - 1/lam written without cancellation.
        self.mean = self.spec.apply(b, 1.0 / lam, -s / (lam * (lam + s)))

    @property
    def rank(self) -> int:
        return self.spec.rank

    def step(self, x, dt, kappa0, rng):
        if dt == 0:
            return x.copy()
        spec = self.spec
        lam, s = spec.lam, spec.s
        d = x - self.mean
        e_lam = np.exp(-lam * dt)
        # e^{-(lam+s)dt} - e^{-lam dt} = e^{-lam dt} expm1(-s dt): exact for small s dt.
        e_diff = e_lam * np.expm1(-s * dt) if np.isfinite(dt) else np.zeros_like(s)
        if kappa0 == 0:
            return self.mean + spec.apply(d, e_lam, e_diff)
        sd_lam = np.sqrt(ou_transition_var(lam, dt, kappa0))
        sd_diff = np.sqrt(ou_transition_var(lam + s, dt, kappa0)) - sd_lam
        z = rng.standard_normal(x.shape[0])
        # Mean and noise share one pass over U each way: U^T [d z], then U c.
        R = spec.project(np.column_stack([d, z]))
        return self.mean + e_lam * d + sd_lam * z + spec.lift(e_diff * R[:, 0] + sd_diff * R[:, 1])


# Propagators of problems still alive. Problems are immutable, and TNGD with a delay t_d runs each
# step's problem twice (for t, then as the stale system for t_d at the next step): the second run
# reuses the decomposition instead of repeating the O(N m^2 + m^3) work.
_PROPAGATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def propagator(problem):
    """The reusable exact propagator for a problem (DensePropagator or LowRankPropagator), built
    once per problem object.

    ``prop.step(x, dt, kappa0, rng)`` is one exact transition; ``prop.mean`` is A^-1 b.
    """
    prop = _PROPAGATORS.get(problem)
    if prop is None:
        f = problem.factored()  # GGNProblem -> U = J^T S; FactoredProblem -> itself
        if f is None:
            prop = DensePropagator(problem.A, problem.b)
        else:
            prop = LowRankPropagator(f.U, f.lam, f.b, f.gram)
        _PROPAGATORS[problem] = prop
    return prop


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


class OUBackend(Backend):
    name = "ou"
    exact = True
    run = staticmethod(run)


BACKEND = OUBackend()
