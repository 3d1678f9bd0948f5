"""What every training sweep kind provides (`thermospice sweep train-*`, analysis/train_sweeps.py):
the setting it varies, how a setting becomes a circuit design, and how the settings are drawn."""

from __future__ import annotations

import numpy as np

from .. import ranges
from ..ranges import parse_range

# The resistors keep this resolution where a sweep is not about bits: the digits CNN's J_f has
# entries ~1e-6 of its largest, which need rounding to zero.
BASE_BITS = 16


class TrainSweepKind:
    name: str
    about: str  # one line: the subcommand's help and description
    default_settings: list  # the settings swept when the command line names none
    default_t = 50.0  # analog time per step in tau (the paper's TNGD setting)
    xlabel: str  # the plot's x axis
    # Design field path -> the option that sets it, so that an error in a setting names the option.
    option_names: dict[str, str] = {}

    def add_arguments(self, group) -> None:
        raise NotImplementedError

    def settings(self, args) -> list | None:
        """The settings named on the command line; None: the default ones."""
        raise NotImplementedError

    def count(self, args) -> int:
        """How many settings the command line names, counted without making them (a
        ``lin:1:8:1000000000`` is refused by its size before it allocates)."""
        raise NotImplementedError

    def design_for(self, setting) -> tuple[dict, float]:
        """(circuits.Design fields, kappa0) of one setting, over training/loop.py ASBUILT_DESIGN
        (which also widens r_max for 16-bit arrays)."""
        raise NotImplementedError

    def axis(self, settings: list) -> tuple[np.ndarray, list[str] | None]:
        """x positions of the settings in the plot, and tick labels (None: the values are numbers
        on their own axis)."""
        return np.array(settings, float), None


def indexed(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Settings drawn at equal spacing with their own labels: values spanning decades, with 0 or
    without a numeric order."""
    return np.arange(len(labels)), labels


class TrainOpampValue(TrainSweepKind):
    """One op-amp field swept over values given as a range (--OPTION), on 16-bit resistors."""

    option: str  # the range option's dest (--opamp-offset -> opamp_offset)
    field: str  # the OpAmp field it sets
    lo_open = True  # values must be > 0 (offset: >= 0)
    unit: str

    def add_arguments(self, group) -> None:
        defaults = ",".join(f"{v:g}" for v in self.default_settings)
        group.add_argument(
            f"--{self.option.replace('_', '-')}", help=f"comma-separated values, {self.unit} (default {defaults})"
        )

    def settings(self, args):
        spec = getattr(args, self.option)
        return parse_range(self.option, spec, lo=0.0, lo_open=self.lo_open, sort=False) if spec else None

    def count(self, args) -> int:
        spec = getattr(args, self.option)
        return ranges.count(spec) if spec else len(self.default_settings)

    @property
    def option_names(self) -> dict[str, str]:
        return {f"opamp.{self.field}": f"--{self.option.replace('_', '-')}"}

    def design_for(self, setting):
        return {"bits_r": BASE_BITS, "opamp": {self.field: float(setting)}}, 0.0

    def axis(self, settings):
        return indexed([f"{v:g}" for v in settings])
