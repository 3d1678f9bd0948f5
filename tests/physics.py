"""Theory used by the physics tests: test problems, OU statistics and their sampling errors."""

from __future__ import annotations

import numpy as np
from cases import random_ggn_problem
from scipy.linalg import expm

from spu.core.problems import DenseProblem, FactoredProblem


def random_spd(n: int, seed: int, lam_min: float = 0.5) -> np.ndarray:
    """SPD with mixed-sign off-diagonal entries and smallest eigenvalue >= lam_min."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, n))
    A = M @ M.T / n + lam_min * np.eye(n)
    if n > 1 and A[0, 1] > 0:
        # D A D with D = diag(1, -1, 1, ...) keeps A SPD and makes sure a coupling is negative.
        d = np.ones(n)
        d[1] = -1
        A = d[:, None] * A * d[None, :]
    return A


def spd_spectrum(n: int, seed: int, lo: float, hi: float) -> np.ndarray:
    """Mixed-sign SPD matrix (random_spd) rescaled to a spectrum of exactly [lo, hi]."""
    A = random_spd(n, seed, 0.3)
    w = np.linalg.eigvalsh(A)
    return lo * np.eye(n) + (A - w[0] * np.eye(n)) * (hi - lo) / (w[-1] - w[0])


def problem(kind: str, n: int, seed: int, lam: float = 0.5):
    rng = np.random.default_rng(seed + 1000)
    b = rng.normal(size=n)
    if kind == "dense":
        return DenseProblem(random_spd(n, seed, lam), b)
    if kind == "factored":
        return FactoredProblem(rng.normal(size=(n, max(2, n // 4))) / np.sqrt(n) * 2, lam, b)
    return random_ggn_problem(n, 3, 3, lam, rng)  # batch 3, 3 classes: m = 9


def problem_for(topology: str, n: int, seed: int):
    kind = {"ideal": "dense", "dense": "dense", "factored": "factored", "crossbar": "ggn"}[topology]
    return problem(kind, n, seed)


def exact_mean(A: np.ndarray, b: np.ndarray, x0: np.ndarray, t: float) -> np.ndarray:
    xs = np.linalg.solve(A, b)
    return expm(-A * t) @ (x0 - xs) + xs


def trapezoid_bound(A: np.ndarray, x0: np.ndarray, b: np.ndarray, t: float, h: float) -> float:
    """Bound on the error of a trapezoidal integration with steps <= h, read back by linear
    interpolation: global error t*h^2/12*|x'''| plus interpolation h^2/8*|x''|, with
    |x^(k)| <= lam_max^k |x0 - x*|; doubled for ngspice's backward-Euler start step."""
    lam = np.linalg.eigvalsh(A)[-1]
    dist = np.linalg.norm(x0 - np.linalg.solve(A, b))
    return 2 * h**2 * (t * lam**3 / 12 + lam**2 / 8) * dist


def asbuilt_against_ngspice(p, topology: str, design, x0: np.ndarray, times: np.ndarray, t: float):
    """Trajectories of asbuilt and ngspice for the same circuit, and the bound their difference
    must keep at each time: (asbuilt, ngspice, bound, ideal ou trajectory).

    The bound is 2 ngspice errors (its ideal circuit against the exact OU: the realised system
    differs by a few percent, so 2x covers it) plus 2 splitting errors (asbuilt at step 0.25
    against 0.125: ~4/3 of the change for a second-order scheme in its asymptotic range, 2x leaves
    room for h = 0.25 being just outside it) plus one ADC LSB (both read through the same ADC: a
    value near a code boundary may round apart)."""
    from spu import SPU

    ng = SPU("ngspice", topology=topology, design=design).run(p, t=t, x0=x0, times=times)
    ab = SPU("asbuilt", topology=topology, design=design).run(p, t=t, x0=x0, times=times)
    half = SPU("asbuilt", topology=topology, design=design, step=0.125).run(p, t=t, x0=x0, times=times)
    split = np.abs(ab.trajectory - half.trajectory).max(axis=1)
    ideal = SPU("ou").run(p, t=t, x0=x0, times=times)
    ng_ideal = SPU("ngspice", topology=topology).run(p, t=t, x0=x0, times=times)
    ng_err = np.abs(ng_ideal.trajectory - ideal.trajectory).max(axis=1)
    lsb = 2 * design.v_fullscale / (2**design.bits_adc - 1) if design.bits_adc else 0.0
    return ab.trajectory, ng.trajectory, 2 * ng_err + 2 * split + lsb, ideal.trajectory


def sampled_mean_cov_sigma(A: np.ndarray, kappa: float, dt: float, K: int):
    """Standard errors of the sample mean and sample covariance of K samples spaced dt of the
    stationary OU process dx = -(Ax-b)ds + sqrt(2 kappa) dW.

    The autocovariance is C(k dt) = V diag(kappa/l e^{-l |k| dt}) V^T, and for large K
      Var(mean) = (1/K) sum_k C(k dt),
      Var(C_ij) = (1/K) sum_k [C_ii(k) C_jj(k) + C_ij(k) C_ji(k)],
    with sum over all integers k of r^|k| = (1+r)/(1-r)."""
    lam, V = np.linalg.eigh(A)
    r1 = np.exp(-lam * dt)
    mean_cov = (V * (kappa / lam * (1 + r1) / (1 - r1))) @ V.T / K
    rr = np.exp(-(lam[:, None] + lam[None, :]) * dt)
    S = (kappa / lam)[:, None] * (kappa / lam)[None, :] * (1 + rr) / (1 - rr)  # sum_k for mode pair
    n = len(lam)
    var = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            a = np.outer(V[i] ** 2, V[j] ** 2)  # C_ii C_jj terms
            c = np.outer(V[i] * V[j], V[i] * V[j])  # C_ij C_ji terms
            var[i, j] = np.sum(S * (a + c)) / K
    return mean_cov, np.sqrt(var)
