"""A circuit design as a JSON file: data only (json.load, nothing is executed), every key checked
against circuits.Design, so a misspelt key is an error naming it rather than a setting silently
left at its default. The file holds Design's fields by name, with the parts (opamp, dac, adc) as
objects of their own fields; a file may give any subset of them.

Also how the design's own error messages name a field ("opamp slew", "bits_dac"), so that a
caller can say the same in its own names (a CLI option, a file key): `rename_fields`.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields as dataclass_fields

from spu.core.errors import DesignError

from .design import Converter, Design, OpAmp

PART_TYPES = {"opamp": OpAmp, "dac": Converter, "adc": Converter}


def field_paths() -> list[str]:
    """Every settable field: Design's own, and 'part.field' of the parts."""
    paths = []
    for f in dataclass_fields(Design):
        part = PART_TYPES.get(f.name)
        paths += [f"{f.name}.{g.name}" for g in dataclass_fields(part)] if part else [f.name]
    return paths


def _bool_fields() -> set[str]:
    return {f.name for f in dataclass_fields(Design) if isinstance(f.default, bool)}


def check_keys(data, where: str) -> dict:
    """`data` as Design fields: a DesignError naming the key (and the keys there are) for a key
    Design does not have, a part that is not an object, or a switch that is not true/false."""
    if not isinstance(data, dict):
        raise DesignError(f"{where}: expected an object of design fields, got {type(data).__name__}")
    known = [f.name for f in dataclass_fields(Design)]
    for key, value in data.items():
        if key not in known:
            raise DesignError(f"{where}: unknown key {key!r}; the keys are {', '.join(known)}")
        part = PART_TYPES.get(key)
        if part is not None:
            if not isinstance(value, dict):
                raise DesignError(f"{where}: {key} must be an object of its fields, got {value!r}")
            names = [f.name for f in dataclass_fields(part)]
            for sub in value:
                if sub not in names:
                    raise DesignError(f"{where}: unknown key '{key}.{sub}'; the {key} keys are {', '.join(names)}")
        elif key in _bool_fields() and not isinstance(value, bool):
            raise DesignError(f"{where}: {key} must be true or false, got {value!r}")
    return data


def design_of(fields: dict) -> Design:
    """The checked Design of checked fields (parts as dicts)."""
    parts = {k: PART_TYPES[k](**v) for k, v in fields.items() if k in PART_TYPES}
    return Design(**{**fields, **parts}).check()


def load(path: str) -> dict:
    """The design fields a JSON file holds, keys checked and the values checked as a design of
    their own (errors name the file and the key)."""
    where = f"design file {path}"
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise DesignError(f"cannot read {where}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DesignError(f"{where} is not JSON: {exc}") from None
    check_keys(data, where)
    try:
        design_of(data)
    except DesignError as exc:
        names = {p: f"key {p!r}" for p in field_paths()}
        raise DesignError(f"{where}: {rename_fields(str(exc), names)}") from None
    return data


def dumps(design: Design) -> str:
    """Every field of `design` as JSON (floats written exactly: json uses repr)."""
    return json.dumps(design.as_dict(), indent=2) + "\n"


def _phrases(path: str, unique_leaves: set[str]) -> list[str]:
    """How design.py's messages name the field `path`: 'opamp slew' for opamp.slew, and the bare
    name of a part's field where no other part has it (flicker_corner)."""
    part, _, leaf = path.rpartition(".")
    if not part:
        return [leaf] if "_" in leaf else []  # one-word names (R0, C, rails) are too common to rewrite
    return [f"{part} {leaf}"] + ([leaf] if "_" in leaf and leaf in unique_leaves else [])


def rename_fields(message: str, names: dict[str, str]) -> str:
    """`message` with each field that `names` maps (path -> the caller's name) called by that name."""
    leaves = [p.rpartition(".")[2] for p in names if "." in p]
    unique = {leaf for leaf in leaves if leaves.count(leaf) == 1}
    table = {phrase: name for path, name in names.items() for phrase in _phrases(path, unique)}
    if not table:
        return message
    pattern = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])({pattern})(?![\w])", lambda m: table[m.group(1)], message)
