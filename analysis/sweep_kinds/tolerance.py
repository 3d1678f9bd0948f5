"""sweep tolerance: Monte Carlo over the relative sigma of every resistor and capacitor."""

from __future__ import annotations

import itertools

import numpy as np

from ..ranges import parse_range
from .base import POINT, REL, SETTLE, STATUS, Summary, SweepKind, asbuilt_error, settling


class Tolerance(SweepKind):
    """Relative sigma of R (tol_r) x of C (tol_c) x draws; draw r uses the same component seed at
    every (tol_r, tol_c), so the error grows smoothly with sigma."""

    name = "tolerance"
    about = "Monte Carlo over the relative sigma of every R and C (fabrication tolerance)"
    columns = (
        POINT,
        ("tol_r", "relative sigma of every resistor"),
        ("tol_c", "relative sigma of every capacitor"),
        ("draw", "Monte Carlo draw r = 0..S-1 (same r, same component seed at every grid value)"),
        ("component_seed", "seed of the component draws"),
        REL,
        ("asbuilt_error", "steady-state error of the as-built circuit (no simulation; component report)"),
        SETTLE,
        STATUS,
    )
    params = ("tol_r", "tol_c", "draw", "component_seed")
    summary = Summary(("tol_r", "tol_c"), ("asbuilt_error", "settle_tau"))
    grid_options = frozenset({"tol_r", "tol_c"})
    defaults = {"tol_r": ("0,0.001,0.003,0.01,0.03,0.1", "0.01,0.05"), "tol_c": ("0,0.05", "0,0.05"), "seeds": (8, 2)}
    settles = True
    report = True

    def add_grid_arguments(self, group) -> None:
        group.add_argument(
            "--tol-r",
            nargs="+",
            metavar="RANGE",
            help="relative sigma of every R (default 0,0.001,0.003,0.01,0.03,0.1)",
        )
        group.add_argument("--tol-c", nargs="+", metavar="RANGE", help="relative sigma of every C (default 0,0.05)")

    def grid(self, given, quick, backend):
        return {
            key: parse_range(key, self.default(given, key, quick), lo=0, hi=0.5, hi_open=True)
            for key in ("tol_r", "tol_c")
        }

    def points(self, spec, seeds):
        g = spec["grid"]
        return [
            {"tol_r": tr, "tol_c": tc, "draw": r, "component_seed": seeds[r]}
            for tr, tc, r in itertools.product(g["tol_r"], g["tol_c"], range(len(seeds)))
        ]

    def design(self, pt):
        from circuits.design import Design

        return Design(tol_r=pt["tol_r"], tol_c=pt["tol_c"], component_seed=pt["component_seed"])

    def results(self, row, res, ctx, spec, t, kappa0):
        row["asbuilt_error"] = asbuilt_error(res)
        settling(row, res, ctx, spec)

    def plot(self, rows, spec, path):
        from ..sweep_plots import column, new_figure, ok_rows, positive, title
        from ..sweep_summary import summary_rows

        fig, (ax, ax2) = new_figure(2)
        summ = summary_rows(self.summary, rows)
        for tc in sorted({float(r["tol_c"]) for r in rows}):
            pts = [r for r in ok_rows(rows) if float(r["tol_c"]) == tc]
            s = [r for r in summ if float(r["tol_c"]) == tc and r["n_ok"]]
            tr = np.array([float(r["tol_r"]) for r in s])
            (line,) = ax.plot(tr, positive([r["rel_error_rms"] for r in s]), "o-", label=f"ngspice rms, tol_c = {tc:g}")
            ax.plot(column(pts, "tol_r"), positive(column(pts, "rel_error")), ".", color=line.get_color(), alpha=0.4)
            ax.plot(
                tr,
                positive([r["asbuilt_error_mean"] for r in s]),
                "x--",
                color=line.get_color(),
                label=f"as-built steady state (mean), tol_c = {tc:g}",
            )
            st = column(pts, "settle_tau")
            ax2.plot(
                column(pts, "tol_r"),
                np.where(np.isfinite(st), st, np.nan),
                "o",
                color=line.get_color(),
                alpha=0.6,
                label=f"tol_c = {tc:g}",
            )
        ax.set_xscale("symlog", linthresh=min([v for v in spec["grid"]["tol_r"] if v > 0] or [1e-3]))
        ax.set_yscale("log")
        ax.set_xlabel("tol_r (relative sigma of every R)")
        ax.set_ylabel("relative error ||x - x*|| / ||x*||")
        ax2.set_xscale("symlog", linthresh=min([v for v in spec["grid"]["tol_r"] if v > 0] or [1e-3]))
        ax2.set_xlabel("tol_r")
        ax2.set_ylabel(f"settling time to {spec['settle_tol']:g} (tau)")
        for a in (ax, ax2):
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=7)
        fig.suptitle(title(spec) + f"; {spec['seeds']} draws per point", fontsize=9)
        fig.savefig(path, dpi=110)
