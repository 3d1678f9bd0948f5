"""What every training sweep kind provides (`thermospice sweep train-*`, analysis/train_sweeps.py):
the setting it varies, how a setting becomes a circuit design, and how the settings are drawn."""

from __future__ import annotations

import numpy as np

# The resistors keep this resolution where a sweep is not about bits: the digits CNN's J_f has
# entries ~1e-6 of its largest, which need rounding to zero.
BASE_BITS = 16


class TrainSweepKind:
    name: str
    about: str  # one line: the subcommand's help and description
    default_settings: list  # the settings swept when the command line names none
    default_t = 50.0  # analog time per step in tau (the paper's TNGD setting)
    xlabel: str  # the plot's x axis

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
