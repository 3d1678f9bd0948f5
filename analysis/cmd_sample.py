"""`thermospice sample`: thermodynamic linear algebra -- K samples of the SPU's stationary law.

    thermospice sample --A A.npy --b b.npy --topology oscillator --kappa0 0.1 --samples 2000 \
        [--interval DT] [--burn-in T] [--json | -o PREFIX]

Prints the sample mean (the solve: time average of the state), the sample covariance and the
inverse estimate covariance / kappa0, with the effective sample size per coordinate. -o PREFIX
writes PREFIX_mean.npy, PREFIX_cov.npy, PREFIX_inverse.npy, PREFIX_samples.npy, PREFIX_times.npy.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from spu import backends
from spu.core.errors import ThermospiceError
from spu.device import SPU
from spu.sampling import dynamics_of, sample, theory

from .io import output_file
from .limit_args import add_limit_args, limits_from_args
from .osc_args import add_oscillator_args, oscillator_from_args
from .problem_args import add_design_args, add_problem_args, design_from_args, problem_from_args, x0_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="sample the SPU's stationary law: mean (solve), covariance and inverse")
    add_problem_args(p)
    add_design_args(p)
    add_oscillator_args(p)
    p.add_argument("--backend", choices=backends.NAMES, default="ngspice")
    p.add_argument("--method", choices=["exact", "baoab"], help="backend langevin: exact transitions or BAOAB")
    p.add_argument("--dt", type=float, help="step of the euler / baoab integrators, in tau")
    p.add_argument("--samples", type=int, required=True, help="number of recorded states K (>= 2)")
    p.add_argument(
        "--interval", type=float, help="time between samples, tau (default: 1 / slowest decay rate of the dynamics)"
    )
    p.add_argument(
        "--burn-in", type=float, help="time before the first sample, tau (default: slowest mode decayed by 1e-4)"
    )
    p.add_argument("--kappa0", type=float, default=0.1, help="noise level kappa0 > 0 (default 0.1)")
    p.add_argument("--seed", type=int, help="noise seed (same seed, same run)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds before ngspice is killed")
    p.add_argument(
        "--theory",
        action="store_true",
        help="also print the exact expected errors of mean and inverse for these K and interval",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("-o", "--output", help="write PREFIX_{mean,cov,inverse,samples,times}.npy")
    add_limit_args(p, "memory", "steps")
    p.set_defaults(func=cmd_sample)


def _run_options(args, backend) -> dict:
    """The SPU's options from the command line, each checked against what the backend takes."""
    if not (math.isfinite(args.kappa0) and args.kappa0 > 0):
        raise ThermospiceError(
            f"--kappa0 must be > 0 for sampling (the stationary spread is kappa0 A^-1), got {args.kappa0:g}"
        )
    if not backend.circuit and args.topology is not None:
        raise ThermospiceError(
            f"--topology only applies to --backend {_taking(lambda b: b.circuit)}, not {args.backend}"
        )
    params = oscillator_from_args(args, applies=backend.oscillator(args.topology))
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise ThermospiceError(f"--timeout must be a number of seconds > 0, got {args.timeout:g}")
    options = {"limits": limits_from_args(args)}
    if params is not None:
        options["oscillator"] = params
    if "timeout" in backend.options:
        options["timeout"] = args.timeout
    for name in ("method", "dt"):
        value = getattr(args, name)
        if value is not None:
            if name not in backend.options:
                raise ThermospiceError(f"--{name} applies to --backend {_taking(lambda b, n=name: n in b.options)}")
            options[name] = value
    return options


def cmd_sample(args) -> int:
    backend = backends.get(args.backend)
    problem = problem_from_args(args, circuit=backend.circuit)
    design = design_from_args(args)
    options = _run_options(args, backend)
    if args.output:
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder):
            raise ThermospiceError(f"cannot write {args.output}_*.npy: folder {folder} does not exist")
    spu = SPU(args.backend, topology=args.topology, design=design, kappa0=args.kappa0, **options)
    res = sample(
        spu,
        problem,
        samples=args.samples,
        interval=args.interval,
        burn_in=args.burn_in,
        x0=x0_from_args(args, problem.n),
        seed=args.seed,
    )
    th = None
    if args.theory:
        dyn_params = None if res.dynamics == "rc" else dynamics_of(spu)[1]
        th = theory(problem, dyn_params, args.kappa0, args.samples, res.interval)
    if args.output:
        for name, arr in (
            ("mean", res.mean),
            ("cov", res.cov),
            ("inverse", res.inverse),
            ("samples", res.samples),
            ("times", res.times),
        ):
            with output_file(f"{args.output}_{name}.npy", "wb") as fh:
                np.save(fh, arr)
    if args.json:
        out = res.to_dict()
        if th is not None:
            out["theory"] = {"mean_rel_rms": th["mean_rel"], "inverse_rel_rms": th["inverse_rel"]}
        print(json.dumps(out))
    else:
        _print_text(res, th, args.output)
    return 0


def _print_text(res, th, output) -> None:
    K = res.samples.shape[0]
    print(
        f"backend {res.extra['backend']}"
        + (f", topology {res.extra['topology']}" if res.extra["topology"] else "")
        + f", dynamics {res.dynamics}: {K} samples every {res.interval:.4g} tau after {res.burn_in:.4g} tau "
        f"(analog {res.extra['t_tau']:.4g} tau), kappa0 = {res.kappa0:g}, wall {res.wall_time_s:.3g} s"
    )
    if "gamma" in res.extra:
        print(f"damping gamma = {res.extra['gamma']:.6g}")
    fmt = dict(precision=6, max_line_width=110, suppress_small=False)
    label = "mean (solve)" if res.dynamics != "oscillator-capacitive" else "mean (node voltages; 0 in theory)"
    print(f"{label} = " + np.array2string(res.mean, **fmt))
    print("covariance =\n" + np.array2string(res.cov, **fmt))
    print("inverse = covariance / kappa0 =\n" + np.array2string(res.inverse, **fmt))
    print(
        f"effective sample size: min {res.ess.min():.4g}, median {np.median(res.ess):.4g} of {K} "
        f"(integrated autocorrelation time {res.iat.max():.3g} samples at most)"
    )
    if th is not None:
        print(
            f"theory (exact, stationary): rms relative error of the mean {th['mean_rel']:.3g}, "
            f"of the inverse (Frobenius) {th['inverse_rel']:.3g}"
        )
    if output:
        print(f"wrote {output}_{{mean,cov,inverse,samples,times}}.npy")


def _taking(question) -> str:
    """The backends that would take an option, as an error message lists them."""
    return backends.either(backends.names_where(question))
