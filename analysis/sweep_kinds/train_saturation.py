"""sweep train-saturation: TNGD on the realised circuit against the op-amps' output swing."""

from __future__ import annotations

from .train_base import TrainOpampValue


class TrainSaturation(TrainOpampValue):
    """Every op-amp output clips at +-swing V. The state is V(x) = v_unit x (1 V per unit of x in
    training), so a swing of s V clips each component of the natural-gradient estimate at s."""

    name = "train-saturation"
    about = "TNGD on the realised circuit against the op-amps' output swing (clipping the state's range)"
    option = "swing"
    field = "swing"
    unit = "V (at most the rails, 15 V; the state clips at |x| = swing / v_unit)"
    default_settings = [10.0, 3.0, 1.0, 0.3, 0.1]
    xlabel = "op-amp output swing, V (clips |x| at swing / v_unit)"
