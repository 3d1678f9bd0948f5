"""The files of a long run's output folder, kept one way for every run (train, the LM runs, the
sweeps, reproduce), so that a resume can trust them and a crash or a second run cannot spoil them.

    with hold_lock(out, "train", "train run"):          # a second run on the folder is refused
        resumed = check_manifest(path, settings, refuse=...)   # the settings a resume must match
        rows = read_rows(csv_path, columns)             # complete rows; a cut-off last line dropped
        log = CsvLog(csv_path, columns, rows)           # rewritten atomically, then appended + flushed
        save_checkpoint(path, state); load_checkpoint(path)   # tensors and plain data only
        atomic_write(path, text)                        # all or nothing, even on a full disk

It lives in spu/ beside outdir.py (the writable-folder check it builds on) because both training/
and analysis/ import spu, while training must not import analysis and the hardware sweeps have no
business importing training. torch is imported only by the checkpoint functions: the sweep CLI
starts without it. Every error names the file and says what to do, in one line.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import io
import json
import os
import tempfile

from .core.errors import ThermospiceError


class RunFolderError(ThermospiceError):
    """A run folder's file is damaged, locked by another run, or holds another run."""


class RunFolderWriteError(RunFolderError, OSError):
    """A file of a run folder could not be written (full disk, permissions); nothing was replaced."""


# -- atomic writes --------------------------------------------------------------------------------
def _temp_name(path: str) -> str:
    return f".{os.path.basename(path)}."


def _umask() -> int:
    """The process's umask, read without changing it (os.umask can only be read by setting it,
    which races with other threads' file creation)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder, fsync'd before the
    rename: after a crash `path` holds either the old or the new content, never a torn mix. A
    failed write (a full disk) removes the temporary file and raises RunFolderWriteError."""
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.dirname(path) or "."
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_name(path), suffix=".tmp")
        try:
            # mkstemp makes the file 0600; results are shared like any file open() makes (0644
            # under the usual umask 022), as the PNGs beside them are.
            os.fchmod(fd, 0o666 & ~_umask())
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            err = RunFolderWriteError(f"cannot write {path}: {reason}; the previous file, if any, is unchanged")
            err.errno = exc.errno
            raise err from None
        raise


def remove_stale_temps(folder: str, names) -> None:
    """Remove the temporary files a killed write of these files left in `folder`. Only under the
    folder's lock: no other writer of these files can be running then."""
    for name in names:
        for tmp in glob.glob(os.path.join(glob.escape(folder), glob.escape(_temp_name(name)) + "*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


# -- the lock -------------------------------------------------------------------------------------
@contextlib.contextmanager
def hold_lock(folder: str, name: str, what: str, error: type[Exception] = RunFolderError):
    """Hold `folder`/.NAME.lock for the block; refuse (raise `error`) while another process holds it.

    An flock: the system releases it when its holder exits, however it exits, so a killed run
    never leaves the folder locked."""
    with open(os.path.join(folder, f".{name}.lock"), "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise error(
                f"another {what} is running in {folder} (lock held); wait for it or use another --out folder"
            ) from None
        yield


# -- the manifest ---------------------------------------------------------------------------------
def read_json(path: str, what: str, error: type[Exception] = RunFolderError):
    """The JSON in `path`, or one line naming the file when it cannot be read or parsed."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise error(f"cannot read the {what} {path}: {' '.join(str(exc).split())}; remove it to start over") from None


def differences(old, new, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON values differ (nested dicts compared key by key)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def write_manifest(path: str, settings: dict) -> None:
    atomic_write(path, json.dumps(settings, indent=1, sort_keys=True) + "\n")


def check_manifest(
    path: str,
    settings: dict,
    *,
    refuse,
    ignore=(),
    orphans=(),
    what: str = "manifest",
    error: type[Exception] = RunFolderError,
) -> bool:
    """Hold `settings` against the manifest at `path`; True when one was there and matches.

    No manifest: it is written, unless one of `orphans` (result files) exists, which would be a
    run we did not start: refused. An unreadable manifest is refused, never overwritten. Settings
    that differ outside the top-level keys `ignore` raise refuse(keys, old) (dotted keys)."""
    new = json.loads(json.dumps(settings))  # tuples -> lists, as the file holds them
    if not os.path.exists(path):
        for orphan in orphans:
            if os.path.exists(orphan) and os.path.getsize(orphan) > 0:
                raise error(
                    f"{orphan} exists but {os.path.basename(path)} does not: it is not a resumable run of "
                    "these settings; use another --out folder or remove that file"
                )
        write_manifest(path, new)
        return False
    old = read_json(path, what, error)
    if not isinstance(old, dict):
        raise error(f"cannot read the {what} {path}: not a JSON object; remove it to start over")
    keys = [k for k in differences(old, new) if k.split(".")[0] not in ignore]
    if keys:
        raise refuse(keys, old)
    return True


# -- the flushed CSV ------------------------------------------------------------------------------
def csv_line(values) -> str:
    """One CSV line (quoted as the csv module does, '\\n'-terminated) of already formatted cells."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def read_rows(
    path: str, columns, *, optional=(), error: type[Exception] = RunFolderError, remedy: str = "remove it to start over"
) -> list[list[str]]:
    """The complete rows of a CSV written by CsvLog (header `columns`), as lists of cells.

    A last line without its newline was cut off by a crash: dropped (its work is redone). A
    header other than `columns`, or a row with the wrong number of cells, is damage: refused,
    naming the file and line. A missing or empty file has no rows. `optional`: columns a file
    written by an older version may lack (their cells read as "")."""
    columns = list(columns)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as fh:
        text = fh.read()
    lines = text.split("\n")[:-1]  # the piece after the last newline is empty or cut off
    if not lines:
        return []
    header = next(csv.reader([lines[0].rstrip("\r")]), [])
    older = header == [c for c in columns if c in header] and set(columns) - set(header) <= set(optional)
    if not older:
        raise error(
            f"{path} has columns {','.join(header)}, not {','.join(columns)}; use another --out folder or {remedy}"
        )
    rows = []
    for ln, line in enumerate(lines[1:], start=2):
        cells = next(csv.reader([line.rstrip("\r")]), [])
        if len(cells) != len(header):
            raise error(f"{path} line {ln} has {len(cells)} fields, not {len(header)}; the file is damaged: {remedy}")
        if header != columns:
            by_name = dict(zip(header, cells))
            cells = [by_name.get(c, "") for c in columns]
        rows.append(cells)
    return rows


def resume_rows(path: str, columns, step: int, checkpoint: str, *, optional=()) -> list[list[str]]:
    """The rows of a per-step log (first column "step", the others numbers or blank) that a resume
    from a checkpoint at `step` keeps: steps 1 to `step`, one row each, in order. Later rows (written
    after the checkpoint) are dropped; missing or garbled ones are refused, naming the file."""
    rows = read_rows(path, columns, optional=optional)
    kept = []
    for ln, cells in enumerate(rows, start=2):
        for name, cell in zip(columns, cells):
            if not _number(cell, whole=name == "step"):
                raise RunFolderError(
                    f"{path} line {ln}: {name} is {cell!r}, not a number; the file is damaged: "
                    "remove the run's folder (or use another --out) to start over"
                )
        if int(cells[0]) <= step:
            kept.append(cells)
    steps = [int(cells[0]) for cells in kept]
    if steps != list(range(1, step + 1)):
        missing = sorted(set(range(1, step + 1)) - set(steps))
        why = f"steps {_span(missing)} are missing" if missing else "its steps are repeated or out of order"
        raise RunFolderError(
            f"{path} does not match {checkpoint} (at step {step}): {why}; remove the run's "
            "folder (or use another --out) to start over"
        )
    return kept


def _number(cell: str, whole: bool) -> bool:
    """A cell a per-step log may hold: a step number (whole), else a float (nan and inf included:
    a regression's accuracy is nan) or blank (not evaluated at that step)."""
    if whole:
        return cell.isdigit()
    try:
        return cell == "" or isinstance(float(cell), float)
    except ValueError:
        return False


def _span(numbers: list[int]) -> str:
    head = ", ".join(str(n) for n in numbers[:5])
    return head + (f" ... ({len(numbers)} in all)" if len(numbers) > 5 else "")


class CsvLog:
    """A CSV that grows one row at a time: header and `rows` written atomically now, then each
    appended row flushed at once (and fsync'd with sync=True), so a crash loses at most the row
    being written, which read_rows then drops."""

    def __init__(self, path: str, columns, rows=(), *, sync: bool = False):
        self.path, self.sync = path, sync
        atomic_write(path, "".join(csv_line(r) for r in [list(columns), *rows]))
        self._fh = None

    def append(self, cells) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", newline="")
        self._fh.write(csv_line(cells))
        self._fh.flush()
        if self.sync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the checkpoint -------------------------------------------------------------------------------
def save_checkpoint(path: str, state: dict) -> None:
    """torch.save of `state` (tensors and plain data only: load_checkpoint refuses anything else),
    written atomically: serialised in memory first, so a full disk raises RunFolderWriteError
    from the write itself and leaves the previous checkpoint whole."""
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(path: str, error: type[Exception] = RunFolderError) -> dict:
    """The state in a checkpoint, loaded with weights_only=True: a file holding anything other
    than tensors and plain data (a crafted pickle, or an old checkpoint with numpy arrays) is
    refused before any of it runs. A damaged file is refused naming it."""
    import pickle

    import torch

    try:
        state = torch.load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise error(
            f"{path} holds objects other than tensors and plain data (a checkpoint from another "
            "program or an older version?): refused without running any of it; remove it to start "
            "over"
        ) from None
    except Exception as exc:  # torch reports a damaged zip archive in many ways
        why = " ".join(str(exc).split()[:12]) or type(exc).__name__
        raise error(f"{path} is damaged or not a checkpoint ({why}); remove it to start over") from None
    if not isinstance(state, dict):
        raise error(
            f"{path} is not a checkpoint of this program (it holds a {type(state).__name__}); remove it to start over"
        )
    return state
