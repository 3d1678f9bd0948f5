"""Exceptions with messages that name the problem.

Every error a user can provoke derives from ThermospiceError, so the command line can print one
line and exit non-zero instead of showing a traceback.
"""


class ThermospiceError(Exception):
    """Base class of every error thermospice raises on purpose."""


class ProblemError(ThermospiceError, ValueError):
    """A linear system that the SPU cannot take: bad shape, non-finite, not symmetric, not SPD."""


class DesignError(ThermospiceError, ValueError):
    """Circuit design parameters or component values outside what the hardware allows."""


class NgspiceError(ThermospiceError, RuntimeError):
    """ngspice is missing, failed, or produced output that cannot be read."""


class NgspiceNotFound(NgspiceError):
    pass


class NgspiceTimeout(NgspiceError):
    pass


class UnstableCircuitError(ThermospiceError, RuntimeError):
    """The realised (as-built) drift has a mode that grows: the circuit would run to its rails."""


class LimitError(ThermospiceError, ValueError):
    """A run that would need more memory, time steps or sweep points than its limit (spu/limits.py)."""
