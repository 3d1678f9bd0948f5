"""`thermospice reproduce FIG`: the paper's Figs. 2, 3, 4 and 7 (see analysis/reproduce.py)."""

from __future__ import annotations

import argparse
import sys

from .reproduce import FIGURES, UnknownFigureError, check_figure, columns_help, default_out, reproduce
from .reproduce_tuning import columns_help as tuning_columns_help
from .reproduce_tuning import reproduce_tuning

_ABOUT = """\
figures:
  fig2  runtime per iteration against N and dz: Adam, NGD, NGD-CG, NGD-Woodbury, TNGD (estimated)
  fig3  TNGD against Adam: training/test loss and 1 - accuracy against the estimated runtime, 5 seeds
  fig4  (a) sweep over the analog time t with NGD as reference; (b) sweep over the delay t_d at t = 5 tau
  fig5  MiniLM-L6 + LoRA on generated extractive QA: (a) Adam, TNGD, TNGD-Adam; (b) TNGD-Adam over t
  fig7  sweep over the noise level kappa0 at t = tau
  all   the five in turn
  tuning  SGD, Adam, TNGD, TNGD-Adam tuned against each other: lr grids (and lambda), 5 seeds,
        150 steps, digits CNN and MLP (tuning.csv, tuning_best.csv, tuning_lr.png, tuning_best.png;
        --workers processes or --scheduler; see analysis/reproduce_tuning.py). Not part of 'all'.

Each writes FIG.csv and FIG.png (fig3/4/5/7 also FIG_summary.csv and one folder per run under runs/)
and FIG.manifest.json into --out (default runs/reproduce/FIG, or runs/reproduce/FIG-quick with
--quick). Rerun the same command on the same folder to resume: finished runs and points are skipped.
--quick runs a smaller version (each figure under 2 minutes on 2 cores; fig5 under 3). docs/RESULTS.md compares
the full versions with the paper."""


def _figure(v: str) -> str:
    if v.strip().lower() in ("all", "tuning"):
        return v.strip().lower()
    try:
        return check_figure(v)
    except UnknownFigureError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="the paper's figures: fig2, fig3, fig4, fig5, fig7; the tuning grid",
        description="Reproduce a figure of Donatella et al. (arXiv 2405.13817) on the digits data "
        "(fig5: a small transformer on generated QA).",
        epilog=_ABOUT + "\n\n" + columns_help() + "\n\n" + tuning_columns_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("figure", type=_figure, metavar="FIG", help=f"one of {', '.join(FIGURES)}, all, or tuning")
    p.add_argument("--quick", action="store_true", help="a smaller version (each figure under 2 minutes)")
    p.add_argument("--out", help="output folder (default runs/reproduce/FIG[-quick]; with 'all', FIG is appended)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/BLAS threads (default 1: fastest on a shared machine, and fig2's timings assume it)",
    )
    p.add_argument("--workers", type=int, help="tuning: parallel runs (default: the CPU count)")
    p.add_argument("--scheduler", help="tuning: run on this Dask scheduler (tcp://host:8786) instead")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    figures = FIGURES if args.figure == "all" else (args.figure,)
    for fig in figures:
        out = args.out if (args.out and len(figures) == 1) else None
        if args.out and len(figures) > 1:
            import os

            out = os.path.join(args.out, fig)
        if fig == "tuning":
            res = reproduce_tuning(
                out or default_out(fig, args.quick),
                quick=args.quick,
                progress=not args.no_progress,
                workers=args.workers,
                scheduler=args.scheduler,
            )
        else:
            res = reproduce(
                fig,
                out or default_out(fig, args.quick),
                quick=args.quick,
                progress=not args.no_progress,
                threads=args.threads,
            )
        print(f"{fig}: {res.computed} computed, {res.skipped} reused, {res.wall_s:.1f} s")
        for path in (res.csv_path, res.summary_path, res.png_path):
            if path:
                print(f"  {path}")
        for r in res.summary if fig == "fig5" else []:
            print(
                f"  {r['label']:34s} train loss {r['final_train_loss_mean']:.4f}  held-out EM "
                f"{r['final_heldout_em_mean']:.3f}  F1 {r['final_heldout_f1_mean']:.3f}  "
                f"{r['digital_s_per_step']:.2f} s/step"
            )
        for r in res.summary if fig == "tuning" else []:
            lam = f", lambda {r['damping']:g}" if r["damping"] is not None else ""
            print(
                f"  best {r['model']} {r['method']:9s} lr {r['lr']:g}{lam}: train loss "
                f"{r['final_train_loss_mean']:.4f}, test accuracy {r['final_test_accuracy_mean']:.3f}, "
                f"estimated {r['estimated_s_mean']:.3g} s"
            )
        for r in res.summary if fig not in ("fig2", "fig5", "tuning") else []:
            print(
                f"  {r['label']:34s} train loss {r['final_train_loss_mean']:.4f}  test loss "
                f"{r['final_test_loss_mean']:.4f}  1-acc {r['final_test_error_mean']:.3f}  "
                f"est. {r['estimated_s_per_step'] * 1e3:.2f} ms/step"
            )
        sys.stdout.flush()
    return 0
