"""`thermospice solve | netlist | report`: one linear system through the SPU."""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np

from circuits.report import component_report, format_report
from circuits.topologies import build, is_second_order
from spu import backends
from spu.backends.direct import solve as direct_solve
from spu.backends.ngspice import default_topology
from spu.core.errors import ThermospiceError
from spu.core.spectral import MODE_DECAY_TOL
from spu.device import SPU

from .design_sources import write_design
from .io import output_file
from .limit_args import add_limit_args, limits_from_args
from .osc_args import add_oscillator_args, oscillator_from_args
from .problem_args import add_design_args, add_problem_args, design_from_args, problem_from_args, x0_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("solve", help="run a linear system on the SPU and print the state")
    add_problem_args(p)
    add_design_args(p)
    p.add_argument("--backend", choices=backends.NAMES, default="ngspice")
    _common(p)
    p.add_argument("--keep", action="store_true", help="keep the ngspice netlist and raw file")
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before ngspice is killed (backend ngspice; default 600)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_limit_args(p, "memory", "steps")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser(
        "netlist",
        help="write the SPU netlist, runnable by `ngspice -b`, and its design beside it (NAME.design.json)",
    )
    add_problem_args(p)
    add_design_args(p)
    _common(p)
    p.add_argument("-o", "--output", required=True, help="netlist file to write (.cir)")
    p.add_argument("--title", help="netlist title line (printable ASCII)")
    add_limit_args(p, "memory")
    p.set_defaults(func=cmd_netlist)

    p = sub.add_parser("report", help="print the component report of the circuit")
    add_problem_args(p)
    add_design_args(p)
    _common(p)
    p.add_argument("--json", action="store_true")
    add_limit_args(p, "memory")
    p.set_defaults(func=cmd_report)


def _time(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of tau or 'auto', got {text!r}") from None


def _settle_tol(text: str) -> float:
    """--settle-tol, checked whatever --t is: a value that only --t auto reads is still a mistake."""
    try:
        tol = float(text)
    except ValueError:
        tol = math.nan
    if not 0 < tol < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text!r}")
    return tol


def _common(p) -> None:
    p.add_argument(
        "--t",
        type=_time,
        default=50.0,
        help="analog time in units of tau of the problem, or 'auto': until the slowest mode has "
        "settled to --settle-tol (default 50)",
    )
    p.add_argument(
        "--settle-tol",
        type=_settle_tol,
        default=MODE_DECAY_TOL,
        help=f"--t auto: decay of the slowest mode to reach (default {MODE_DECAY_TOL:g})",
    )
    p.add_argument("--kappa0", type=float, default=0.0, help="noise level kappa0 (default 0: off)")
    p.add_argument("--seed", type=int, help="noise seed (same seed, same run)")
    add_oscillator_args(p)


def _build(args):
    problem = problem_from_args(args)
    design = design_from_args(args)
    topology = args.topology or default_topology(problem)
    x0 = x0_from_args(args, problem.n)
    osc = oscillator_from_args(args, applies=is_second_order(topology))
    # A written netlist must run on its own (`ngspice -b FILE.cir`): held TRRANDOM noise, no table file.
    opts = {"oscillator": osc} if osc else {"noise": "held"}
    t = args.t
    if t == "auto":
        t = SPU("ngspice", topology=topology, design=design, **({"oscillator": osc} if osc else {})).settling_time(
            problem, args.settle_tol
        )
    circuit = build(
        problem,
        topology,
        design,
        x0=x0,
        kappa0=args.kappa0,
        t=t,
        seed=args.seed,
        title=getattr(args, "title", None),
        **opts,
    )
    return problem, circuit, x0, t


def cmd_solve(args) -> int:
    backend = backends.get(args.backend)
    problem = problem_from_args(args, circuit=backend.circuit)
    design = design_from_args(args)
    if not backend.circuit and args.topology is not None:
        # The numeric backends have no circuit; say so rather than silently ignoring it.
        circuit = backends.names_where(lambda b: b.circuit)
        raise ThermospiceError(
            f"--topology only applies to the circuit backends ({', '.join(circuit)}), not {args.backend}"
        )
    if not (np.isfinite(args.timeout) and args.timeout > 0):
        raise ThermospiceError(f"--timeout must be a number of seconds > 0, got {args.timeout:g}")
    osc = oscillator_from_args(args, applies=backend.oscillator(args.topology))
    # One solve: a long-lived ngspice session would serve a single run, so the CLI keeps the plain
    # `ngspice -b` process (and its error messages) for it.
    engine = {"engine": "batch"} if "engine" in backend.options else {}
    spu = SPU(
        args.backend,
        topology=args.topology,
        design=design,
        kappa0=args.kappa0,
        keep=args.keep,
        timeout=args.timeout,
        limits=limits_from_args(args),
        **engine,
        **({"oscillator": osc} if osc else {}),
    )
    res = spu.run(problem, t=args.t, x0=x0_from_args(args, problem.n), seed=args.seed, settle_tol=args.settle_tol)
    if args.json:
        out = res.to_dict()
        print(json.dumps(out))
    else:
        print(
            f"backend {res.backend}"
            + (f", topology {res.topology}" if res.topology else "")
            + (f", scale s = {res.extra['scale']:.4g}" if res.extra.get("scale", 1.0) != 1.0 else "")
            + f", t = {res.t:g} tau ({res.analog_time_s:.3g} s analog), wall {res.wall_time_s:.3g} s, "
            f"modelled device time {res.device_time_s:.3g} s"
        )
        print("x = " + np.array2string(res.x, precision=8, max_line_width=100))
        if res.netlist_path:
            print(f"netlist kept at {res.netlist_path}")
    return 0


def cmd_netlist(args) -> int:
    _, circuit, _, _ = _build(args)
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise ThermospiceError(f"cannot write {args.output}: folder {folder} does not exist")
    with output_file(args.output) as fh:
        fh.write(circuit.text())
    c = circuit.netlist.counts()
    print(
        f"wrote {args.output}: topology {circuit.topology}, n = {circuit.n}, "
        + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
    )
    # The design beside the netlist, so that the circuit can be rebuilt (--design-file) or changed;
    # a netlist sent to a device or a pipe has no folder beside it.
    if os.path.isfile(args.output):
        design_path = design_file_beside(args.output)
        write_design(design_path, circuit.design)
        print(f"wrote {design_path}: its design (--design-file rebuilds this circuit)")
    return 0


def design_file_beside(netlist: str) -> str:
    """NAME.design.json beside the netlist NAME.cir (NAME.design.json for a NAME without suffix)."""
    return os.path.splitext(netlist)[0] + ".design.json"


def cmd_report(args) -> int:
    problem, circuit, x0, t = _build(args)
    rep = component_report(circuit, problem, t, x0, x_star=direct_solve(problem, problem.b))
    print(json.dumps(rep) if args.json else format_report(rep))
    return 0
