"""Drawing helpers of the sweeps' PNG figures (matplotlib, Agg; no pyplot state, so safe in any
process). Each kind draws its own figure (SweepKind.plot in analysis/sweep_kinds/)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def column(rows, col):
    return np.array([float(r[col]) for r in rows])


def ok_rows(rows):
    return [r for r in rows if r["status"] == "ok"]


def title(spec: dict) -> str:
    p = spec["problem"]
    where = f"{spec['backend']}" + (f" ({spec['topology']})" if spec.get("topology") else "")
    return (
        f"{spec['kind']} sweep: {p['form']} problem n={p['n']}, lam={p['lam']:g}, "
        f"lambda_min={spec['lambda_min']:.3g}; {where}"
    )


def new_figure(ncols: int = 1):
    fig = Figure(figsize=(5.2 * ncols + 0.6, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def positive(v):
    """Log axes: zero errors (exact runs) drawn at a visible floor instead of vanishing."""
    v = np.asarray(v, float)
    pos = v[np.isfinite(v) & (v > 0)]
    floor = pos.min() / 3 if pos.size else 1e-16
    return np.where(v > 0, v, floor)
