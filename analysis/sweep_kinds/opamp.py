"""sweep opamp: op-amp DC gain x gain-bandwidth product (single-pole model); error and settling."""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..ranges import parse_range
from ..sweep_point import ideal_settle_time
from .base import POINT, REL, SETTLE, STATUS, SweepKind, settling


class Opamp(SweepKind):
    """An ideal gain (inf) has no pole, so (ideal, finite GBW) pairs are left out of the grid."""

    name = "opamp"
    about = "op-amp DC gain and gain-bandwidth against the error and the settling time"
    columns = (
        POINT,
        ("gain", "op-amp DC gain (inf: ideal)"),
        ("gbw_hz", "gain-bandwidth product, Hz (inf: no pole)"),
        REL,
        SETTLE,
        ("ideal_settle_tau", "the same settling time for the ideal system (exact solution, same t)"),
        STATUS,
    )
    params = ("gain", "gbw_hz")
    grid_options = frozenset({"gain", "gbw"})
    defaults = {
        "gain": ("1e2,1e3,1e4,1e5,1e6,ideal", "1e3,1e5"),
        "gbw": ("1e6,1e7,1e8,none", "1e7,none"),
        "seeds": (1, 1),
    }
    random = False
    settles = True
    empty_hint = " (every gain is ideal and every GBW finite?)"

    def add_grid_arguments(self, group) -> None:
        group.add_argument(
            "--gain",
            nargs="+",
            metavar="RANGE",
            help="op-amp DC gains; 'ideal' = ideal op-amp (default 1e2,1e3,1e4,1e5,1e6,ideal)",
        )
        group.add_argument(
            "--gbw",
            nargs="+",
            metavar="RANGE",
            help="gain-bandwidth products in Hz; 'none' = no pole (default 1e6,1e7,1e8,none)",
        )

    def grid(self, given, quick, backend):
        return {
            "gain": parse_range(
                "gain", self.default(given, "gain", quick), lo=1, words={"ideal": math.inf, "inf": math.inf}
            ),
            "gbw_hz": parse_range(
                "gbw", self.default(given, "gbw", quick), lo=0, lo_open=True, words={"none": math.inf, "inf": math.inf}
            ),
        }

    def points(self, spec, seeds):
        g = spec["grid"]
        # A pole needs a finite DC gain (circuits.design.OpAmp).
        return [
            {"gain": gain, "gbw_hz": gbw}
            for gain, gbw in itertools.product(g["gain"], g["gbw_hz"])
            if not (math.isinf(gain) and math.isfinite(gbw))
        ]

    def design(self, pt):
        from circuits.design import Design, OpAmp

        gain = None if math.isinf(pt["gain"]) else pt["gain"]
        gbw = None if math.isinf(pt["gbw_hz"]) else pt["gbw_hz"]
        return Design(opamp=OpAmp(gain, gbw))

    def results(self, row, res, ctx, spec, t, kappa0):
        settling(row, res, ctx, spec)
        row["ideal_settle_tau"] = ideal_settle_time(ctx, t, spec["settle_tol"])

    def plot(self, rows, spec, path):
        from ..sweep_plots import column, new_figure, ok_rows, positive, title

        fig, (ax, ax2) = new_figure(2)
        ok = ok_rows(rows)
        finite = [g for g in sorted({float(r["gain"]) for r in ok}) if math.isfinite(g)]
        ideal_x = (max(finite) * 10) if finite else 1e9
        gx = lambda g: ideal_x if math.isinf(g) else g  # noqa: E731
        for gbw in sorted({float(r["gbw_hz"]) for r in rows}):
            pts = sorted([r for r in ok if float(r["gbw_hz"]) == gbw], key=lambda r: float(r["gain"]))
            lab = "no pole" if math.isinf(gbw) else f"GBW = {gbw:.3g} Hz"
            if not pts:
                continue
            g = [gx(float(r["gain"])) for r in pts]
            ax.plot(g, positive(column(pts, "rel_error")), "o-", label=lab)
            st = column(pts, "settle_tau")
            ax2.plot(g, np.where(np.isfinite(st), st, np.nan), "o-", label=lab)
        bad = [r for r in rows if r["status"] != "ok"]
        for r in bad:
            e = float(r["rel_error"])
            if math.isfinite(e) and e > 0:
                ax.plot(gx(float(r["gain"])), e, "rx")
            ax2.plot(gx(float(r["gain"])), 0, "rx")
        if bad:
            for a in (ax, ax2):
                a.plot([], [], "rx", label="unstable / unsettled / failed (GBW too low?)")
        if ok:
            ax2.axhline(float(ok[0]["ideal_settle_tau"]), color="k", ls="--", lw=0.8, label="ideal op-amps")
        for a in (ax, ax2):
            a.set_xscale("log")
            a.set_xlabel(f"op-amp DC gain (ideal drawn at {ideal_x:.0e})")
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel(f"relative error at t = {spec['t_tau']:g} tau")
        ax2.set_ylabel(f"settling time to {spec['settle_tol']:g} (tau)")
        fig.suptitle(title(spec), fontsize=9)
        fig.savefig(path, dpi=110)
