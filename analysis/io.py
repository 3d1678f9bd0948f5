"""Files every analysis command writes: CSV cells, whole CSV files, the output folder (the atomic
write and the CSV line are spu/run_folder.py's).

fmt(0.1 + 0.2)                     -> '0.3'      (12 significant digits: sweeps)
fmt(math.nan, digits=10, missing="") -> ''       (the reproduce CSVs' style)
prepare_folder(out, "sweep results") -> absolute path, or OutputFolderError
with output_file(path) as fh: ...  a file the user named (-o): OutputFileError names it
"""

from __future__ import annotations

import csv
import math
import os
from contextlib import contextmanager

import numpy as np

from spu.core.errors import ThermospiceError
from spu.outdir import OutputFolderError as _FolderError
from spu.outdir import ensure_output_folder
from spu.run_folder import atomic_write, csv_line


class OutputFolderError(_FolderError):
    """The output folder of an analysis command (sweep, reproduce) cannot be created or written."""


class OutputFileError(ThermospiceError):
    """A file the user named with -o/--output cannot be written."""


@contextmanager
def output_file(path: str, mode: str = "w"):
    """Open the file the user named, written in place (it may be a device or a pipe, which a
    temporary file and a rename would not reach). A failed open or write (a full disk,
    /dev/full) raises OutputFileError naming the file and the OS error: a write error itself
    carries no file name."""
    try:
        with open(path, mode) as fh:
            yield fh
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OutputFileError(f"cannot write {path}: {reason}") from None


def prepare_folder(out: str, what: str) -> str:
    """Make `out` if needed and prove it is writable before a long run starts; its absolute path."""
    return ensure_output_folder(out, what, OutputFolderError)


def fmt(v, *, digits: int = 12, missing: str = "nan") -> str:
    """One CSV cell. Floats with `digits` significant digits (stable across runs and platforms:
    no 0.30000000000000004); `missing` for None and NaN; ints, bools and strings as they are."""
    if v is None:
        return missing
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return missing
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


# The cells of `thermospice reproduce`'s CSVs: 10 digits, missing values left blank.
REPRODUCE_CELLS = {"digits": 10, "missing": ""}


def write_csv(path: str, names, rows, **cells) -> None:
    """A whole CSV at once (atomically): header `names`, then fmt(row.get(name), **cells) per row."""
    atomic_write(path, "".join(csv_line(v) for v in [names] + [[fmt(r.get(c), **cells) for c in names] for r in rows]))


def read_csv(path: str) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
