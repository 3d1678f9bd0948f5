"""The contract every SPU backend fulfils.

A backend is a module with ``NAME`` and a function

    run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun

* ``problem``: a validated DenseProblem / FactoredProblem / GGNProblem (spu.core.problems).
* ``t``: analog time in units of tau (>= 0).  ``x0``: start state (float64, length n).
* ``kappa0``: noise level; the dynamics are dx = -(A x - b) ds + sqrt(2 kappa0) dW with s = time/tau,
  so the stationary law is N(A^-1 b, kappa0 A^-1).
* ``seed``: int or None. Same seed -> same noisy run.
* ``times``: None (final state only) or a 1-D increasing array of times in tau, 0 <= times <= t,
  at which the trajectory is recorded.
* ``options``: backend-specific dict (e.g. Euler step, ngspice topology/design/timeout).

A backend whose dynamics are not first order with rates eig(A) also offers

    settle_time(problem, tol, options) -> float

the time (tau) its slowest mode takes to decay to tol; SPU.settling_time (and t = "auto") uses it,
the others get spu.core.spectral.settling_time(lambda_min(A), tol).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class BackendRun:
    x: np.ndarray
    times: np.ndarray | None = None
    trajectory: np.ndarray | None = None  # shape (len(times), n)
    netlist_path: str | None = None
    report: dict | None = None
    # Resistors the built circuit programs for A (circuit backends); None: the timing model
    # counts them from the problem's form (spu/timing.resistor_count).
    programmed_resistors: int | None = None
    extra: dict = field(default_factory=dict)
