"""The sweep kinds, each an object in its own module, and the one place they are found by name.

Hardware sweeps (``SweepKind``, run by analysis/sweeps.py) and training sweeps
(``TrainSweepKind``, run by analysis/train_sweeps.py); `thermospice sweep KIND` lists them in the
order below. To add a kind, write its module and add it here."""

from __future__ import annotations

from ..sweep_errors import SweepOptionError, UnknownKindError
from .base import Summary, SweepKind, circuit_backend
from .bits import Bits
from .noise import Noise
from .opamp import Opamp
from .time import Time
from .tolerance import Tolerance
from .train_base import TrainSweepKind
from .train_bits import TrainBits
from .train_converters import TrainConverters
from .train_flicker import TrainFlicker
from .train_noise import TrainNoise
from .train_offset import TrainOffset
from .train_presets import TrainPresets
from .train_saturation import TrainSaturation
from .train_slew import TrainSlew
from .train_tolerance import TrainTolerance

SWEEP_KINDS: dict[str, SweepKind] = {k.name: k for k in (Noise(), Tolerance(), Bits(), Opamp(), Time())}
TRAIN_KINDS: dict[str, TrainSweepKind] = {
    k.name: k
    for k in (
        TrainBits(),
        TrainTolerance(),
        TrainNoise(),
        TrainOffset(),
        TrainSaturation(),
        TrainSlew(),
        TrainFlicker(),
        TrainConverters(),
        TrainPresets(),
    )
}

__all__ = [
    "circuit_backend",
    "SWEEP_KINDS",
    "TRAIN_KINDS",
    "Summary",
    "SweepKind",
    "TrainSweepKind",
    "sweep_kind",
    "train_kind",
]


def sweep_kind(name) -> SweepKind:
    try:
        return SWEEP_KINDS[name]
    except (KeyError, TypeError):  # TypeError: not a name at all (e.g. a list)
        raise UnknownKindError(f"unknown sweep kind {name!r}; choose one of {', '.join(SWEEP_KINDS)}") from None


def train_kind(name) -> TrainSweepKind:
    try:
        return TRAIN_KINDS[name]
    except (KeyError, TypeError):
        raise SweepOptionError(f"unknown training sweep {name!r}; choose one of {', '.join(TRAIN_KINDS)}") from None
