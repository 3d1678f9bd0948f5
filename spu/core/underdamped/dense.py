"""DenseLangevin: the exact solution for general (also non-symmetric) M, K, Gamma and any force-noise
covariance, from the 2N x 2N drift. O(N^3), for small N: it checks the ngspice runs and the
per-mode solver."""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ..errors import ProblemError
from .modes import expm_batch
from .params import OscillatorParams


class DenseLangevin:
    """Exact solution of M v' = -(K q - f) - G v + noise, q' = v, for general square M, K, G
    (non-symmetric allowed: as-built circuits with tolerances). noise_cov: covariance rate D of the
    force noise (n x n), default 2 kappa G (equilibrium). Small N only (works with 2N x 2N and
    4N x 4N exponentials)."""

    def __init__(self, M, K, G, f, kappa: float = 0.0, noise_cov=None):
        M, K, G = (np.atleast_2d(np.asarray(a, float)) for a in (M, K, G))
        n = K.shape[0]
        self.n = n
        Minv = np.linalg.inv(M)
        self.Minv = Minv
        self.F = np.block([[np.zeros((n, n)), np.eye(n)], [-Minv @ K, -Minv @ G]])
        D = 2.0 * kappa * G if noise_cov is None else np.asarray(noise_cov, float)
        self.D = 0.5 * (D + D.T)
        self.Qn = np.zeros((2 * n, 2 * n))
        self.Qn[n:, n:] = Minv @ self.D @ Minv.T
        self.q_eq = np.linalg.solve(K, np.asarray(f, float))
        self.z_eq = np.concatenate([self.q_eq, np.zeros(n)])
        ev = np.linalg.eigvals(self.F)
        if ev.real.max() >= 0:
            raise ProblemError(
                f"the second-order system is not stable: drift eigenvalue with real part {ev.real.max():.3g}"
            )
        self.rate = float(np.abs(ev).max())

    def stationary_cov(self) -> np.ndarray:
        """Sigma with F Sigma + Sigma F^T + Q = 0 (2n x 2n, q block first)."""
        S = linalg.solve_continuous_lyapunov(self.F, -self.Qn)
        return 0.5 * (S + S.T)

    def transition(self, h: float):
        """(Phi, transition covariance) over time h."""
        n2 = 2 * self.n
        if h == 0:
            return np.eye(n2), np.zeros((n2, n2))
        if self.rate * h <= 1.0:
            blk = np.block([[-self.F, self.Qn], [np.zeros((n2, n2)), self.F.T]])
            E = expm_batch(blk * h)
            Phi = E[n2:, n2:].T
            S = Phi @ E[:n2, n2:]
        else:
            Phi = expm_batch(self.F * h)
            Sinf = self.stationary_cov()
            S = Sinf - Phi @ Sinf @ Phi.T
        return Phi, 0.5 * (S + S.T)

    def mean(self, times, q0, v0) -> tuple[np.ndarray, np.ndarray]:
        """Noiseless (mean) trajectory at `times` (any order): (Q (T, n), V (T, n))."""
        z0 = np.concatenate([q0, v0]) - self.z_eq
        ts = np.atleast_1d(np.asarray(times, float))
        out = np.array([expm_batch(self.F * t) @ z0 for t in ts]) + self.z_eq
        return out[:, : self.n], out[:, self.n :]

    def held_noise_cov(self, hold: float) -> np.ndarray:
        """Stationary covariance of (q, v) at the hold boundaries k*hold when the force noise is held
        constant over each interval (ngspice TRRANDOM: a value of variance D/hold held for `hold`).
        The exact discrete-time chain is z+ = Phi z + Psi xi, Psi = int_0^hold e^{F s} ds B, so the
        covariance solves the discrete Lyapunov equation Sigma = Phi Sigma Phi^T + Psi D Psi^T / hold."""
        n, n2 = self.n, 2 * self.n
        blk = np.zeros((2 * n2, 2 * n2))
        blk[:n2, :n2] = self.F
        blk[:n2, n2:] = np.eye(n2)
        E = expm_batch(blk * hold)
        Phi, Int = E[:n2, :n2], E[:n2, n2:]  # Int = int_0^hold e^{F s} ds
        Bm = np.zeros((n2, n))
        Bm[n:, :] = self.Minv  # the force noise enters the velocity equation through M^-1
        Psi = Int @ Bm
        S = linalg.solve_discrete_lyapunov(Phi, Psi @ self.D @ Psi.T / hold)
        return 0.5 * (S + S.T)


def dense_system(problem, params: OscillatorParams, kappa: float) -> DenseLangevin:
    """The DenseLangevin of a problem under an encoding (for checks against ExactLangevin)."""
    A = problem.matrix()
    ev = np.linalg.eigvalsh(A)
    gamma = params.resolve_gamma(float(ev[0]), float(ev[-1]))
    n = A.shape[0]
    if params.coupling == "resistive":
        M, K, f = params.mass * np.eye(n), A, problem.b
    else:
        M, K, f = A, params.stiffness * np.eye(n), np.zeros(n)
    return DenseLangevin(M, K, gamma * np.eye(n), f, kappa)
