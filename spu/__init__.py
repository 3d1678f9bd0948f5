"""The SPU device: problem types, backends and the timing model."""
from .device import BACKENDS, SPU, SPUResult
from .errors import DesignError, NgspiceError, NgspiceNotFound, NgspiceTimeout, ProblemError, ThermospiceError
from .problems import DenseProblem, FactoredProblem, GGNProblem

__all__ = ["SPU", "SPUResult", "BACKENDS", "DenseProblem", "FactoredProblem", "GGNProblem", "ThermospiceError",
           "ProblemError", "DesignError", "NgspiceError", "NgspiceNotFound", "NgspiceTimeout"]
