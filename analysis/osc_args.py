"""Command-line options of the coupled-oscillator cells (topology "oscillator", backend "langevin")."""

from __future__ import annotations

import argparse

from spu.core.errors import ThermospiceError
from spu.core.underdamped import COUPLINGS, OscillatorParams

_FLAGS = ("mass", "gamma", "zeta", "coupling", "stiffness")


def add_oscillator_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("oscillator cells (--topology oscillator or --backend langevin)")
    g.add_argument("--mass", type=float, help="mass m: inductor L = m R0^2 C (default 1)")
    g.add_argument(
        "--gamma",
        type=float,
        help="damping gamma: series resistor gamma*R0 (resistive coupling) or parallel R0/gamma (capacitive)",
    )
    g.add_argument("--zeta", type=float, help="damping ratio of the slowest mode (default 1: critical)")
    g.add_argument(
        "--coupling",
        choices=COUPLINGS,
        help="resistive: A is the stiffness (solve + inverse, default); capacitive: A is the "
        "capacitance matrix (inverse only, b must be 0)",
    )
    g.add_argument("--stiffness", type=float, help="capacitive coupling: grounded inductor R0^2 C / k (default 1)")


def oscillator_from_args(args, *, applies: bool) -> OscillatorParams | None:
    """OscillatorParams from the flags; None when none was given. `applies`: whether the chosen
    backend/topology has oscillator cells (flags given otherwise are an error, not ignored)."""
    given = {k: getattr(args, k, None) for k in _FLAGS if getattr(args, k, None) is not None}
    if not given:
        return None
    if not applies:
        flags = ", ".join("--" + k for k in given)
        raise ThermospiceError(f"{flags} only apply to --topology oscillator or --backend langevin")
    return OscillatorParams.make(None, **given)
