"""sweep train-bits: TNGD on the realised circuit against the resolution of R, DAC and ADC."""

from __future__ import annotations

from .. import ranges
from ..ranges import parse_range
from .train_base import TrainSweepKind


class TrainBits(TrainSweepKind):
    name = "train-bits"
    about = "TNGD on the realised circuit against the resistor/DAC/ADC resolution (bits)"
    default_settings = [4, 6, 8, 10, 12, 16]
    xlabel = "bits (resistors, DAC and ADC)"

    def add_arguments(self, group) -> None:
        group.add_argument("--bits", help="comma-separated resolutions (default 4,6,8,10,12,16)")

    def settings(self, args):
        return parse_range("bits", args.bits, integer=True, sort=False) if args.bits else None

    def count(self, args) -> int:
        return ranges.count(args.bits) if args.bits else len(self.default_settings)

    def design_for(self, setting):
        b = int(setting)
        return {"bits_r": b, "bits_dac": b, "bits_adc": b}, 0.0
