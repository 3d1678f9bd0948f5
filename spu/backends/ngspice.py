"""Circuit-level backend: build the SPU netlist, run ngspice in a subprocess, read the raw file.

options (all optional):
  topology   "ideal" | "dense" | "crossbar" | "factored" | "oscillator" (default: dense for a dense A,
             factored for (U, lam), crossbar for a GGN problem)
  design     circuits.Design (default Design())
  timeout    seconds before ngspice is killed (default 600)
  keep       keep the run directory (netlist + raw file) and return its path (default False)
  workdir    where run directories are made
  report     attach the component report (default True)
  points     output points requested from ngspice (default 200)
  oscillator OscillatorParams or dict for topology "oscillator" (spu/core/underdamped.py)

The state is read as V(x_i)/v_unit, through an ADC of design.bits_adc bits when set.
"""
from __future__ import annotations

import numpy as np

from circuits.design import Design
from circuits.report import component_report
from circuits.scaling import choose_scale, scaled
from circuits.topologies import TOPOLOGIES, build

from ..core.errors import NgspiceError, ThermospiceError
from ..core.problems import DenseProblem, GGNProblem
from ..core.spectral import settling_time
from ..core.underdamped import ExactLangevin, OscillatorParams
from ..ngspice_run import run_ngspice
from .base import BackendRun
from .direct import solve as direct_solve

NAME = "ngspice"


# The bridge from the device to circuits/: spu/device.py asks these instead of importing circuits.
def check_design(design):
    """The checked circuits.Design of an SPU (default Design()); its tau also times other backends."""
    return (design or Design()).check()


def check_topology(topology: str) -> None:
    if topology not in TOPOLOGIES:
        raise ThermospiceError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")


def problem_form(topology: str | None) -> str:
    """The problem form this backend prefers: "ggn" for the crossbar (it builds J, H and J^T),
    "factored" otherwise (any other topology builds from U or from A)."""
    return "ggn" if topology in (None, "crossbar") else "factored"


def default_topology(problem) -> str:
    if isinstance(problem, DenseProblem):
        return "dense"
    return "crossbar" if isinstance(problem, GGNProblem) else "factored"


def settle_time(problem, tol, options) -> float:
    """Settling time (problem tau) of the circuit that would be built: that of lambda_min(A) for
    the RC cells, the second-order one of the oscillator cells (whose damping is resolved on the
    scaled circuit, so the scale enters)."""
    options = dict(options or {})
    if (options.get("topology") or default_topology(problem)) != "oscillator":
        return settling_time(problem.eig_extremes()[0], tol)
    params = OscillatorParams.make(options.get("oscillator"))
    form = problem.factored() if isinstance(problem, GGNProblem) else problem
    if params.coupling == "capacitive" and not isinstance(form, DenseProblem):
        form = DenseProblem(form.matrix(), form.b)
    topology = "dense" if isinstance(form, DenseProblem) else "factored"
    s = choose_scale(form, topology, check_design(options.get("design")), coupling=params.coupling)
    return ExactLangevin(scaled(form, s), params, 0.0).settle_time(tol) / s


def adc(volts: np.ndarray, design: Design) -> np.ndarray:
    """Read voltages through the ADC: clip to full scale, round to bits_adc levels."""
    if design.bits_adc is None:
        return volts
    fs = design.v_fullscale
    lsb = 2 * fs / (2**design.bits_adc - 1)
    return np.round(np.clip(volts, -fs, fs) / lsb) * lsb


def run(problem, *, t, x0, kappa0=0.0, seed=None, times=None, options=None) -> BackendRun:
    options = dict(options or {})
    design = options.get("design") or Design()
    topology = options.get("topology") or default_topology(problem)
    x0 = np.zeros(problem.n) if x0 is None else np.asarray(x0, dtype=float)
    if t == 0:
        # Nothing evolves: the device holds x0 (ngspice cannot run a zero-length transient).
        traj = None if times is None else np.tile(x0, (len(times), 1))
        return BackendRun(x=x0.copy(), times=times, trajectory=traj)
    topology_options = {"oscillator": options["oscillator"]} if options.get("oscillator") is not None else {}
    circuit = build(problem, topology, design, x0=x0, kappa0=kappa0, t=float(t), seed=seed,
                    points=int(options.get("points", 200)), **topology_options)
    res = run_ngspice(circuit.text(), timeout=options.get("timeout", 600.0), keep=bool(options.get("keep")),
                      workdir=options.get("workdir"))
    raw = res.raw
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
    report = (component_report(circuit, problem, t, x0, x_star=direct_solve(problem, problem.b))
              if options.get("report", True) else None)
    return BackendRun(x=X[-1].copy(), times=times, trajectory=traj, netlist_path=res.netlist_path,
                      report=report, programmed_resistors=circuit.programmed_resistors(), extra={"topology": topology, "scale": circuit.scale, "ngspice_wall_s": res.wall_time_s,
                                            "raw_points": int(len(time_tau)), "raw_times_tau": time_tau,
                                            "raw_states": X})
