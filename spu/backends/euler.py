"""Euler–Maruyama backend: the paper's own simulator of the SPU (Appendix D), matrix-free.

    x_{k+1} = x_k - h (A x_k - b) + sqrt(2 kappa0 h) z_k,   z_k ~ N(0, I)

using only ``problem.matvec``, so it costs O(cost of A v) per step and never a decomposition.
It is *not* exact: the mean carries an O(h) error and the stationary covariance is
kappa0 A^-1 (I - h A / 2)^-1 instead of kappa0 A^-1. It diverges when h > 2 / lambda_max(A).

options: ``dt`` step in tau (default 0.1, the paper's delta t); ``limits`` (spu.limits.Limits):
the t / dt steps are checked against it before the step grid is made.
The step grid (spu/core/steps.py) is k*dt, shortened at the end and split at recording times.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import ProblemError
from ..core.steps import record_map, step_points
from ..limits import Limits, transient_steps
from .base import Backend, BackendRun
from .ou import check_run_args

DEFAULT_DT = 0.1
CHECK_EVERY = 256  # steps between divergence checks


def run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun:
    t, x0, kappa0, times = check_run_args(problem, t, x0, kappa0, times, allow_inf=False)
    options = options or {}
    dt = float(options.get("dt", DEFAULT_DT))
    if not np.isfinite(dt) or dt <= 0:
        raise ProblemError(f"euler option dt must be finite and > 0, got {dt}")
    (options.get("limits") or Limits()).check_steps(
        f"euler to t = {t:g} tau in steps of dt = {dt:g}", transient_steps(t, dt)
    )
    pts = step_points(t, dt, times)
    rng = np.random.default_rng(seed)
    b = problem.b
    x = x0.copy()
    # rec_at[i] = indices j of the requested times that step boundary i lands on.
    traj = [] if times is None else [None] * len(times)
    rec_at = record_map(pts, times)
    for j in rec_at.get(0, []):
        traj[j] = x.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, pts.size):
            h = pts[i] - pts[i - 1]
            x = x - h * (problem.matvec(x) - b)
            if kappa0 > 0:
                x += np.sqrt(2.0 * kappa0 * h) * rng.standard_normal(x.shape[0])
            for j in rec_at.get(i, []):
                traj[j] = x.copy()
            if (i % CHECK_EVERY == 0 or i == pts.size - 1) and not np.isfinite(x).all():
                raise ProblemError(
                    f"Euler–Maruyama diverged after {i} steps at t={pts[i]:.4g}: step dt={dt} "
                    f"exceeds the stability limit 2/lambda_max(A); use a smaller dt or the ou backend"
                )
    trajectory = None if times is None else np.array(traj).reshape(len(times), problem.n)
    return BackendRun(x=x, times=times, trajectory=trajectory, extra={"steps": int(pts.size - 1), "dt": dt})


class EulerBackend(Backend):
    name = "euler"
    options = frozenset({"dt", "limits"})
    run = staticmethod(run)


BACKEND = EulerBackend()
