"""sweep train-converters: TNGD on the realised circuit against the DAC and ADC errors (offset,
gain error, INL), given as values or as the converter presets."""

from __future__ import annotations

import itertools

from circuits.presets import PRESETS

from .. import ranges
from ..ranges import parse_range
from .train_base import BASE_BITS, TrainSweepKind, indexed
from .train_presets import preset_names

BITS = 12
# The converter presets, by the Design fields that make them one.
CONVERTER_PRESETS = [name for name, p in PRESETS.items() if "dac" in p.fields]


def _row(name: str) -> list:
    """[preset name, bits, offset V, gain error, INL LSB] of a converter preset (DAC and ADC alike)."""
    f = PRESETS[name].fields
    return [name, f["bits_dac"], f["dac"]["offset"], f["dac"]["gain_error"], f["dac"]["inl"]]


class TrainConverters(TrainSweepKind):
    """A setting is [preset name or "", bits, offset V, gain error, INL LSB], for the DACs and the
    ADCs alike: the numbers a preset stands for are in the CSV beside its name. By default each
    converter preset and the same resolution without errors (its quantisation alone)."""

    name = "train-converters"
    about = "TNGD on the realised circuit against the DAC/ADC offset, gain error and INL (values or presets)"
    default_settings = [r for name in CONVERTER_PRESETS for r in (["", _row(name)[1], 0.0, 0.0, 0.0], _row(name))]
    xlabel = "converters (DAC and ADC): preset, or bits / offset V / gain error / INL LSB"
    option_names = {
        **{f"{c}.{f}": f"--{f.replace('_', '-')}" for c in ("dac", "adc") for f in ("offset", "gain_error", "inl")},
        "bits_dac": "--bits",
        "bits_adc": "--bits",
    }

    def add_arguments(self, group) -> None:
        group.add_argument(
            "--presets", help=f"comma-separated converter presets ({', '.join(CONVERTER_PRESETS)}), run as they are"
        )
        group.add_argument("--offset", help="comma-separated offsets (sigma), V, of every DAC and ADC (default 0)")
        group.add_argument("--gain-error", help="comma-separated relative gain errors (sigma) (default 0)")
        group.add_argument("--inl", help="comma-separated peak INL, LSB (default 0)")
        group.add_argument("--bits", type=int, help=f"DAC and ADC resolution of the values swept (default {BITS})")

    def _values_given(self, args) -> bool:
        return any(v is not None for v in (args.offset, args.gain_error, args.inl, args.bits))

    def settings(self, args):
        if not (args.presets or self._values_given(args)):
            return None
        rows = [_row(name) for name in preset_names(args.presets, CONVERTER_PRESETS)] if args.presets else []
        if self._values_given(args):
            grids = [
                parse_range(o, getattr(args, o) or [0.0], lo=0.0, sort=False) for o in ("offset", "gain_error", "inl")
            ]
            bits = BITS if args.bits is None else args.bits
            rows += [["", bits, o, g, i] for o, g, i in itertools.product(*grids)]
        return rows

    def count(self, args) -> int:
        if not (args.presets or self._values_given(args)):
            return len(self.default_settings)
        given = self._values_given(args)
        grid = [ranges.count(getattr(args, o) or [0.0]) for o in ("offset", "gain_error", "inl")] if given else [0]
        presets = len([n for n in (args.presets or "").split(",") if n.strip()])
        return presets + (grid[0] * grid[1] * grid[2] if given else 0)

    def design_for(self, setting):
        _, bits, offset, gain_error, inl = setting
        conv = {"offset": float(offset), "gain_error": float(gain_error), "inl": float(inl)}
        return {"bits_r": BASE_BITS, "bits_dac": int(bits), "bits_adc": int(bits), "dac": conv, "adc": dict(conv)}, 0.0

    def axis(self, settings):
        return indexed([name or f"{b} bits / {o:g} / {g:g} / {i:g}" for name, b, o, g, i in settings])
