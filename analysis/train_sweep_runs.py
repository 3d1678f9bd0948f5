"""The runs of a training sweep: the swept run (TNGD on the realised circuit) and the reference
runs drawn beside it. Apart from train_sweeps so that its plots can name them without a cycle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SWEPT_RUN = "asbuilt"  # the run of each setting: TNGD on the realised circuit (its backend's name)


@dataclass(frozen=True)
class ReferenceRun:
    """A run beside the swept ones, without the circuit's errors: drawn as a horizontal line."""

    label: str
    style: str
    color: str
    config: Callable[[dict], dict]  # spec -> its TrainConfig fields besides steps, seed, eval and batch


# In the order of the points of each seed (after the settings).
REFERENCE_RUNS = {
    "ou": ReferenceRun(
        "TNGD, ideal ou", "--", "k", lambda spec: {"optimizer": "tngd", "backend": "ou", "t": spec["t"]}
    ),
    "adam": ReferenceRun("Adam", ":", "C2", lambda spec: {"optimizer": "adam"}),
}
