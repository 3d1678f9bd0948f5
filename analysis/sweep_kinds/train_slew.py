"""sweep train-slew: TNGD on the realised circuit against the op-amps' slew rate."""

from __future__ import annotations

from .train_base import TrainOpampValue


class TrainSlew(TrainOpampValue):
    """The circuit's tau is 1 us and its states move by ~1 V per tau: slopes of ~1e6 V/s, which
    the default values bracket."""

    name = "train-slew"
    about = "TNGD on the realised circuit against the op-amps' slew rate"
    option = "slew"
    field = "slew"
    unit = "V/s"
    default_settings = [1e8, 1e7, 1e6, 1e5]
    xlabel = "op-amp slew rate, V/s"
