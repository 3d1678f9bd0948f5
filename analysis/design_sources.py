"""Where a command's circuit design comes from, in order, each over the one before: Design's
defaults, the named presets (--preset, circuits/presets.py), a design file (--design-file,
circuits/design_file.py), and the design flags given (DESIGN_FLAGS of analysis/problem_args.py).
Errors in the design come back in the command line's names: the option, not the field."""

from __future__ import annotations

import argparse

from circuits import design_file
from circuits.design import Design
from circuits.presets import PRESETS, merge, preset_fields
from spu.core.errors import DesignError

from .io import output_file


def _preset_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected preset names, got {text!r}")
    for name in names:
        if name not in PRESETS:
            raise argparse.ArgumentTypeError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return names


def add_design_sources(group) -> None:
    group.add_argument(
        "--preset",
        action="append",
        type=_preset_names,
        metavar="NAME[,NAME]",
        help=f"hardware preset(s), repeated or comma-separated, applied in order: {', '.join(PRESETS)} "
        "(typical figures of the part class, docs/HARDWARE_PRESETS.md); the design file and the "
        "options given override them",
    )
    group.add_argument(
        "--design-file",
        metavar="FILE",
        help="JSON object of design fields (as `netlist` writes beside its netlist); the options given override it",
    )


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def flag_fields(args, flags) -> dict:
    """The design fields the flags given on the command line set (parts as dicts)."""
    fields: dict = {}
    for f in flags.values():
        value = getattr(args, _dest(f.flag), None)
        if value is None or value is False:
            continue
        value = f.store if f.type is bool else value
        part, _, name = f.field.rpartition(".")
        if part:
            fields.setdefault(part, {})[name] = value
        else:
            fields[name] = value
    return fields


def design_fields(args, flags) -> dict:
    """The design fields of the presets, the design file and the flags given, in that order."""
    fields = preset_fields(name for group in (getattr(args, "preset", None) or []) for name in group)
    path = getattr(args, "design_file", None)
    if path:
        fields = merge(fields, design_file.load(path))
    return merge(fields, flag_fields(args, flags))


def named_design(fields: dict, flags) -> Design:
    """The checked Design of `fields`; a DesignError names the options of the fields it is about."""
    try:
        return design_file.design_of(fields)
    except DesignError as exc:
        names = {f.field: f.flag for f in flags.values()}
        raise DesignError(design_file.rename_fields(str(exc), names)) from None


def write_design(path: str, design: Design) -> None:
    with output_file(path) as fh:
        fh.write(design_file.dumps(design))
