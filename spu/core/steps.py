"""The step grid shared by the time-stepping integrators (Euler-Maruyama, BAOAB).

The grid is k*dt; the last step is shortened when t is not a multiple of dt, and a requested
recording time that falls between grid points splits that step so the state is recorded exactly
there (so recording times change the discretisation slightly, never the physics).
"""

from __future__ import annotations

import numpy as np

# Two step boundaries closer than this fraction of dt are the same point (float round-off of k*dt).
SNAP_RTOL = 1e-9


def step_points(t: float, dt: float, times: np.ndarray | None) -> np.ndarray:
    """Boundaries 0 = p_0 < ... < p_K = t of the steps, containing every requested time."""
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


def nearest_point(pts: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index of the boundary each requested time was snapped onto (or is equal to)."""
    if pts.size == 1:
        return np.zeros(q.shape, int)
    i = np.clip(np.searchsorted(pts, q), 1, pts.size - 1)
    return np.where(np.abs(pts[i - 1] - q) <= np.abs(pts[i] - q), i - 1, i)


def record_map(pts: np.ndarray, times: np.ndarray | None) -> dict[int, list[int]]:
    """rec[i] = indices j of the requested times that step boundary i lands on."""
    rec: dict[int, list[int]] = {}
    if times is not None:
        for j, i in enumerate(nearest_point(pts, times)):
            rec.setdefault(int(i), []).append(j)
    return rec
