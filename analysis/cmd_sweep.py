"""`thermospice sweep KIND`: hardware-designer sweeps (noise, tolerance, bits, opamp, time)."""

from __future__ import annotations

import argparse
import sys

from circuits import topologies

from .limit_args import add_limit_args, limits_from_args
from .sweep_errors import SweepError
from .sweep_kinds import SWEEP_KINDS, TRAIN_KINDS, sweep_kind, train_kind
from .sweep_spec import COMMON_OPTIONS, columns_help
from .sweeps import run_sweep
from .train_sweeps import run_train_sweep

_RANGES = """\
ranges: comma-separated values (1e-3,1e-2), lin:START:STOP:NUM or log:START:STOP:NUM, or several
of these; values are sorted and deduplicated.

Every sweep solves one fixed test problem from x0 = 0 (a TNGD-like GGN A = J^T H J + lam I with
softmax Hessian blocks, or --form spd; scaled so max|A^-1 b| = 1) and reports
rel_error = ||x - A^-1 b|| / ||A^-1 b|| against the ideal problem. It writes KIND.csv (rows
appended as points finish, rewritten sorted by point id at the end), KIND.png, KIND.manifest.json
(the sweep's parameters), KIND.timings.csv (wall times) and, for {summarised},
KIND_summary.csv (statistics over the seeds). Rerun the same command on the same --out to resume:
finished points are skipped and the final CSV is the same as an uninterrupted run's. A folder
holding the same KIND with other parameters is refused. Points run in --workers processes, or on a
Dask cluster with --scheduler tcp://HOST:8786 (workers need thermospice and ngspice installed).""".format(
    summarised="/".join(k.name for k in SWEEP_KINDS.values() if k.summary)
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help=f"hardware sweeps: {', '.join(SWEEP_KINDS)}",
        description="Sweep a circuit parameter of the SPU in ngspice; write CSV + PNG.",
        epilog=_RANGES + "\n\n" + columns_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = p.add_subparsers(
        dest="kind",
        required=True,
        metavar="KIND",
        parser_class=type(p),
        title="kinds (thermospice sweep KIND --help for its options and CSV columns)",
    )
    for kind in SWEEP_KINDS.values():
        k = kinds.add_parser(
            kind.name,
            help=kind.about,
            description=f"sweep {kind.name}: {kind.about}.",
            epilog=_RANGES + "\n\n" + columns_help(kind.name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        kind.add_arguments(k.add_argument_group(f"{kind.name} sweep"))
        _common_args(k, kind)
        k.set_defaults(func=cmd_sweep)
    for kind in TRAIN_KINDS.values():
        k = kinds.add_parser(
            kind.name,
            help=kind.about,
            description=f"sweep {kind.name}: {kind.about}.",
            epilog=_TRAIN_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _train_args(k, kind)
        k.set_defaults(func=cmd_train_sweep)


_TRAIN_EPILOG = """Each setting trains the digits CNN (batch 64) with TNGD (paper settings: lr 0.01, lambda 0.01,
t = 50 tau; train-noise: t = 1 tau as the paper's noise study) on the asbuilt backend for --steps
steps per seed; TNGD on the ideal ou device and Adam run beside it as reference lines. Writes
KIND.csv, KIND.png, KIND.manifest.json and KIND.runs/ (one folder per run); rerun the same
command on the same --out to resume."""


def _train_args(p, kind) -> None:
    g = p.add_argument_group(f"{kind.name} sweep")
    kind.add_arguments(g)
    g.add_argument("--steps", type=int, default=200, help="TNGD steps per run (default 200)")
    g.add_argument("--seeds", type=int, default=3, help="seeds per setting (default 3)")
    g.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    g.add_argument("--t", type=float, help="analog time per step in tau (default 50; train-noise 1)")
    g.add_argument("--topology", choices=topologies.choices("asbuilt"), default="factored")
    g.add_argument(
        "--gain-stage",
        action="store_true",
        help="the asbuilt runs hand the chip b/max|b| and scale its answer back (train --gain-stage)",
    )
    g.add_argument(
        "--chop",
        action="store_true",
        help="the asbuilt runs subtract a run with b = 0 from every solve (train --chop)",
    )
    g = p.add_argument_group("running")
    g.add_argument("--out", default="sweeps", help="output folder (default ./sweeps)")
    g.add_argument("--workers", type=int, help="parallel processes (default: the CPU count)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster, e.g. tcp://host:8786")
    g.add_argument("--scheduler-timeout", type=float, default=10.0)
    g.add_argument("--no-progress", action="store_true")
    add_limit_args(p, "points")


def cmd_train_sweep(args) -> int:
    kind = train_kind(args.kind)
    runs = kind.count(args) * max(args.seeds, 1)
    limits_from_args(args).check_points(f"sweep {kind.name} (its settings x {args.seeds} seeds)", runs)
    settings = kind.settings(args)  # None: the kind's default settings
    res = run_train_sweep(
        args.kind,
        args.out,
        settings=settings,
        seeds=args.seeds,
        seed=args.seed,
        steps=args.steps,
        t=args.t,
        topology=args.topology,
        gain_stage=args.gain_stage,
        chop=args.chop,
        workers=args.workers,
        scheduler=args.scheduler,
        scheduler_timeout=args.scheduler_timeout,
        progress=not args.no_progress,
    )
    print(f"sweep {res['kind']}: {res['runs']} runs ({res['computed']} computed) in {res['wall_s']:.1f} s")
    for label in ("csv", "png", "manifest"):
        print(f"  {label:<9}{res[label]}")
    return 0


def _common_args(p, kind) -> None:
    g = p.add_argument_group("test problem")
    g.add_argument("--n", type=int, help="problem size N (default 8; --quick 4)")
    g.add_argument("--form", choices=["ggn", "spd"], help="ggn: A = J^T H J + lam I (default); spd: dense A")
    g.add_argument("--problem-seed", type=int, help="seed of the test problem (default 0)")
    g.add_argument("--lam", type=float, help="damping lambda (default 0.5; --quick 1)")
    g.add_argument("--batch", type=int, help="GGN batch size (default 2; --quick 1)")
    g.add_argument("--dz", type=int, help="GGN outputs per sample (default 3)")
    g.add_argument("--topology", help="circuit topology (default crossbar for ggn, dense for spd)")
    g.add_argument("--backend", help=f"SPU backend: {kind.backends_help()}")
    g = p.add_argument_group("running")
    g.add_argument("--out", default="sweeps", help="output folder (default ./sweeps); files are named KIND.*")
    g.add_argument("--quick", action="store_true", help="a small sweep (seconds), for tests and a first look")
    g.add_argument(
        "--workers",
        type=int,
        help="parallel processes (default: the CPU count; 1 = in this process; ignored with --scheduler)",
    )
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask distributed cluster, e.g. tcp://host:8786")
    g.add_argument(
        "--scheduler-timeout", type=float, default=10.0, help="seconds to wait for the scheduler (default 10)"
    )
    g.add_argument("--seeds", type=int, help="repetitions (noise seeds / component draws) per grid value")
    g.add_argument("--seed", type=int, help="base seed of the repetitions (default 0)")
    g.add_argument("--timeout", type=float, help="seconds before one ngspice run is killed (default 600)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    g.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)  # test hook: stop as if interrupted
    add_limit_args(p, "points", "steps")


def cmd_sweep(args) -> int:
    names = COMMON_OPTIONS | sweep_kind(args.kind).options
    options = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    try:
        res = run_sweep(
            args.kind,
            args.out,
            quick=args.quick,
            workers=args.workers,
            scheduler=args.scheduler,
            scheduler_timeout=args.scheduler_timeout,
            progress=not args.no_progress,
            stop_after=args.stop_after,
            limits=limits_from_args(args),
            **options,
        )
    except KeyboardInterrupt:
        print(
            f"thermospice: sweep {args.kind} interrupted; finished points are saved in {args.out}: "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        raise
    print(
        f"sweep {res.kind}: {res.total} points ({res.computed} computed, {res.skipped} already done, "
        f"{res.failed} failed or diverged) in {res.wall_s:.1f} s"
    )
    for label, path in (
        ("csv", res.csv_path),
        ("summary", res.summary_path),
        ("plot", res.png_path),
        ("manifest", res.manifest_path),
    ):
        if path:
            print(f"  {label:<9}{path}")
    if res.retry:
        raise SweepError(
            f"{res.retry} points timed out in ngspice and have no row (see {res.kind}.errors.log); "
            "rerun the same command to retry them, maybe with a larger --timeout"
        )
    return 0
