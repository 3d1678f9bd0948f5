"""One check for every command that writes results: the folder exists (or is made) and is writable."""

from __future__ import annotations

import os
import tempfile

from .core.errors import ThermospiceError


class OutputFolderError(ThermospiceError, OSError):
    """The output folder cannot be created or written."""


def ensure_output_folder(out: str, what: str = "results", error: type[Exception] = OutputFolderError) -> str:
    """Make `out` if needed and prove it is writable; return its absolute path.

    Fails early with one clear line instead of deep inside a long run. `what` names the results in
    the message; `error` lets a command raise its own subclass."""
    path = os.path.abspath(out)
    if os.path.exists(path) and not os.path.isdir(path):
        raise error(f"cannot write {what} to {out}: it is a file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise error(f"cannot write {what} to folder {out}: {exc.strerror or exc}") from None
    return path
