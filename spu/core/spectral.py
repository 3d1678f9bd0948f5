"""Exact linear algebra of the SPU's drift matrix A, written once for every backend.

A is symmetric positive definite in one of two forms, and every operator the dynamics need is a
function f(A) of it, so one symmetric decomposition gives them all:

* dense:    A = Q diag(eigs) Q^T (``eigh``, O(N^3) once, O(N^2) per product).
* low rank: A = lam I + U U^T = lam I + P diag(s) P^T with P = U W, W = V diag(s^-1/2), from the
  m x m eigenproblem U^T U = V diag(s) V^T (O(N m^2 + m^3) once, O(N m) per product; P and the
  N x N matrix are never formed). Mode 0 is the bulk eigenvalue lam (multiplicity N - r), modes
  1..r are lam + s, and
      f(A) v = f(lam) v + P [(f(lam + s) - f(lam)) * (P^T v)].
  The *difference* form multiplies P's round-off (largest for the smallest s) by
  f(lam + s) - f(lam) = O(s), so weak modes cannot spoil the lam part.

Both spectra offer the same vocabulary: ``eigs``/``mult`` (distinct eigenvalues and their
multiplicities), ``project`` (B^T X), ``lift`` (B c), ``apply`` (f(A) v) and ``combine`` (a sum of
f_t(A) X[:, t]), with B = Q or P. Also here: the OU transition variance and the settling time.
"""

from __future__ import annotations

import math

import numpy as np

# Modes of U^T U below this fraction of the largest are numerically zero (round-off of a
# rank-deficient U); dropping one changes A by at most that much relative to ||U||^2.
DROP_RTOL = 1e-12

# A mode has settled once it has decayed to this fraction of its start (component report, and the
# default solve time of a sweep): ln(1e6) = 13.8 time constants of the slowest mode.
MODE_DECAY_TOL = 1e-6


def settling_time(rate: float, tol: float = MODE_DECAY_TOL) -> float:
    """Time (in tau) for a mode decaying at `rate` (per tau) to fall to `tol` of its start."""
    return math.log(1 / tol) / rate


def ou_transition_var(a, dt, kappa0):
    """Variance kappa0 (1 - e^{-2 a dt}) / a of an OU mode with rate a after time dt (expm1: exact
    for small a dt; dt = inf gives the stationary kappa0 / a)."""
    return kappa0 * -np.expm1(-2.0 * a * dt) / a


class DenseSpectrum:
    """A = Q diag(eigs) Q^T."""

    def __init__(self, A: np.ndarray):
        self.eigs, self.Q = np.linalg.eigh(A)
        self.mult = np.ones(self.eigs.shape[0])

    def project(self, X: np.ndarray) -> np.ndarray:
        return self.Q.T @ X

    def lift(self, c: np.ndarray) -> np.ndarray:
        return self.Q @ c

    def apply(self, v: np.ndarray, f_modes: np.ndarray) -> np.ndarray:
        """f(A) v given f at eigs."""
        return self.Q @ (f_modes * (self.Q.T @ v))

    def combine(self, X: np.ndarray, P: np.ndarray, F: np.ndarray) -> np.ndarray:
        """sum_t f_t(A) X[:, t] given P = project(X) and F[t, k] = f_t(eigs[k])."""
        return self.Q @ np.einsum("kt,tk->k", P, F)

    def matrix_function(self, f: np.ndarray) -> np.ndarray:
        return (self.Q * f) @ self.Q.T


class LowRankSpectrum:
    """A = lam I + U U^T = lam I + P diag(s) P^T, P = U W (implicit)."""

    def __init__(self, U: np.ndarray, lam: float, gram: np.ndarray | None = None):
        U = np.asarray(U, dtype=np.float64)  # m x m algebra in float64 even for float32 factors
        # U^T U is the only O(N m^2) work; a caller that has it (FactoredProblem.gram) saves it.
        s, V = np.linalg.eigh(U.T @ U if gram is None else gram)
        smax = float(s[-1]) if s.size else 0.0
        keep = s > DROP_RTOL * smax if smax > 0 else np.zeros(s.shape, bool)
        self.U, self.s = U, s[keep]
        # P = U W is kept implicit: P^T v = W^T (U^T v), P c = U (W c). Forming P would cost
        # another N m^2 product and N m memory for nothing (~0.1 s and 50 MB at N=1e5, m=64).
        self.W = V[:, keep] / np.sqrt(self.s)
        self.lam = float(lam)
        self.eigs = np.concatenate([[self.lam], self.lam + self.s])
        self.mult = np.concatenate([[U.shape[0] - self.s.size], np.ones(self.s.size)])

    @property
    def rank(self) -> int:
        return self.s.shape[0]

    def project(self, X: np.ndarray) -> np.ndarray:
        return self.W.T @ (self.U.T @ X)

    def lift(self, c: np.ndarray) -> np.ndarray:
        return self.U @ (self.W @ c)

    def apply(self, v: np.ndarray, f_lam, f_diff: np.ndarray) -> np.ndarray:
        """f(A) v given f(lam) and f(lam + s) - f(lam) (pass the difference computed without
        cancellation where the caller can)."""
        return f_lam * v + self.U @ (self.W @ (f_diff * (self.W.T @ (self.U.T @ v))))

    def combine(self, X: np.ndarray, P: np.ndarray, F: np.ndarray) -> np.ndarray:
        """sum_t f_t(A) X[:, t] given P = project(X) and F[t, k] = f_t(eigs[k])."""
        bulk = X @ F[:, 0]
        diff = np.einsum("kt,tk->k", P, F[:, 1:] - F[:, :1])
        return bulk + self.U @ (self.W @ diff)
