"""Euler–Maruyama backend: the paper's own simulator of the SPU (Appendix D), matrix-free.

    x_{k+1} = x_k - h (A x_k - b) + sqrt(2 kappa0 h) z_k,   z_k ~ N(0, I)

using only ``problem.matvec``, so it costs O(cost of A v) per step and never a decomposition.
It is *not* exact: the mean carries an O(h) error and the stationary covariance is
kappa0 A^-1 (I - h A / 2)^-1 instead of kappa0 A^-1. It diverges when h > 2 / lambda_max(A).

options: ``dt`` step in tau (default 0.1, the paper's delta t).
The step grid is k*dt; the last step is shortened when t is not a multiple of dt, and a requested
recording time that falls between grid points splits that step so the state is recorded exactly
there (so recording times change the discretisation slightly, never the physics).
"""
from __future__ import annotations

import numpy as np

from ..errors import ProblemError
from .base import BackendRun
from .ou import check_run_args

NAME = "euler"
DEFAULT_DT = 0.1
# Two step boundaries closer than this fraction of dt are the same point (float round-off of k*dt).
SNAP_RTOL = 1e-9
CHECK_EVERY = 256  # steps between divergence checks


def step_points(t: float, dt: float, times: np.ndarray | None) -> np.ndarray:
    """Boundaries 0 = p_0 < ... < p_K = t of the Euler steps, containing every requested time."""
    tol = SNAP_RTOL * dt
    k = int(np.floor(t / dt + SNAP_RTOL))
    grid = np.arange(k + 1) * dt
    exact = [t] if times is None else [t, *times]  # points that must be hit exactly
    pts = np.concatenate([grid, exact])
    is_exact = np.concatenate([np.zeros(grid.size, bool), np.ones(len(exact), bool)])
    order = np.argsort(pts, kind="stable")
    out: list[float] = []
    out_exact: list[bool] = []
    for p, e in zip(pts[order], is_exact[order]):
        if p > t + tol:
            continue
        if out and p - out[-1] <= tol:
            if e and not out_exact[-1]:  # snap a grid point onto a requested time
                out[-1], out_exact[-1] = p, True
            continue
        out.append(p)
        out_exact.append(e)
    out[0] = 0.0
    return np.array(out)


def _nearest(pts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index of the boundary each requested time was snapped onto (or is equal to)."""
    if pts.size == 1:
        return np.zeros(q.shape, int)
    i = np.clip(np.searchsorted(pts, q), 1, pts.size - 1)
    return np.where(np.abs(pts[i - 1] - q) <= np.abs(pts[i] - q), i - 1, i)


def run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun:
    t, x0, kappa0, times = check_run_args(problem, t, x0, kappa0, times, allow_inf=False)
    options = options or {}
    dt = float(options.get("dt", DEFAULT_DT))
    if not np.isfinite(dt) or dt <= 0:
        raise ProblemError(f"euler option dt must be finite and > 0, got {dt}")
    pts = step_points(t, dt, times)
    rng = np.random.default_rng(seed)
    b = problem.b
    x = x0.copy()
    # rec_at[i] = indices j of the requested times that step boundary i lands on.
    traj = [] if times is None else [None] * len(times)
    rec_at: dict[int, list[int]] = {}
    if times is not None:
        for j, i in enumerate(_nearest(pts, times)):
            rec_at.setdefault(int(i), []).append(j)
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
    return BackendRun(x=x, times=times, trajectory=trajectory,
                      extra={"steps": int(pts.size - 1), "dt": dt})
