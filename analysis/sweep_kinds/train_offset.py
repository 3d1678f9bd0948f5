"""sweep train-offset: TNGD on the realised circuit against the op-amps' input offset voltage."""

from __future__ import annotations

from .train_base import TrainOpampValue


class TrainOffset(TrainOpampValue):
    name = "train-offset"
    about = "TNGD on the realised circuit against the op-amps' input offset voltage (sigma per part)"
    option = "opamp_offset"
    field = "offset"
    lo_open = False  # 0: the realised circuit without offsets, the line the others start from
    unit = "V (sigma of each op-amp's offset, drawn per seed)"
    default_settings = [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
    xlabel = "op-amp input offset, V (sigma)"
