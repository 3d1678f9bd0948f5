"""Circuit-level backend: build the SPU netlist, simulate it in ngspice, read the raw file.

options (all optional):
  topology   "ideal" | "dense" | "crossbar" | "factored" | "oscillator" (default: dense for a dense A,
             factored for (U, lam), crossbar for a GGN problem)
  design     circuits.Design (default Design())
  engine     "session" (default): one long-lived ngspice child per SPU (spu/ngspice/session.py),
             kept in `state`: a run with the same netlist text only re-runs the transient (the
             noise tables are rewritten), another netlist is re-sourced into the same child;
             "batch": a fresh `ngspice -b` process per run (spu/ngspice/run.py), the former path.
             (The session never `alter`s values here: a value typed through ngspice's front end
             may round differently from the same value parsed from a netlist, and a run must give
             the same bits whatever ran before it in the child: sweeps resume on that.)
  noise      "table" (default) | "held": how noise reaches ngspice (circuits.topologies.build)
  state      a dict the SPU keeps for this backend between runs (spu.device passes SPU.backend_state)
  timeout    seconds before ngspice is killed (default 600)
  keep       keep the run directory (netlist + raw file) and return its path (default False; batch)
  workdir    where run directories are made
  report     attach the component report (default True)
  points     output points requested from ngspice (default 200)
  oscillator OscillatorParams or dict for topology "oscillator" (spu/core/underdamped.py)
  limits     spu.limits.Limits: the transient's time points and the raw data read back are checked
             against them before ngspice starts (default Limits())

The state is read as V(x_i)/v_unit, through an ADC of design.bits_adc bits when set.
"""

from __future__ import annotations

import numpy as np

from circuits.design import Design
from circuits.report import component_report
from circuits.topologies import build, get

from ..core.errors import NgspiceError, ThermospiceError
from ..limits import Limits, transient_steps
from ..ngspice.run import run_ngspice
from ..ngspice.session import NgspiceSession
from .base import BackendRun, CircuitBackend
from .circuit import adc
from .direct import solve as direct_solve

ENGINES = ("session", "batch")


def problem_form(topology: str | None) -> str:
    """The problem form this backend prefers: the topology's own ("ggn" for the crossbar, which
    builds J, H and J^T); with none chosen "ggn", as a GGN problem gets the crossbar."""
    return "ggn" if topology is None else get(topology).preferred_form


def default_topology(problem) -> str:
    if not problem.low_rank:
        return "dense"
    return "crossbar" if problem.ggn() is not None else "factored"


def settle_time(problem, tol, options) -> float:
    """Settling time (problem tau) of the circuit that would be built (Topology.settle_time)."""
    options = dict(options or {})
    return get(options.get("topology") or default_topology(problem)).settle_time(problem, tol, options)


def _session_run(circuit, state: dict, timeout):
    """Run on the SPU's session: re-source only when the netlist text changed."""
    ng = state.get("session")
    if ng is None or ng.timeout != timeout:
        close(state)
        ng = state["session"] = NgspiceSession(timeout=timeout)
    text = circuit.text()
    # TRRANDOM draws from ngspice's generator, seeded when the netlist is parsed: re-running an
    # unchanged held-noise circuit would continue the stream instead of repeating the seed's noise.
    if state.get("text") != text or not ng.alive or circuit.noise_mode == "held":
        state.pop("text", None)  # unknown until this load succeeded
        ng.load(text, files=circuit.files())
        state["text"] = text
        reloaded = True
    else:
        ng.set_files(circuit.files())  # fresh noise for an unchanged circuit
        reloaded = False
    run = ng.tran(*circuit.tran_args())
    return run.raw, run.wall_time_s, reloaded


def close(state: dict) -> None:
    """End the ngspice session kept in an SPU's backend state, if any."""
    ng = state.pop("session", None)
    if ng is not None:
        ng.close()
    state.clear()


def run(problem, *, t, x0, kappa0=0.0, seed=None, times=None, options=None) -> BackendRun:
    options = dict(options or {})
    design = options.get("design") or Design()
    topology = options.get("topology") or default_topology(problem)
    engine = options.get("engine") or "session"
    if engine not in ENGINES:
        raise ThermospiceError(f"ngspice engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    x0 = np.zeros(problem.n) if x0 is None else np.asarray(x0, dtype=float)
    if t == 0:
        # Nothing evolves: the device holds x0 (ngspice cannot run a zero-length transient).
        traj = None if times is None else np.tile(x0, (len(times), 1))
        return BackendRun(x=x0.copy(), times=times, trajectory=traj)
    topology_options = {"oscillator": options["oscillator"]} if options.get("oscillator") is not None else {}
    if get(topology).takes_noise_mode:  # the oscillator's sources are always held
        topology_options["noise"] = options.get("noise") or "table"
    circuit = build(
        problem,
        topology,
        design,
        x0=x0,
        kappa0=kappa0,
        t=float(t),
        seed=seed,
        points=int(options.get("points", 200)),
        **topology_options,
    )
    _check_limits(circuit, float(t), design, options.get("limits") or Limits())
    raw, wall, netlist_path, engine, extra = _simulate(circuit, engine, options)
    # The circuit realises A/scale: its time, in problem tau, is raw time / (scale * tau).
    time_tau = raw["time"] / (design.tau * circuit.scale)
    V = np.stack([raw[f"v({node})"] for node in circuit.state_nodes], axis=1)
    if not np.isfinite(V).all():
        raise NgspiceError("ngspice returned non-finite node voltages (the circuit diverged)")
    X = adc(V, design) / design.v_unit
    if abs(time_tau[-1] - t) > 1e-6 * max(t, 1.0):
        raise NgspiceError(f"ngspice stopped at t = {time_tau[-1]:.6g} tau instead of {t:.6g} tau")
    traj = None
    if times is not None:
        traj = np.stack([np.interp(times, time_tau, X[:, i]) for i in range(X.shape[1])], axis=1)
    report = (
        component_report(circuit, problem, t, x0, x_star=direct_solve(problem, problem.b))
        if options.get("report", True)
        else None
    )
    extra.update(
        {
            "topology": topology,
            "scale": circuit.scale,
            "engine": engine,
            "noise": circuit.noise_mode,
            "ngspice_wall_s": wall,
            "raw_points": int(len(time_tau)),
            "raw_times_tau": time_tau,
            "raw_states": X,
        }
    )
    return BackendRun(
        x=X[-1].copy(),
        times=times,
        trajectory=traj,
        netlist_path=netlist_path,
        report=report,
        programmed_resistors=circuit.programmed_resistors(),
        extra=extra,
    )


def _simulate(circuit, engine: str, options: dict):
    """Run the circuit's transient in the long-lived session (or, to keep the files, a batch run):
    (raw plots, ngspice wall s, netlist path or None, the engine used, extra facts)."""
    timeout = options.get("timeout", 600.0)
    if engine == "session" and not options.get("keep"):
        own = options.get("state") is None  # no SPU to keep it: a session for this run only
        state = {} if own else options["state"]
        try:
            raw, wall, reloaded = _session_run(circuit, state, timeout)
        finally:
            if own:
                close(state)
        return raw, wall, None, engine, {"reloaded": reloaded}
    res = run_ngspice(
        circuit.text(),
        timeout=timeout,
        keep=bool(options.get("keep")),
        workdir=options.get("workdir"),
        files=circuit.files(),
    )
    return res.raw, res.wall_time_s, res.netlist_path, "batch", {}


def _check_limits(circuit, t: float, design, limits: Limits) -> None:
    """Refuse a transient whose time points (at least t_stop / step cap) or raw data are too many."""
    _, t_stop, t_max = circuit.tran_args()
    steps = transient_steps(t_stop, t_max)
    cap = t_max / (design.tau * circuit.scale)
    limits.check_steps(
        f"ngspice's transient of t = {t:g} tau (step cap {cap:.3g} tau of the problem, "
        f"circuit scale {circuit.scale:.4g})",
        steps,
    )
    limits.check_memory(
        f"the raw data of ngspice's {steps:.3g} time points", steps * (len(circuit.state_nodes) + 1) * 8.0
    )


class NgspiceBackend(CircuitBackend):
    name = "ngspice"
    stateful = True  # its long-lived session
    options = frozenset(
        {
            "topology",
            "design",
            "engine",
            "noise",
            "state",
            "timeout",
            "keep",
            "workdir",
            "report",
            "points",
            "oscillator",
            "limits",
        }
    )
    run = staticmethod(run)
    settle_time = staticmethod(settle_time)
    problem_form = staticmethod(problem_form)
    close = staticmethod(close)


BACKEND = NgspiceBackend()
