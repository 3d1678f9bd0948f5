"""The oscillator cells' parameters and the independent mode (m_k, w_k, g_k) of each eigenvalue of A.

The two encodings (resistive: A is the stiffness; capacitive: A is the mass) are described in the
package docstring; everything else in the package works mode by mode from ``OscillatorParams.modes``."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ProblemError

COUPLINGS = ("resistive", "capacitive")


@dataclass(frozen=True)
class OscillatorParams:
    """Oscillator-cell parameters, in units of the RC cell (R0, C, tau = R0 C).

    mass       m: inductance L = m R0^2 C (resistive coupling: sqrt(L C) = sqrt(m) tau).
    gamma      damping gamma: series damping resistor R = gamma R0 (resistive coupling), parallel
               damping resistor R = R0 / gamma (capacitive coupling). Set gamma OR zeta.
    zeta       damping ratio of the slowest mode (default 1 when gamma is not given).
    coupling   "resistive" (matrix = stiffness, solves and inverts) or "capacitive" (matrix = mass /
               capacitance matrix, inverts only; Melanson et al.).
    stiffness  k of the capacitive coupling: grounded inductor L = R0^2 C / k.
    """

    mass: float = 1.0
    gamma: float | None = None
    zeta: float | None = None
    coupling: str = "resistive"
    stiffness: float = 1.0

    def check(self) -> OscillatorParams:
        def pos(name, v):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ProblemError(f"oscillator {name} must be a finite number > 0, got {v!r}")

        pos("mass", self.mass)
        pos("stiffness", self.stiffness)
        if self.gamma is not None and self.zeta is not None:
            raise ProblemError("give the oscillator damping as gamma or as zeta, not both")
        if self.gamma is not None:
            pos("gamma", self.gamma)
        if self.zeta is not None:
            pos("zeta", self.zeta)
        if self.coupling not in COUPLINGS:
            raise ProblemError(f"oscillator coupling must be one of {', '.join(COUPLINGS)}, got {self.coupling!r}")
        return self

    @classmethod
    def make(cls, value=None, **overrides) -> OscillatorParams:
        """From None, an OscillatorParams or a dict, with overrides (None values ignored)."""
        if value is None:
            p = cls()
        elif isinstance(value, OscillatorParams):
            p = value
        elif isinstance(value, dict):
            unknown = set(value) - {"mass", "gamma", "zeta", "coupling", "stiffness"}
            if unknown:
                raise ProblemError(f"unknown oscillator option(s): {', '.join(sorted(unknown))}")
            p = cls(**value)
        else:
            raise ProblemError(
                f"oscillator parameters must be an OscillatorParams or a dict, got {type(value).__name__}"
            )
        over = {k: v for k, v in overrides.items() if v is not None}
        if "gamma" in over:
            p = replace(p, zeta=None)
        if "zeta" in over:
            p = replace(p, gamma=None)
        return replace(p, **over).check()

    def resolve_gamma(self, lam_min: float, lam_max: float) -> float:
        """The damping gamma (in tau units) for a matrix with eigenvalues in [lam_min, lam_max]."""
        if self.gamma is not None:
            return float(self.gamma)
        zeta = 1.0 if self.zeta is None else float(self.zeta)
        if self.coupling == "resistive":
            return 2.0 * zeta * math.sqrt(self.mass * lam_min)
        return 2.0 * zeta * math.sqrt(self.stiffness * lam_max)

    def modes(self, eigs: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(m_k, w_k, g_k) of the independent oscillator of each eigenvalue a_k of A."""
        eigs = np.asarray(eigs, dtype=float)
        one = np.ones_like(eigs)
        if self.coupling == "resistive":
            return self.mass * one, eigs.copy(), gamma * one
        return eigs.copy(), self.stiffness * one, gamma * one


def damping_ratios(m, w, g) -> np.ndarray:
    return np.asarray(g) / (2.0 * np.sqrt(np.asarray(m) * np.asarray(w)))
