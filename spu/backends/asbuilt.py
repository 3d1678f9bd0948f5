"""As-built backend: the dynamics of the realised circuit, from the component values the netlist
would carry (quantised R, DAC and ADC, seeded tolerances, finite op-amp DC gain, the lam resistor
and capacitance of each cell, kappa0 plus the Johnson current of every resistor), without ngspice.

A circuit backend, like ngspice.py, but it never loads ngspice: circuits/realised.py turns the built
elements into  w dx/ds = -(D x + P Q x - b) + noise,  and spu/core/lowrank_drift.py steps it,
O(N m) per step, exactly where the diagonal is uniform, else by Strang splitting (step error
O(h^2), see there). Noise is white (the limit of ngspice's held noise sources), plus the op-amps'
1/f noise where the design sets a flicker corner (spu/backends/flicker_drive.py), at every op-amp,
with or without the op-amps' swing and slew limits.

options (all optional):
  topology  "factored" (default) | "crossbar"
  design    circuits.Design (default Design())
  step      largest splitting step in tau (default 0.25; unused where the transition is exact)
  limits    spu.limits.Limits: the limited stepper's steps are counted against limits.steps
"""

from __future__ import annotations

import numpy as np

from circuits.design import Design
from circuits.flicker import FlickerProcess, band_for
from circuits.realised import realise
from circuits.topologies import choices, find, get

from ..core.errors import ThermospiceError
from ..core.limited_drift import LimitCheck, LimitedDrift, LimitReached
from ..core.lowrank_drift import SplitTransition
from ..limits import Limits, transient_steps
from .base import BackendRun, CircuitBackend
from .circuit import adc
from .flicker_drive import FlickerDrive, FlickerKnots, KnotPath, amp_count
from .ou import check_run_args

DEFAULT_STEP = 0.25


def problem_form(topology: str | None) -> str:
    return get(topology or default_topology(None)).preferred_form


def default_topology(problem) -> str:
    """factored, also for a GGN problem: U U^T stays positive semi-definite whatever the rounding,
    while a crossbar's quantised H can turn indefinite and the circuit unstable."""
    return "factored"


def transition(problem, topology: str, design: Design, kappa0: float, step: float = DEFAULT_STEP):
    """The realised system and its propagator (reusable for many runs of the same circuit)."""
    rs = realise(problem, topology, design, kappa0=kappa0)
    w = rs.w
    chain = rs.Sn is not None
    m = rs.P.shape[1]
    prop = SplitTransition(
        rs.D / w,
        rs.P / w[:, None],
        rs.Q,
        rs.b / w,
        rs.q_cell / w**2,
        Z=(rs.Wn[:, m:] / w[:, None]) if chain else None,
        S2=np.diag(rs.Sn)[m:] if chain else None,
        S1=rs.Sn[:m, :m] if chain else None,
        step=step,
    )
    return rs, prop


def run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun:
    t, x0, kappa0, times = check_run_args(problem, t, x0, kappa0, times, allow_inf=False)
    options = dict(options or {})
    if not problem.low_rank:
        raise ThermospiceError(
            "backend asbuilt needs a factored (U, lam) or GGN (J, H, lam) problem: "
            "it models the factored and crossbar circuits (use ngspice for a dense A)"
        )
    design = options.get("design") or Design()
    topology = options.get("topology") or default_topology(problem)
    realised = find(topology)
    if realised is None or not realised.realisable:
        raise ThermospiceError(f"backend asbuilt models topologies {', '.join(choices('asbuilt'))}, not {topology!r}")
    step = float(options.get("step", DEFAULT_STEP))
    rs, prop = transition(problem, topology, design, kappa0, step)
    marks = ([] if times is None else list(times)) + [t]
    process = flicker_process(rs, design, t, seed)
    if process is not None and rs.limits is None:
        drive = FlickerDrive(rs, prop, FlickerKnots(rs, process))
        rows, limited = _flicker_trajectory(rs, prop, drive, x0, marks, seed), False
    else:
        path = None if process is None else KnotPath(rs, FlickerKnots(rs, process))
        rows, limited = _trajectory(rs, prop, x0, marks, seed, step, path, options.get("limits") or Limits())

    def read(v):  # the ADC reads V(x) = v_unit x
        return adc(v * rs.v_unit, design) / rs.v_unit

    traj = read(np.array(rows[:-1]).reshape(len(times), problem.n)) if times is not None else None
    extra = {
        "topology": topology,
        "exact": prop.uniform and not limited and process is None,
        "limited": limited,
        "rank": int(rs.P.shape[1]),
        "step_tau": None if prop.uniform and not limited else step,
    }
    if process is not None:
        extra["flicker_hz"] = process.band.edges_hz  # the band of the op-amps' 1/f noise
    return BackendRun(
        x=read(rows[-1]),
        times=times,
        trajectory=traj,
        extra=extra,
    )


def _flicker_trajectory(rs, prop, drive, x0, marks, seed) -> list:
    """The states at `marks` with the op-amps' 1/f noise driving the cells (spu/backends/flicker_drive.py)."""
    rng = np.random.default_rng(seed)
    x, now, rows = drive.start(rs.x0_gain * x0), 0.0, []
    for target in marks:
        x = drive.advance(x, now, target, rng)
        now = target
        rows.append(x)
    return rows


def _linear(prop, x, marks, rng, visit=None) -> list:
    now, rows = 0.0, []
    for target in marks:
        x = prop.advance(x, target - now, rng, visit=visit)
        now = target
        rows.append(x)
    return rows


def _trajectory(rs, prop, x0, marks, seed, step, path=None, limits: Limits | None = None) -> tuple[list, bool]:
    """The states at `marks`, and whether an op-amp limit was reached. With a swing or slew rate
    set, the linear path runs first on its step grid under a LimitCheck: while no output or rate
    comes near a limit it IS the answer (the same draws as without limits where the diagonal is
    non-uniform); at the first grid point near one, the run restarts from t = 0 with the limited
    stepper (spu/core/limited_drift.py) on the same seed. With 1/f noise (path: a
    flicker_drive.KnotPath) the limited stepper runs from the start: the check watches the drift
    without the flicker's input, which it would have to bound too."""
    x = rs.x0_gain * x0
    if rs.limits is None:
        return _linear(prop, x, marks, np.random.default_rng(seed)), False
    if path is None:
        check = LimitCheck(rs.limits, lambda v: (rs.b - rs.matvec(v)) / rs.w, np.sqrt(rs.q_cell) / rs.w)
        try:
            check(x, step)
            return _linear(prop, x, marks, np.random.default_rng(seed), check), False
        except LimitReached:
            pass
    rho = prop.d + float(np.abs(prop.eig.k).max(initial=0.0)) + float(np.abs(prop.dD).max(initial=0.0))
    stepper = LimitedDrift(rs.limits, rs.P, rs.b, rs.q_cell, rs.Wn, rs.Sn, rho=rho, step=step)
    # Its step resolves the fastest rate (0.05/rho): at training scale rho reaches 1e3-1e4 per tau
    # and one solve millions of O(N m) steps, so it is counted against --max-steps before it starts.
    (limits or Limits()).check_steps(
        f"asbuilt's limited stepper (an op-amp limit is reached) to t = {marks[-1]:g} tau in steps of "
        f"{stepper.h_max:.3g} tau",
        transient_steps(marks[-1], stepper.h_max),
    )
    z = np.asarray(x0, dtype=np.float64)  # the capacitor holds -v_unit x0 (Builder.integrator_cells)
    outs, now, rows = stepper.start(z, None if path is None else path.at(0.0)), 0.0, []
    rng = np.random.default_rng(seed)
    for target in marks:
        if path is None:
            z, outs = stepper.advance(z, outs, target - now, rng)
        else:
            for a, b in path.pieces(now, target):
                z, outs = stepper.advance(z, outs, b - a, rng, (path.at(a), path.at(b)))
        now = target
        rows.append(outs[0])
    return rows, True


def flicker_process(rs, design: Design, t: float, seed) -> FlickerProcess | None:
    """The op-amps' 1/f noise over a run of t problem tau, one column per op-amp; None without it
    (or with its band below the run: circuits/flicker.py)."""
    band = band_for(design.opamp, t * rs.tau_s)
    return None if band is None else FlickerProcess(band, amp_count(rs), seed)


class AsbuiltBackend(CircuitBackend):
    name = "asbuilt"
    options = frozenset({"topology", "design", "step", "limits"})
    run = staticmethod(run)
    problem_form = staticmethod(problem_form)


BACKEND = AsbuiltBackend()
