"""`thermospice sweep KIND`: hardware-designer sweeps (noise, tolerance, bits, opamp, time)."""
from __future__ import annotations

import argparse
import sys

from circuits import topologies

from .sweep_spec import KINDS, SweepError, SweepOptionError, columns_help
from .sweeps import run_sweep
from .train_sweeps import ABOUT as _TRAIN_ABOUT
from .train_sweeps import TRAIN_KINDS, run_train_sweep

_ABOUT = {
    "noise": "kappa0 and temperature (Johnson noise) against the solution error and its spread over seeds",
    "tolerance": "Monte Carlo over the relative sigma of every R and C (fabrication tolerance)",
    "bits": "resolution of the resistors, the DAC and the ADC (degradation below about 8 bits)",
    "opamp": "op-amp DC gain and gain-bandwidth against the error and the settling time",
    "time": "analog time t against the error, beside the exact OU mean and exp(-lambda_min t)",
}

_RANGES = """\
ranges: comma-separated values (1e-3,1e-2), lin:START:STOP:NUM or log:START:STOP:NUM, or several
of these; values are sorted and deduplicated.

Every sweep solves one fixed test problem from x0 = 0 (a TNGD-like GGN A = J^T H J + lam I with
softmax Hessian blocks, or --form spd; scaled so max|A^-1 b| = 1) and reports
rel_error = ||x - A^-1 b|| / ||A^-1 b|| against the ideal problem. It writes KIND.csv (rows
appended as points finish, rewritten sorted by point id at the end), KIND.png, KIND.manifest.json
(the sweep's parameters), KIND.timings.csv (wall times) and, for noise/tolerance/time,
KIND_summary.csv (statistics over the seeds). Rerun the same command on the same --out to resume:
finished points are skipped and the final CSV is the same as an uninterrupted run's. A folder
holding the same KIND with other parameters is refused. Points run in --workers processes, or on a
Dask cluster with --scheduler tcp://HOST:8786 (workers need thermospice and ngspice installed)."""


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="hardware sweeps: noise, tolerance, bits, opamp, time",
                       description="Sweep a circuit parameter of the SPU in ngspice; write CSV + PNG.",
                       epilog=_RANGES + "\n\n" + columns_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=type(p),
                             title="kinds (thermospice sweep KIND --help for its options and CSV columns)")
    for kind in KINDS:
        k = kinds.add_parser(kind, help=_ABOUT[kind], description=f"sweep {kind}: {_ABOUT[kind]}.",
                             epilog=_RANGES + "\n\n" + columns_help(kind),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        _kind_args(k, kind)
        _common_args(k, kind)
        k.set_defaults(func=cmd_sweep)
    for kind in TRAIN_KINDS:
        k = kinds.add_parser(kind, help=_TRAIN_ABOUT[kind], description=f"sweep {kind}: {_TRAIN_ABOUT[kind]}.",
                             epilog=_TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        _train_args(k, kind)
        k.set_defaults(func=cmd_train_sweep)


_TRAIN_EPILOG = """Each setting trains the digits CNN (batch 64) with TNGD (paper settings: lr 0.01, lambda 0.01,
t = 50 tau; train-noise: t = 1 tau as the paper's noise study) on the asbuilt backend for --steps
steps per seed; TNGD on the ideal ou device and Adam run beside it as reference lines. Writes
KIND.csv, KIND.png, KIND.manifest.json and KIND.runs/ (one folder per run); rerun the same
command on the same --out to resume."""


def _train_args(p, kind: str) -> None:
    g = p.add_argument_group(f"{kind} sweep")
    if kind == "train-bits":
        g.add_argument("--bits", help="comma-separated resolutions (default 4,6,8,10,12,16)")
    elif kind == "train-tolerance":
        g.add_argument("--tol", help="comma-separated relative tolerances of every R and C (default 0,0.005,0.01,0.02,0.05)")
    else:
        g.add_argument("--temperature", help="comma-separated temperatures in K (default 0,300)")
        g.add_argument("--kappa0", help="comma-separated kappa0 values (default 0.001,0.01,0.1)")
    g.add_argument("--steps", type=int, default=200, help="TNGD steps per run (default 200)")
    g.add_argument("--seeds", type=int, default=3, help="seeds per setting (default 3)")
    g.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    g.add_argument("--t", type=float, help="analog time per step in tau (default 50; train-noise 1)")
    g.add_argument("--topology", choices=topologies.choices("asbuilt"), default="factored")
    g = p.add_argument_group("running")
    g.add_argument("--out", default="sweeps", help="output folder (default ./sweeps)")
    g.add_argument("--workers", type=int, help="parallel processes (default: the CPU count)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster, e.g. tcp://host:8786")
    g.add_argument("--scheduler-timeout", type=float, default=10.0)
    g.add_argument("--no-progress", action="store_true")


def _numbers(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SweepOptionError(f"--{name} must be comma-separated numbers, got {text!r}") from None


def cmd_train_sweep(args) -> int:
    settings = None
    if args.kind == "train-bits" and args.bits:
        settings = [int(v) for v in _numbers(args.bits, "bits")]
    elif args.kind == "train-tolerance" and args.tol:
        settings = _numbers(args.tol, "tol")
    elif args.kind == "train-noise" and (args.temperature or args.kappa0):
        temps = _numbers(args.temperature or "0,300", "temperature")
        kappas = _numbers(args.kappa0 or "0.001,0.01,0.1", "kappa0")
        settings = [[T, k] for T in temps for k in kappas]
    res = run_train_sweep(args.kind, args.out, settings=settings, seeds=args.seeds, seed=args.seed,
                          steps=args.steps, t=args.t, topology=args.topology, workers=args.workers,
                          scheduler=args.scheduler, scheduler_timeout=args.scheduler_timeout,
                          progress=not args.no_progress)
    print(f"sweep {res['kind']}: {res['runs']} runs ({res['computed']} computed) in {res['wall_s']:.1f} s")
    for label in ("csv", "png", "manifest"):
        print(f"  {label:<9}{res[label]}")
    return 0


def _kind_args(p, kind: str) -> None:
    g = p.add_argument_group(f"{kind} sweep")
    if kind == "noise":
        g.add_argument("--kappa0", nargs="+", metavar="RANGE", help="kappa0 values (default 0,1e-4,1e-3,1e-2,1e-1)")
        g.add_argument("--temperature", nargs="+", metavar="RANGE",
                       help="resistor temperatures in K for Johnson noise, 0 = none (default 0,300)")
    elif kind == "tolerance":
        g.add_argument("--tol-r", nargs="+", metavar="RANGE",
                       help="relative sigma of every R (default 0,0.001,0.003,0.01,0.03,0.1)")
        g.add_argument("--tol-c", nargs="+", metavar="RANGE", help="relative sigma of every C (default 0,0.05)")
    elif kind == "bits":
        g.add_argument("--bits", nargs="+", metavar="RANGE", help="resolutions in bits (default 4,6,...,16)")
        g.add_argument("--targets", help="what to quantise, comma-separated from r,dac,adc,all (default all four)")
    elif kind == "opamp":
        g.add_argument("--gain", nargs="+", metavar="RANGE",
                       help="op-amp DC gains; 'ideal' = ideal op-amp (default 1e2,1e3,1e4,1e5,1e6,ideal)")
        g.add_argument("--gbw", nargs="+", metavar="RANGE",
                       help="gain-bandwidth products in Hz; 'none' = no pole (default 1e6,1e7,1e8,none)")
    if kind == "time":
        g.add_argument("--t", nargs="+", metavar="RANGE",
                       help="analog times in tau (default 0.125 ... 10 times 1/lambda_min)")
        g.add_argument("--kappa0", type=float, help="noise level of every run (default 0)")
    else:
        g.add_argument("--t", type=float,
                       help="analog time of every solve in tau (default ln(1e6)/lambda_min: settled)")
    if kind in ("tolerance", "opamp"):
        g.add_argument("--settle-tol", type=float,
                       help="settling band, relative to the final state (default 1e-3)")


def _common_args(p, kind: str) -> None:
    g = p.add_argument_group("test problem")
    g.add_argument("--n", type=int, help="problem size N (default 8; --quick 4)")
    g.add_argument("--form", choices=["ggn", "spd"], help="ggn: A = J^T H J + lam I (default); spd: dense A")
    g.add_argument("--problem-seed", type=int, help="seed of the test problem (default 0)")
    g.add_argument("--lam", type=float, help="damping lambda (default 0.5; --quick 1)")
    g.add_argument("--batch", type=int, help="GGN batch size (default 2; --quick 1)")
    g.add_argument("--dz", type=int, help="GGN outputs per sample (default 3)")
    g.add_argument("--topology", help="circuit topology (default crossbar for ggn, dense for spd)")
    backends = "ngspice (default) or ou" if kind in ("noise", "time") else "ngspice only"
    g.add_argument("--backend", help=f"SPU backend: {backends}")
    g = p.add_argument_group("running")
    g.add_argument("--out", default="sweeps", help="output folder (default ./sweeps); files are named KIND.*")
    g.add_argument("--quick", action="store_true", help="a small sweep (seconds), for tests and a first look")
    g.add_argument("--workers", type=int, help="parallel processes (default: the CPU count; 1 = in this process; "
                   "ignored with --scheduler)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster, e.g. tcp://host:8786")
    g.add_argument("--scheduler-timeout", type=float, default=10.0,
                   help="seconds to wait for the scheduler (default 10)")
    g.add_argument("--seeds", type=int, help="repetitions (noise seeds / component draws) per grid value")
    g.add_argument("--seed", type=int, help="base seed of the repetitions (default 0)")
    g.add_argument("--timeout", type=float, help="seconds before one ngspice run is killed (default 600)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    g.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # test hook: stop as if interrupted


_OPTIONS = ("kappa0", "temperature", "tol_r", "tol_c", "bits", "targets", "gain", "gbw", "t", "settle_tol",
            "n", "form", "problem_seed", "lam", "batch", "dz", "topology", "backend", "seeds", "seed", "timeout")


def cmd_sweep(args) -> int:
    options = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k, None) is not None}
    try:
        res = run_sweep(args.kind, args.out, quick=args.quick, workers=args.workers, scheduler=args.scheduler,
                        scheduler_timeout=args.scheduler_timeout, progress=not args.no_progress,
                        stop_after=args.stop_after, **options)
    except KeyboardInterrupt:
        print(f"thermospice: sweep {args.kind} interrupted; finished points are saved in {args.out}: "
              "rerun the same command to resume", file=sys.stderr)
        raise
    print(f"sweep {res.kind}: {res.total} points ({res.computed} computed, {res.skipped} already done, "
          f"{res.failed} failed or diverged) in {res.wall_s:.1f} s")
    for label, path in (("csv", res.csv_path), ("summary", res.summary_path), ("plot", res.png_path),
                        ("manifest", res.manifest_path)):
        if path:
            print(f"  {label:<9}{path}")
    if res.retry:
        raise SweepError(f"{res.retry} points timed out in ngspice and have no row (see {res.kind}.errors.log); "
                         "rerun the same command to retry them, maybe with a larger --timeout")
    return 0
