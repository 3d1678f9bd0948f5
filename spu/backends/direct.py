"""Direct backend: the answer the SPU relaxes towards, x = A^-1 b, by a digital solve.

It is the t -> infinity, kappa0 = 0 limit of the device (what ngspice's `.op` gives), so it
IGNORES t, x0, kappa0 and seed. With `times`, every trajectory row is that same fixed point.

* DenseProblem: Cholesky (cho_factor / cho_solve), O(N^3).
* FactoredProblem / GGNProblem: symmetric Woodbury, O(N m^2 + m^3), never forming A:
      (lam I + U U^T)^-1 v = lam^-1 [v - U (lam I + U^T U)^-1 U^T v]
  The m x m system is solved in float64: in float32 with small lam its residual is ~1e-4.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from ..core.errors import ProblemError
from .base import Backend, BackendRun


def solve(problem, rhs) -> np.ndarray:
    """A^-1 rhs for any problem type; rhs is a vector (N,) or a block of columns (N, k)."""
    rhs = np.asarray(rhs, dtype=np.float64)
    if rhs.ndim not in (1, 2) or rhs.shape[0] != problem.n:
        raise ProblemError(f"rhs has shape {rhs.shape} but the problem needs ({problem.n},) or ({problem.n}, k)")
    f = problem.factored()
    if f is None:
        return linalg.cho_solve(linalg.cho_factor(problem.A, lower=True), rhs)
    U = np.asarray(f.U, dtype=np.float64)
    K = np.array(f.gram_matrix(), dtype=np.float64)  # a copy: lam goes onto its diagonal
    K[np.diag_indices_from(K)] += f.lam  # lam I + U^T U: SPD since lam > 0
    return (rhs - U @ linalg.cho_solve(linalg.cho_factor(K, lower=True), U.T @ rhs)) / f.lam


def run(problem, *, t=None, x0=None, kappa0=0.0, seed=None, times=None, options=None) -> BackendRun:
    x = solve(problem, problem.b)
    if times is None:
        return BackendRun(x=x)
    times = np.asarray(times, dtype=np.float64)
    return BackendRun(x=x, times=times, trajectory=np.tile(x, (times.shape[0], 1)))


class DirectBackend(Backend):
    """Exact: t = inf is its fixed point (which it returns for any t)."""

    name = "direct"
    exact = True
    run = staticmethod(run)


BACKEND = DirectBackend()
