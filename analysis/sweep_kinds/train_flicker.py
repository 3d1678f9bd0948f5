"""sweep train-flicker: TNGD on the realised circuit against the op-amps' 1/f noise corner."""

from __future__ import annotations

from .. import ranges
from ..ranges import parse_range
from ..sweep_errors import SweepOptionError
from .train_base import BASE_BITS, TrainSweepKind, indexed

NOISE_DENSITY = 1e-6  # V/sqrt(Hz): a noisy amplifier, so that the 1/f part is seen at all
CORNERS = [1e2, 1e4, 1e6]


class TrainFlicker(TrainSweepKind):
    """A setting is a pair [noise density V/sqrt(Hz), 1/f corner Hz]: each corner at the one density."""

    name = "train-flicker"
    about = "TNGD on the realised circuit against the op-amps' 1/f noise corner at a given noise density"
    default_settings = [[NOISE_DENSITY, c] for c in CORNERS]
    xlabel = "1/f corner, Hz (at the noise density)"
    option_names = {"opamp.noise_density": "--noise-density", "opamp.flicker_corner": "--flicker-corner"}

    def add_arguments(self, group) -> None:
        group.add_argument("--flicker-corner", help="comma-separated 1/f corners, Hz (default 100,10000,1e6)")
        group.add_argument(
            "--noise-density",
            type=float,
            help=f"white input voltage-noise density of the op-amps, V/sqrt(Hz) (default {NOISE_DENSITY:g})",
        )

    def settings(self, args):
        if args.flicker_corner is None and args.noise_density is None:
            return None
        density = NOISE_DENSITY if args.noise_density is None else args.noise_density
        if not density > 0:  # a 1/f corner scales the white level: 0 would leave nothing to sweep
            raise SweepOptionError(f"--noise-density must be > 0 V/sqrt(Hz), got {density:g}")
        corners = parse_range("flicker_corner", args.flicker_corner or CORNERS, lo=0.0, lo_open=True, sort=False)
        return [[density, c] for c in corners]

    def count(self, args) -> int:
        return ranges.count(args.flicker_corner or CORNERS)

    def design_for(self, setting):
        density, corner = (float(v) for v in setting)
        return {"bits_r": BASE_BITS, "opamp": {"noise_density": density, "flicker_corner": corner}}, 0.0

    def axis(self, settings):
        return indexed([f"{c:g} Hz at {d:g}" for d, c in settings])
