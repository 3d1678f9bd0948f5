"""sweep noise: the programmed noise level kappa0 and the resistors' temperature (Johnson noise)."""

from __future__ import annotations

import itertools

import numpy as np

from ..ranges import parse_range
from ..sweep_errors import SweepOptionError
from ..sweep_point import theory_rms
from .base import POINT, REL, STATUS, Summary, SweepKind, circuit_backend


class Noise(SweepKind):
    """kappa0 x temperature x seeds. Seed index r uses the same noise seed at every (kappa0, T):
    common random numbers, so differences between grid values are not masked by sampling noise."""

    name = "noise"
    about = "kappa0 and temperature (Johnson noise) against the solution error and its spread over seeds"
    columns = (
        POINT,
        ("kappa0", "programmable noise level kappa0"),
        ("temperature_k", "temperature of every resistor for Johnson noise, K (0: none)"),
        ("seed_index", "repetition r = 0..S-1 (same r, same noise seed at every grid value)"),
        ("seed", "noise seed given to the backend"),
        ("t_tau", "analog time of the solve from x0 = 0, in tau"),
        REL,
        (
            "theory_rms_error",
            "sqrt(E||x(t) - x*||^2) / ||x*|| of the ideal OU process with this kappa0 (Johnson noise not included)",
        ),
        STATUS,
    )
    params = ("kappa0", "temperature_k", "seed_index", "seed", "t_tau")
    summary = Summary(("kappa0", "temperature_k"), ("theory_rms_error",))
    grid_options = frozenset({"kappa0", "temperature"})
    defaults = {"kappa0": ("0,1e-4,1e-3,1e-2,1e-1", "1e-3,1e-2"), "temperature": ("0,300", "0,300"), "seeds": (4, 2)}
    backends = ("ngspice", "ou")

    def add_grid_arguments(self, group) -> None:
        group.add_argument("--kappa0", nargs="+", metavar="RANGE", help="kappa0 values (default 0,1e-4,1e-3,1e-2,1e-1)")
        group.add_argument(
            "--temperature",
            nargs="+",
            metavar="RANGE",
            help="resistor temperatures in K for Johnson noise, 0 = none (default 0,300)",
        )

    def grid(self, given, quick, backend):
        grid = {
            "kappa0": parse_range("kappa0", self.default(given, "kappa0", quick), lo=0),
            "temperature_k": parse_range("temperature", self.default(given, "temperature", quick), lo=0, hi=1000),
        }
        if not circuit_backend(backend) and any(T > 0 for T in grid["temperature_k"]):
            raise SweepOptionError(
                "Johnson noise (--temperature > 0) exists only in the circuit: use --backend "
                "ngspice, or --temperature 0 with --backend ou"
            )
        return grid

    def points(self, spec, seeds):
        g = spec["grid"]
        return [
            {"kappa0": k, "temperature_k": T, "seed_index": r, "seed": seeds[r], "t_tau": spec["t_tau"]}
            for k, T, r in itertools.product(g["kappa0"], g["temperature_k"], range(len(seeds)))
        ]

    def design(self, pt):
        from circuits.design import Design

        return Design(temperature=pt["temperature_k"] or None)

    def results(self, row, res, ctx, spec, t, kappa0):
        row["theory_rms_error"] = theory_rms(ctx, t, kappa0)

    def plot(self, rows, spec, path):
        from ..sweep_plots import column, new_figure, ok_rows, positive, title
        from ..sweep_summary import summary_rows

        fig, (ax, ax2) = new_figure(2)
        summ = summary_rows(self.summary, rows)
        kap_pos = sorted({float(r["kappa0"]) for r in rows if float(r["kappa0"]) > 0})
        for T in sorted({float(r["temperature_k"]) for r in summ}):
            s = [r for r in summ if float(r["temperature_k"]) == T and r["n_ok"]]
            if not s:
                continue
            kap = np.array([float(r["kappa0"]) for r in s])
            lab = "no Johnson noise" if T == 0 else f"T = {T:g} K"
            (line,) = ax.plot(kap, positive([r["rel_error_rms"] for r in s]), "o-", label=f"rms over seeds, {lab}")
            pts = [r for r in ok_rows(rows) if float(r["temperature_k"]) == T]
            ax.plot(column(pts, "kappa0"), positive(column(pts, "rel_error")), ".", color=line.get_color(), alpha=0.4)
            std = np.array([r["rel_error_std"] for r in s])
            if np.any(std > 0):  # zero spread (deterministic runs) has no place on a log axis: left out
                ax2.plot(kap[std > 0], std[std > 0], "o-", color=line.get_color(), label=f"std over seeds, {lab}")
        self._theory(ax, ax2, summ, kap_pos)
        lin = kap_pos[0] if kap_pos else 1e-4
        for a in (ax, ax2):
            a.set_xscale("symlog", linthresh=lin)  # kappa0 = 0 (no programmed noise) stays on the axis
            a.set_xlabel("kappa0")
            a.grid(True, which="both", alpha=0.3)
            if a.get_legend_handles_labels()[0]:
                a.set_yscale("log")
                a.legend(fontsize=7)
        if not ax2.get_legend_handles_labels()[0]:
            ax2.text(0.5, 0.5, "no spread (one seed, or no noise)", ha="center", transform=ax2.transAxes)
        ax.set_ylabel(f"relative error ||x - x*|| / ||x*|| at t = {spec['t_tau']:g} tau")
        ax2.set_ylabel(f"spread of the error over {spec['seeds']} seeds (std)")
        fig.suptitle(title(spec), fontsize=9)
        fig.savefig(path, dpi=110)

    @staticmethod
    def _theory(ax, ax2, summ, kap_pos) -> None:
        """The ideal OU error (at T = 0, else the first temperature with results) and the sqrt(kappa0)
        law of the spread."""
        s0 = [r for r in summ if float(r["temperature_k"]) == 0 and r["n_ok"]] or [r for r in summ if r["n_ok"]]
        if not s0:
            return
        k0 = [r for r in summ if r["temperature_k"] == s0[0]["temperature_k"] and r["n_ok"]]
        ax.plot(
            [float(r["kappa0"]) for r in k0],
            [r["theory_rms_error_mean"] for r in k0],
            "k--",
            label="theory (ideal OU, kappa0 only)",
        )
        top = [r for r in k0 if kap_pos and float(r["kappa0"]) == kap_pos[-1]]
        if len(kap_pos) > 1 and top and top[0]["rel_error_std"] > 0:
            ax2.plot(
                kap_pos,
                top[0]["rel_error_std"] * np.sqrt(np.array(kap_pos) / kap_pos[-1]),
                "k:",
                label="∝ sqrt(kappa0)",
            )
