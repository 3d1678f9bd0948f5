"""ExactLangevin: exact transitions of the oscillator SPU, mode by mode, from one symmetric
decomposition of A (dense ``eigh``) or, for A = lam I + U U^T, from the m x m eigenproblem of U^T U."""

from __future__ import annotations

import numpy as np

from ..errors import ProblemError
from ..spectral import MODE_DECAY_TOL, settling_time
from .modes import chol2, expm_batch, mode_drift, mode_transition
from .params import OscillatorParams, damping_ratios


class ExactLangevin:
    """Exact transitions of (*) for a problem A x = b under an encoding (OscillatorParams).

    State (q, v), both length N. ``step(q, v, h, rng)`` is one exact transition; ``q_eq`` is the
    stationary mean of q (A^-1 b resistive, 0 capacitive)."""

    def __init__(self, problem, params: OscillatorParams, kappa: float):
        self.params = params.check()
        self.kappa = float(kappa)
        self.spec = problem.spectrum()
        eigs = self.spec.eigs
        self.gamma = params.resolve_gamma(float(eigs.min()), float(eigs.max()))
        self.m, self.w, self.g = params.modes(eigs, self.gamma)
        if params.coupling == "capacitive":
            if np.any(problem.b != 0):
                raise ProblemError(
                    "capacitive coupling encodes A in the mass (capacitance) matrix: the force b only shifts "
                    "the fluxes and the node voltages have mean 0, so it cannot solve A x = b; pass b = 0 "
                    "(sampling / inverse) or use coupling='resistive'"
                )
            self.q_eq = np.zeros(problem.n)
        else:
            X = problem.b[:, None]
            self.q_eq = self.spec.combine(X, self.spec.project(X), (1.0 / self.w)[None, :])
        self._cache: dict[float, tuple] = {}

    @property
    def zetas(self) -> np.ndarray:
        return damping_ratios(self.m, self.w, self.g)

    def _rates(self) -> np.ndarray:
        return -np.linalg.eigvals(mode_drift(self.m, self.w, self.g)).real.max(axis=1)

    def decay_rate(self) -> float:
        """Slowest decay rate (per tau) over the modes: minus the real part of each mode's slowest
        eigenvalue of its 2x2 drift."""
        return float(self._rates().min())

    def position_response(self, t) -> np.ndarray:
        """max over the modes within 1.5x of the slowest rate of |q_k(t)| for q_k(0) = 1 at rest,
        at each time in t (any other mode has decayed by e^{-0.5 r t} more by then)."""
        rates = self._rates()
        near = rates <= 1.5 * float(rates.min())
        F = np.unique(np.round(mode_drift(self.m[near], self.w[near], self.g[near]), 12), axis=0)
        t = np.atleast_1d(np.asarray(t, float))
        return np.abs(expm_batch(F[None] * t[:, None, None, None])[..., 0, 0]).max(axis=1)

    def settle_time(self, tol: float = MODE_DECAY_TOL) -> float:
        """Time (tau) after which every mode's position, displaced by 1 from rest, stays within tol.
        e^{-r t} alone is not enough here: a critically damped mode decays as (1 + r t) e^{-r t}
        (ln(1e6) / r underestimates it by ~20 %), an underdamped one with an envelope
        sqrt(1 + (r / omega)^2) e^{-r t}."""
        r = self.decay_rate()
        worst = self.position_response
        grid = np.linspace(0.0, 3.0 * settling_time(r, tol), 3001)
        above = np.flatnonzero(worst(grid) > tol)
        if above.size == 0:
            return 0.0
        lo, hi = grid[above[-1]], grid[min(above[-1] + 1, grid.size - 1)]
        for _ in range(50):  # bisection on the last crossing
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if worst(mid)[0] > tol else (lo, mid)
        return float(hi)

    def _trans(self, h: float):
        if h not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            Phi, S = mode_transition(self.m, self.w, self.g, h, self.kappa)
            self._cache[h] = (Phi, chol2(S))
        return self._cache[h]

    def step(self, q, v, h, rng):
        if h == 0:
            return q.copy(), v.copy()
        Phi, L = self._trans(float(h))
        d = q - self.q_eq
        n = q.shape[0]
        if self.kappa > 0:
            z = rng.standard_normal((n, 2))
            X = np.column_stack([d, v, z])
        else:
            X = np.column_stack([d, v])
        P = self.spec.project(X)
        T = X.shape[1]
        Fq = np.zeros((T, Phi.shape[0]))
        Fv = np.zeros((T, Phi.shape[0]))
        Fq[0], Fq[1] = Phi[:, 0, 0], Phi[:, 0, 1]
        Fv[0], Fv[1] = Phi[:, 1, 0], Phi[:, 1, 1]
        if self.kappa > 0:
            Fq[2] = L[:, 0, 0]
            Fv[2], Fv[3] = L[:, 1, 0], L[:, 1, 1]
        q_new = self.q_eq + self.spec.combine(X, P, Fq)
        v_new = self.spec.combine(X, P, Fv)
        return q_new, v_new

    def run(self, t, q0, v0, times, rng):
        """Advance from (q0, v0) to t, recording at `times`. Returns (q, v, Q_traj, V_traj)."""
        q, v, now = q0.copy(), v0.copy(), 0.0
        stops = [] if times is None else list(times)
        Qs, Vs = [], []
        for target in stops + [t]:
            dt = 0.0 if target == now else target - now
            q, v = self.step(q, v, dt, rng)
            now = target
            Qs.append(q)
            Vs.append(v)
        if times is None:
            return q, v, None, None
        return q, v, np.array(Qs[:-1]).reshape(len(stops), -1), np.array(Vs[:-1]).reshape(len(stops), -1)
