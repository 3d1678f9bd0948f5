"""BAOAB: the matrix-free integrator of the resistive encoding (one A v product per step)."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ProblemError
from ..steps import record_map, step_points
from .params import OscillatorParams

DIVERGED = 1e100  # |q| beyond this: the integrator is unstable


class BAOAB:
    """BAOAB splitting for the resistive encoding, using only problem.matvec (one product per step).

        v += h/2 F(q)/m;  q += h/2 v;  v = c v + sqrt(kappa (1 - c^2) / m) z  (c = e^{-gamma h/m});
        q += h/2 v;  v += h/2 F(q)/m,        F(q) = -(A q - b).

    Stable for h < 2 sqrt(m / lambda_max(A)). For this quadratic potential the stationary law of q is
    exactly N(A^-1 b, kappa A^-1) at any stable h; v has variance (kappa/m)/(1 - h^2 a/(4m)) per mode."""

    def __init__(self, problem, params: OscillatorParams, kappa: float, gamma: float):
        if params.coupling != "resistive":
            raise ProblemError(
                "the matrix-free BAOAB integrator needs coupling='resistive' (capacitive coupling "
                "puts A in the mass matrix, which would need a solve with A every step); use method='exact'"
            )
        self.p, self.m, self.gamma, self.kappa = problem, params.mass, gamma, float(kappa)

    def force(self, q):
        return -(self.p.matvec(q) - self.p.b)

    def run(self, t, q0, v0, times, rng, dt):
        pts = step_points(t, dt, times)  # the same step grid as Euler-Maruyama
        q, v = q0.copy(), v0.copy()
        Fq = self.force(q)
        rec = record_map(pts, times)
        Qs = None if times is None else np.zeros((len(times), q.shape[0]))
        Vs = None if times is None else np.zeros((len(times), q.shape[0]))
        for j in rec.get(0, []):
            Qs[j], Vs[j] = q, v
        m = self.m
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(1, pts.size):
                h = pts[i] - pts[i - 1]
                v = v + 0.5 * h * Fq / m
                q = q + 0.5 * h * v
                c = math.exp(-self.gamma * h / m)
                if self.kappa > 0:
                    v = c * v + math.sqrt(self.kappa * (1 - c * c) / m) * rng.standard_normal(q.shape[0])
                else:
                    v = c * v
                q = q + 0.5 * h * v
                Fq = self.force(q)
                v = v + 0.5 * h * Fq / m
                for j in rec.get(i, []):
                    Qs[j], Vs[j] = q, v
                # Divergence: non-finite, or grown past any physical value (an unstable step grows
                # geometrically and may not reach inf within the run).
                if (i % 64 == 0 or i == pts.size - 1) and not (np.abs(q).max() < DIVERGED):
                    raise ProblemError(
                        f"BAOAB diverged after {i} steps: dt={dt} exceeds the stability limit "
                        f"2 sqrt(m / lambda_max(A)); use a smaller dt or method='exact'"
                    )
        return q, v, Qs, Vs, int(pts.size - 1)
