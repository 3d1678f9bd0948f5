"""sweep train-presets: TNGD on the realised circuit built with each named hardware preset."""

from __future__ import annotations

from circuits.presets import PRESETS, merge

from ..sweep_errors import SweepOptionError
from .train_base import BASE_BITS, TrainSweepKind, indexed


def preset_names(text: str, allowed: list[str]) -> list[str]:
    """The comma-separated preset names of an option, each one of `allowed`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise SweepOptionError(f"--presets: no preset named in {text!r}")
    for name in names:
        if name not in allowed:
            raise SweepOptionError(f"--presets: unknown preset {name!r}; choose from {', '.join(allowed)}")
    return names


class TrainPresets(TrainSweepKind):
    """A setting is a preset name (circuits/presets.py): an op-amp class or a converter class, on
    16-bit resistors."""

    name = "train-presets"
    about = "TNGD on the realised circuit built with each named hardware preset (op-amp and converter classes)"
    default_settings = list(PRESETS)
    xlabel = "hardware preset"

    def add_arguments(self, group) -> None:
        group.add_argument("--presets", help=f"comma-separated presets (default all: {', '.join(PRESETS)})")

    def settings(self, args):
        return preset_names(args.presets, list(PRESETS)) if args.presets else None

    def count(self, args) -> int:
        return len(preset_names(args.presets, list(PRESETS))) if args.presets else len(self.default_settings)

    def design_for(self, setting):
        return merge({"bits_r": BASE_BITS}, PRESETS[setting].fields), 0.0

    def axis(self, settings):
        return indexed(list(settings))
