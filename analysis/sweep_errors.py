"""The errors of the sweeps (hardware and training): their own module, below the range parser and
the sweep kinds that raise them."""

from __future__ import annotations

from spu.core.errors import ThermospiceError


class SweepError(ThermospiceError):
    """A sweep that cannot run as asked."""


class UnknownKindError(SweepError, ValueError):
    pass


class SweepOptionError(SweepError, ValueError):
    """A bad option value: an empty range, a value out of bounds, an option of another kind."""


class EmptyRangeError(SweepOptionError):
    pass


class SweepMismatchError(SweepError):
    """The output folder holds results of a sweep with other parameters."""


class SweepInterrupted(SweepError):
    """Raised by the ``stop_after`` hook (and used for the message of a real interruption)."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result
