"""Underdamped Langevin backend: the coupled-oscillator SPU without a circuit (spu/core/underdamped/).

    SPU("langevin", oscillator=dict(zeta=0.5), method="exact").run(problem, t, x0)

Dynamics (s = time / tau):  q' = v,  M v' = -(K q - f) - Gamma v + sqrt(2 kappa0 Gamma) xi.
Resistive coupling (default): K = A, f = b, M = m I, Gamma = gamma I; the returned state is the
position q, stationary law N(A^-1 b, kappa0 A^-1) (velocities N(0, kappa0/m I)).
Capacitive coupling: M = A, K = k I, f = 0 (b must be 0); the returned state is the velocity v,
i.e. what the chip reads as its node voltages, stationary law N(0, kappa0 A^-1).

options:
  oscillator  OscillatorParams or dict(mass, gamma | zeta, coupling, stiffness); default m = 1,
              zeta = 1 (critical damping of the slowest mode)
  mass, gamma, zeta, coupling, stiffness   the same, one by one (override `oscillator`)
  method      "exact" (default: exact Gaussian transitions, eigh or low-rank) or "baoab"
              (matrix-free, one A v per step; resistive coupling only)
  dt          BAOAB step in tau (default 0.05); stable below 2 sqrt(m / lambda_max)
  v0          initial velocity (default 0)
  limits      spu.limits.Limits: BAOAB's t / dt steps are checked against it before stepping

extra: "velocity" (final), "velocities" (at `times`), "gamma", "zeta_min"/"zeta_max" (damping
ratios over the modes), "method", "state" ("position" | "velocity").
"""

from __future__ import annotations

import numpy as np

from ..core.errors import ProblemError
from ..core.underdamped import BAOAB, ExactLangevin, OscillatorParams
from ..limits import Limits, transient_steps
from .base import Backend, BackendRun
from .ou import check_run_args

DEFAULT_DT = 0.05
_KEYS = ("mass", "gamma", "zeta", "coupling", "stiffness")


def params_from_options(options: dict) -> OscillatorParams:
    return OscillatorParams.make(options.get("oscillator"), **{k: options.get(k) for k in _KEYS})


def settle_time(problem, tol, options) -> float:
    """Settling time (tau) of the second-order dynamics, for t = "auto"."""
    return ExactLangevin(problem, params_from_options(dict(options or {})), 0.0).settle_time(tol)


def run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun:
    t, x0, kappa0, times = check_run_args(problem, t, x0, kappa0, times)
    options = dict(options or {})
    # Like the other numeric backends, options meant for the circuit (keep, timeout, ...) are ignored.
    params = params_from_options(options)
    method = options.get("method", "exact")
    v0 = options.get("v0")
    v0 = np.zeros(problem.n) if v0 is None else np.asarray(v0, dtype=float)
    if v0.shape != (problem.n,) or not np.isfinite(v0).all():
        raise ProblemError(f"v0 must be a finite vector of length {problem.n}")
    rng = np.random.default_rng(seed)
    exact = ExactLangevin(problem, params, kappa0)  # also validates capacitive b = 0
    capacitive = params.coupling == "capacitive"
    # Capacitive: the read-out x is the velocity (node voltage); x0 sets it, the fluxes start at 0.
    q0, vv0 = (np.zeros(problem.n), x0) if capacitive else (x0, v0)
    extra = {
        "gamma": exact.gamma,
        "zeta_min": float(exact.zetas.min()),
        "zeta_max": float(exact.zetas.max()),
        "method": method,
        "state": "velocity" if capacitive else "position",
        "coupling": params.coupling,
    }
    if method == "exact":
        q, v, Q, V = exact.run(t, q0, vv0, times, rng)
    elif method == "baoab":
        if not np.isfinite(t):
            raise ProblemError("t = inf needs method='exact'")
        dt = float(options.get("dt", DEFAULT_DT))
        if not np.isfinite(dt) or dt <= 0:
            raise ProblemError(f"langevin option dt must be finite and > 0, got {dt}")
        (options.get("limits") or Limits()).check_steps(
            f"baoab to t = {t:g} tau in steps of dt = {dt:g}", transient_steps(t, dt)
        )
        q, v, Q, V, steps = BAOAB(problem, params, kappa0, exact.gamma).run(t, q0, vv0, times, rng, dt)
        extra.update(steps=steps, dt=dt)
    else:
        raise ProblemError(f"langevin method must be 'exact' or 'baoab', got {method!r}")
    if capacitive:
        extra["position"] = q
        return BackendRun(x=v, times=times, trajectory=V, extra=extra)
    extra["velocity"] = v
    if times is not None:
        extra["velocities"] = V
    return BackendRun(x=q, times=times, trajectory=Q, extra=extra)


class LangevinBackend(Backend):
    name = "langevin"
    exact = True  # method "exact" reaches t = inf; BAOAB refuses it in run()
    options = frozenset({"oscillator", *_KEYS, "method", "dt", "v0", "limits"})
    run = staticmethod(run)
    settle_time = staticmethod(settle_time)

    def oscillator(self, topology):
        return True


BACKEND = LangevinBackend()
