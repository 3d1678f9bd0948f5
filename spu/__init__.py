"""The SPU device: problem types, backends and the timing model.

Only the bottom layer (spu.core) is imported eagerly. SPU, SPUResult and BACKENDS come from
spu.device on first use (PEP 562), so `import spu.core.x` -- which circuits/ does -- never runs
the device module and therefore never reaches back into circuits/.
"""

from .core.errors import DesignError, NgspiceError, NgspiceNotFound, NgspiceTimeout, ProblemError, ThermospiceError
from .core.problems import DenseProblem, FactoredProblem, GGNProblem

_DEVICE_NAMES = ("SPU", "SPUResult", "BACKENDS")

__all__ = [
    "SPU",
    "SPUResult",
    "BACKENDS",
    "DenseProblem",
    "FactoredProblem",
    "GGNProblem",
    "ThermospiceError",
    "ProblemError",
    "DesignError",
    "NgspiceError",
    "NgspiceNotFound",
    "NgspiceTimeout",
]


def __getattr__(name: str):
    if name in _DEVICE_NAMES:
        from . import device

        return getattr(device, name)
    raise AttributeError(f"module 'spu' has no attribute {name!r}")
