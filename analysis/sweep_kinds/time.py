"""sweep time: the analog time t against the error, beside the exact OU mean and exp(-lambda_min t)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..ranges import parse_range, round12
from ..sweep_errors import SweepOptionError
from ..sweep_point import theory_rms
from .base import POINT, REL, STATUS, Summary, SweepKind


class Time(SweepKind):
    name = "time"
    about = "analog time t against the error, beside the exact OU mean and exp(-lambda_min t)"
    columns = (
        POINT,
        ("t_tau", "analog time of the solve from x0 = 0, in tau"),
        ("seed_index", "repetition r = 0..S-1 (matters only with kappa0 > 0)"),
        ("seed", "noise seed given to the backend"),
        REL,
        (
            "theory_error",
            "sqrt(E||x(t) - x*||^2) / ||x*|| of the ideal OU process (= ||exp(-A t) x*|| / ||x*|| without noise)",
        ),
        ("bound_error", "exp(-lambda_min t): the decay of the slowest mode, an upper bound without noise"),
        STATUS,
    )
    params = ("t_tau", "seed_index", "seed")
    summary = Summary(("t_tau",), ("theory_error", "bound_error"))
    grid_options = frozenset({"kappa0"})
    # t: multiples of 1/lambda_min
    defaults = {"t": ((0.125, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10), (0.25, 0.5, 1, 2, 4)), "seeds": (1, 1)}
    backends = ("ngspice", "ou")

    def add_arguments(self, group) -> None:
        group.add_argument(
            "--t", nargs="+", metavar="RANGE", help="analog times in tau (default 0.125 ... 10 times 1/lambda_min)"
        )
        group.add_argument("--kappa0", type=float, help="noise level of every run (default 0)")

    def resolve(self, given, quick, lam_min, backend):
        """The swept times (a range, unlike the other kinds) and one noise level for all of them."""
        t = given.get("t")
        if t is None:
            t = [round12(f / lam_min) for f in self.defaults["t"][int(quick)]]
        grid = {"t_tau": parse_range("t", t, lo=0, lo_open=True, hi=1e6)}
        k = parse_range("kappa0", given.get("kappa0", 0.0), lo=0)
        if len(k) != 1:
            raise SweepOptionError("--kappa0 takes one value for sweep time (the noise sweep takes a range)")
        return {"grid": grid, "kappa0": k[0]}

    def longest_t(self, spec):
        return max(spec["grid"]["t_tau"])

    def points(self, spec, seeds):
        return [
            {"t_tau": t, "seed_index": r, "seed": seeds[r]}
            for t, r in itertools.product(spec["grid"]["t_tau"], range(len(seeds)))
        ]

    def results(self, row, res, ctx, spec, t, kappa0):
        row["theory_error"] = theory_rms(ctx, t, kappa0)
        row["bound_error"] = math.exp(-ctx.lam_min * t)

    def plot(self, rows, spec, path):
        from ..sweep_plots import column, new_figure, ok_rows, positive, title
        from ..sweep_summary import summary_rows

        fig, (ax,) = new_figure(1)
        ok = ok_rows(rows)
        lam = spec["lambda_min"]
        ax.plot(column(ok, "t_tau"), positive(column(ok, "rel_error")), "o", label=f"{spec['backend']}")
        summ = [r for r in summary_rows(self.summary, rows) if r["n_ok"]]
        t = np.array([float(r["t_tau"]) for r in summ])
        ax.plot(
            t,
            [r["theory_error_mean"] for r in summ],
            "k-",
            lw=1,
            label="exact OU: sqrt(||exp(-At) x*||^2 + noise) / ||x*||",
        )
        tt = np.linspace(0, t.max() if t.size else 1, 200)
        ax.plot(tt, np.exp(-lam * tt), "r--", label=f"exp(-lambda_min t), lambda_min = {lam:.3g}")
        ax.set_yscale("log")
        ax.set_xlabel("analog time t (tau)")
        ax.set_ylabel("relative error ||x(t) - x*|| / ||x*||, x(0) = 0")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        k = spec.get("kappa0", 0.0)
        fig.suptitle(title(spec) + (f"; kappa0 = {k:g}" if k else ""), fontsize=9)
        fig.savefig(path, dpi=110)
