"""Evaluate one sweep point in a worker process (local or Dask): the kind's design, one SPU run
against the test problem of sweep_point, the kind's result columns.

``evaluate_point(spec_json, point)`` takes the spec as JSON; the problem is cached per spec, so a
worker builds it once for all its points. Apart from sweep_point because the kinds use that
module's helpers and this one asks the kinds."""

from __future__ import annotations

import json
import math
import os
import socket
import time

import numpy as np

from spu.core.errors import NgspiceError, NgspiceTimeout
from spu.limits import DEFAULT_STEPS, Limits

from .sweep_kinds import circuit_backend, sweep_kind
from .sweep_point import _context

# One ngspice session per worker process, shared by the SPUs of all its points: one child is
# started per worker, not per point (spu/backends/ngspice.py).
_WORKER_STATE: dict = {}


def evaluate_point(spec_json: str, pt: dict) -> dict:
    """Run one point. Returns {"row": dict or None, "error": message or None, "retry": bool,
    "wall_s", "host", "pid"}. Only deterministic outcomes give a row (see the module docstring)."""
    from spu.core.errors import DesignError, ProblemError
    from spu.device import SPU

    start = time.perf_counter()
    spec = json.loads(spec_json)
    kind = sweep_kind(spec["kind"])
    ctx = _context(spec_json)
    row = dict(pt)  # the point's grid columns and its id
    info = {"row": None, "error": None, "retry": False, "host": socket.gethostname(), "pid": os.getpid()}
    # A point's own time and noise level, else the sweep's (time: one kappa0; the others: one t).
    t = pt.get("t_tau", spec.get("t_tau"))
    kappa0 = pt.get("kappa0", spec.get("kappa0", 0.0))
    seed = pt.get("seed")
    design = kind.design(pt)
    options = {}
    if circuit_backend(spec["backend"]):
        # Held (TRRANDOM) noise: its breakpoints fix the time grid, so two points with the same
        # seed get common random numbers at any kappa0 (the noise sweep's exact sqrt(kappa0)
        # scaling); a table's grid follows ngspice's step control, which the noise level moves.
        options = {
            "report": kind.report,
            "timeout": spec.get("timeout", 600.0),
            "noise": "held",
            "limits": Limits(steps=spec.get("max_steps", DEFAULT_STEPS)),
        }
    try:
        spu = SPU(spec["backend"], topology=spec["topology"], design=design, kappa0=kappa0, **options)
        spu.backend_state = _WORKER_STATE
        res = spu.run(ctx.problem, t=t, seed=seed)
        row["rel_error"] = float(np.linalg.norm(res.x - ctx.x_star)) / ctx.norm
        row["status"] = "ok"
    except NgspiceTimeout as exc:
        info.update(error=f"{type(exc).__name__}: {exc}", retry=True, wall_s=time.perf_counter() - start)
        return info
    except (NgspiceError, DesignError, ProblemError) as exc:
        res = None
        row["rel_error"] = math.nan
        msg = str(exc)
        row["status"] = "diverged" if "non-finite" in msg or "diverged" in msg else f"failed: {type(exc).__name__}"
        info["error"] = f"{type(exc).__name__}: {msg}"
    kind.results(row, res, ctx, spec, t, kappa0)
    info["row"] = row
    info["wall_s"] = time.perf_counter() - start
    return info
