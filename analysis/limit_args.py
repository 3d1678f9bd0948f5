"""The command-line options that raise the resource limits (spu/limits.py), declared one way.

A command names the limits it checks: add_limit_args(parser, "memory", "steps"); its handler
gets them back as one spu.limits.Limits with limits_from_args(args)."""

from __future__ import annotations

import argparse

from spu.limits import DEFAULT_POINTS, DEFAULT_STEPS, Limits, parse_size


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"must be a number >= 1 (e.g. 1e9), got {text!r}")
    return value


_OPTIONS = {
    "memory": (
        "--max-memory",
        dict(
            type=_size,
            metavar="SIZE",
            help="refuse a run estimated to need more memory than this, e.g. 8G (default: half the available memory)",
        ),
    ),
    "steps": (
        "--max-steps",
        dict(
            type=_count,
            metavar="N",
            help=f"refuse a simulation of more time steps than this: ngspice time points, "
            f"euler/baoab steps (default {DEFAULT_STEPS:.0e})",
        ),
    ),
    "points": (
        "--max-points",
        dict(
            type=_count,
            metavar="N",
            help=f"refuse a sweep of more grid points than this (default {DEFAULT_POINTS:.0e})",
        ),
    ),
}


def add_limit_args(parser, *names: str) -> None:
    """Declare the limit options `names` ("memory", "steps", "points") in a group of their own."""
    group = parser.add_argument_group("limits (checked before anything runs)")
    for name in names:
        flag, kwargs = _OPTIONS[name]
        group.add_argument(flag, **kwargs)


def limits_from_args(args) -> Limits:
    """The Limits the options give (each option not declared or not given keeps its default)."""
    given = {name: getattr(args, flag[2:].replace("-", "_"), None) for name, (flag, _) in _OPTIONS.items()}
    return Limits(**{name: value for name, value in given.items() if value is not None})
