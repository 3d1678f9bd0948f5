"""sweep train-tolerance: TNGD on the realised circuit against the tolerance of every R and C."""

from __future__ import annotations

from .. import ranges
from ..ranges import parse_range
from .train_base import BASE_BITS, TrainSweepKind


class TrainTolerance(TrainSweepKind):
    name = "train-tolerance"
    about = "TNGD on the realised circuit against the fabrication tolerance of every R and C"
    default_settings = [0.0, 0.005, 0.01, 0.02, 0.05]
    xlabel = "relative tolerance of every R and C"

    def add_arguments(self, group) -> None:
        group.add_argument(
            "--tol", help="comma-separated relative tolerances of every R and C (default 0,0.005,0.01,0.02,0.05)"
        )

    def settings(self, args):
        return parse_range("tol", args.tol, sort=False) if args.tol else None

    def count(self, args) -> int:
        return ranges.count(args.tol) if args.tol else len(self.default_settings)

    def design_for(self, setting):
        tol = float(setting)
        return {"bits_r": BASE_BITS, "tol_r": tol, "tol_c": tol}, 0.0
