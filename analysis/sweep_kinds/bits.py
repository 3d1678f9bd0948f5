"""sweep bits: the resolution of the resistors (r), the DAC (dac), the ADC (adc), or all three."""

from __future__ import annotations

import itertools

import numpy as np

from ..ranges import parse_range
from ..sweep_errors import EmptyRangeError, SweepOptionError
from .base import POINT, REL, STATUS, SweepKind, asbuilt_error

TARGETS = ("r", "dac", "adc", "all")
_QUANTISED = {"r": "bits_r", "dac": "bits_dac", "adc": "bits_adc"}  # target -> Design field
_NAMES = {"r": "resistors", "dac": "DAC", "adc": "ADC", "all": "all three"}


class Bits(SweepKind):
    name = "bits"
    about = "resolution of the resistors, the DAC and the ADC (degradation below about 8 bits)"
    columns = (
        POINT,
        ("target", "what is quantised: r (resistors), dac, adc, or all"),
        ("bits", "resolution in bits"),
        REL,
        (
            "asbuilt_error",
            "steady-state error of the as-built circuit from R and DAC quantisation "
            "(no simulation; the ADC is not in it)",
        ),
        STATUS,
    )
    params = ("target", "bits")
    grid_options = frozenset({"bits", "targets"})
    defaults = {"bits": ("4,6,8,10,12,14,16", "4,8,12"), "targets": ("r,dac,adc,all", "r,dac,adc"), "seeds": (1, 1)}
    random = False
    report = True

    def add_grid_arguments(self, group) -> None:
        group.add_argument("--bits", nargs="+", metavar="RANGE", help="resolutions in bits (default 4,6,...,16)")
        group.add_argument("--targets", help="what to quantise, comma-separated from r,dac,adc,all (default all four)")

    def grid(self, given, quick, backend):
        bits = parse_range("bits", self.default(given, "bits", quick), lo=1, hi=32, integer=True)
        tg = self.default(given, "targets", quick)
        tg = [s.strip().lower() for s in (tg.split(",") if isinstance(tg, str) else tg) if str(s).strip()]
        if not tg:
            raise EmptyRangeError("--targets: empty list (choose from r, dac, adc, all)")
        bad = [s for s in tg if s not in TARGETS]
        if bad:
            raise SweepOptionError(f"--targets: unknown target {bad[0]!r}; choose from {', '.join(TARGETS)}")
        return {"bits": bits, "target": [s for s in TARGETS if s in tg]}

    def points(self, spec, seeds):
        g = spec["grid"]
        return [{"target": tg, "bits": bits} for tg, bits in itertools.product(g["target"], g["bits"])]

    def design(self, pt):
        from circuits.design import Design

        tg, b = pt["target"], pt["bits"]
        return Design(**{field: b if tg in (part, "all") else None for part, field in _QUANTISED.items()})

    def results(self, row, res, ctx, spec, t, kappa0):
        row["asbuilt_error"] = asbuilt_error(res)

    def plot(self, rows, spec, path):
        from ..sweep_plots import column, new_figure, ok_rows, positive, title

        fig, (ax,) = new_figure(1)
        bits_all = sorted({int(r["bits"]) for r in rows})
        for tg in spec["grid"]["target"]:
            pts = [r for r in ok_rows(rows) if r["target"] == tg]
            if pts:
                ax.plot(column(pts, "bits"), positive(column(pts, "rel_error")), "o-", label=f"{_NAMES[tg]} (ngspice)")
        if bits_all:
            b = np.array(bits_all, float)
            ax.plot(b, 2.0**-b, "k:", label="2^-bits")
        ax.axvline(8, color="grey", ls="--", lw=0.8)
        ax.text(8, ax.get_ylim()[1], " 8 bits", va="top", fontsize=7, color="grey")
        ax.set_yscale("log")
        ax.set_xlabel("resolution (bits)")
        ax.set_ylabel(f"relative error ||x - x*|| / ||x*|| at t = {spec['t_tau']:g} tau")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.suptitle(title(spec), fontsize=9)
        fig.savefig(path, dpi=110)
