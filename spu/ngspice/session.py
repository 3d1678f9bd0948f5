"""One long-lived ngspice child process: load a circuit once, re-program values, re-run the transient.

    with NgspiceSession(timeout=60) as ng:
        ng.load(netlist_text, files={"noise.txt": table_bytes})
        raw = ng.tran(tstep, tstop, tmax).raw            # spu.ngspice.rawfile.RawData of the last transient
        ng.alter([("R1", None, 2e3), ("Vdac0", "dc", 0.5), ("C3", "ic", -0.1)])
        raw = ng.tran(tstep, tstop, tmax).raw

Why a child process and its pipe mode (``ngspice -n -p``), not the shared library (PySpice's
NgSpiceShared): a segfault or an endless loop of the shared library kills or freezes the caller,
and the library cannot be re-initialised after a crash in the same process. A child can always be
killed and started again. Measured here (ngspice 39.3, 2 cores, docs/BENCHMARKS.md): a command
round trip through the pipe costs ~0.1 ms; what a fresh ``ngspice -b`` process adds over re-running
``tran`` in a loaded session is its start, the netlist parse and the circuit setup.

ngspice re-does the matrix reordering at every ``tran`` (its ``rusage`` reorder time grows by the
same amount per run, with or without ``alter``), so a session saves parse and setup, not the reorder.
``alter`` costs ~40 us per element through the front end: re-sourcing a whole netlist is cheaper once
more than a few thousand values change. spu/backends/ngspice.py never alters (it re-sources on any
change, so results do not depend on the child's history); ``alter`` is here for callers that
re-program a few values of a large circuit.

Safety: the control channel of ngspice runs shell commands (``shell``), so nothing but the commands
composed here ever reaches it. Every command is built from fixed words, element names that match
``NAME_RE``, parameter words from ``ALTER_PARAMS`` and numbers that are finite floats printed with
repr(); the files the session writes have fixed names or names spu.ngspice.run.check_file_name allows and live in the
session's own fresh directory (the child's working directory), so no path a user gives is ever
typed into the channel. The netlist text itself is the caller's responsibility (circuits.netlist
emits only checked text; it is loaded with ``source`` from a file, never typed into the channel).

Failure handling: every command waits for a unique end marker (``echo``) with a deadline. A child
that exits or is killed (crash) is restarted, the netlist is re-loaded and the alterations re-applied,
and the transient is tried once more; a second failure raises NgspiceError. A command that passes
its deadline (hang) kills the child's whole process group and raises NgspiceTimeout; the next call
starts a fresh child. Error lines in ngspice's output (``Error: ...``, ``timestep too small``)
raise NgspiceError with the relevant lines quoted; the session stays usable.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass

from ..core.errors import DesignError, NgspiceError, NgspiceNotFound, NgspiceTimeout
from ..core.spice_number import spice_number
from .rawfile import RawData, read_raw_all
from .run import DEFAULT_TIMEOUT_S, INSTALL_HINT, check_file_name, error_lines, find_ngspice, kill_group, relevant_lines

__all__ = ["NgspiceSession", "SessionRun", "ALTER_PARAMS", "NAME_RE"]

# An element name as circuits.netlist emits it: the letter of an element kind that has a value
# (never a control word such as `shell`), then letters, digits, underscores.
NAME_RE = re.compile(r"^[RCLEGIVABrclegivab][A-Za-z0-9_]{0,64}$")
# The only instance parameters the session alters: None (the element's main value: R, C, G, E),
# "dc" (a V or I source's DC value), "ic" (a capacitor's initial condition).
ALTER_PARAMS = (None, "dc", "ic")
NETLIST_FILE = "circuit.cir"
RAW_FILE = "out.raw"
STARTUP_TIMEOUT_S = 30.0
# ngspice's pipe mode prints this at start (no X server, no graphics): it is not an error.
_HARMLESS = re.compile(r"no graphics interface|X-server is running|compiled properly|^\s*$", re.IGNORECASE)


@dataclass
class SessionRun:
    raw: RawData  # the transient plot
    output: str  # what ngspice printed during the run
    wall_time_s: float  # of the tran command (including writing the raw file)
    restarted: bool = False  # the child crashed and the run was retried in a fresh one


def alter_command(name, param, value) -> str:
    """`alter NAME [PARAM] = NUMBER` from a checked element name, a fixed parameter word and a number."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DesignError(
            f"invalid element name for alter: {name!r} (an element letter R C L E G I V A B, then letters, digits, underscores)"
        )
    if param not in ALTER_PARAMS:
        raise DesignError(f"alter parameter {param!r} is not one of {ALTER_PARAMS}")
    text = spice_number(value, f"value for {name}")
    return f"alter {name} = {text}" if param is None else f"alter {name} {param} = {text}"


def tran_command(tstep, tstop, tmax, uic: bool = True) -> str:
    parts = [spice_number(tstep, "tstep"), spice_number(tstop, "tstop"), spice_number(tmax, "tmax")]
    if not (float(parts[0]) > 0 and float(parts[1]) > 0 and float(parts[2]) > 0):
        raise DesignError(f"transient times must be > 0, got tstep={tstep!r} tstop={tstop!r} tmax={tmax!r}")
    return f"tran {parts[0]} {parts[1]} 0 {parts[2]}" + (" uic" if uic else "")


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    kill_group(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class _Crashed(NgspiceError):
    """The child died while a command ran (internal: triggers one restart and retry)."""


class NgspiceSession:
    """A restartable ngspice child driven through its pipe mode. Not thread-safe: one per worker."""

    def __init__(
        self,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        ngspice: str | None = None,
        workdir: str | os.PathLike | None = None,
    ):
        self.exe = find_ngspice(ngspice)
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise DesignError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        self.timeout = timeout
        if workdir is not None:
            os.makedirs(workdir, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="ngspice-session-", dir=None if workdir is None else os.fspath(workdir))
        self._proc: subprocess.Popen | None = None
        self._loaded = False  # the running child holds the current netlist and alterations
        self._marker = 0
        self._netlist: str | None = None
        self._files: dict[str, bytes] = {}
        self._altered: dict[tuple[str, str | None], float] = {}  # replayed after a restart
        self.restarts = 0  # children started after the first (crash or hang)
        self.starts = 0
        self._owner = os.getpid()
        self._finalizer = weakref.finalize(self, NgspiceSession._cleanup, [None], self.dir, self._owner)

    # -- lifecycle -----------------------------------------------------------------------------
    @staticmethod
    def _cleanup(holder, directory, owner) -> None:
        if os.getpid() != owner:  # a forked worker never kills its parent's child
            return
        _kill(holder[0])
        shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> NgspiceSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child and delete the session directory. The session cannot be used afterwards."""
        self._stop()
        self._finalizer()

    @property
    def alive(self) -> bool:
        if os.getpid() != self._owner:
            self._adopt_after_fork()
        return self._proc is not None and self._proc.poll() is None

    def _adopt_after_fork(self) -> None:
        """In a forked worker (sweeps): leave the parent's child and directory alone, use our own."""
        self._finalizer.detach()
        self._proc, self._loaded, self._owner = None, False, os.getpid()
        self.dir = tempfile.mkdtemp(prefix="ngspice-session-", dir=os.path.dirname(self.dir))
        self._finalizer = weakref.finalize(self, NgspiceSession._cleanup, [None], self.dir, self._owner)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive else None

    def _stop(self) -> None:
        if os.getpid() != self._owner:
            self._adopt_after_fork()
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _kill(proc)
        for stream in (proc.stdin, proc.stdout) if proc is not None else ():
            try:
                stream.close()
            except OSError:
                pass

    def _start(self) -> None:
        if not os.path.isdir(self.dir):
            raise NgspiceError("the ngspice session was closed")
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = "1"
        env.pop("SPICE_ASCIIRAWFILE", None)
        try:
            # -n: no .spiceinit (nothing of the user's is run); -p: pipe mode, commands on stdin.
            self._proc = subprocess.Popen(
                [self.exe, "-n", "-p"],
                cwd=self.dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                bufsize=0,
                env=env,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as e:
            raise NgspiceNotFound(f"cannot start {self.exe}: {e}; {INSTALL_HINT}") from None
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, NgspiceSession._cleanup, [self._proc], self.dir, self._owner)
        if self.starts:
            self.restarts += 1
        self.starts += 1
        self._loaded = False  # a fresh child holds no circuit
        # The start-up wait follows the run's timeout: a session given 2 s must not wait 30 s for a
        # child that never answers. It stays capped at STARTUP_TIMEOUT_S, as before: ngspice answers
        # within a fraction of a second, so a child silent that long is broken, however long (or
        # unlimited: timeout None) the runs it would serve may be.
        wait = STARTUP_TIMEOUT_S if self.timeout is None else min(STARTUP_TIMEOUT_S, self.timeout)
        try:
            self._command(["set filetype=binary"], wait, check=False)
        except NgspiceTimeout:
            raise NgspiceTimeout(
                f"ngspice ({self.exe}) did not answer within {wait:g} s of starting (the session's timeout, "
                f"at most {STARTUP_TIMEOUT_S:g} s) and was killed"
            ) from None

    # -- the channel ---------------------------------------------------------------------------
    def _command(self, lines: list[str], timeout: float | None, check: bool = True) -> str:
        """Send already-composed command lines, then an end marker; return the output before it."""
        if not self.alive:
            self._start()
        self._marker += 1
        marker = f"TSDONE{self._marker}"
        data = ("\n".join(lines) + f"\necho {marker}\n").encode("ascii")
        proc = self._proc
        # A writer thread: a long batch of commands can fill the child's stdin while its output
        # fills ours; writing and reading at once never deadlocks.
        failed: list[BaseException] = []

        def write():
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (OSError, ValueError) as e:  # the child died (BrokenPipe) or was closed
                failed.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        end = f"\n{marker}\n".encode()
        buf = bytearray(b"\n")
        fd = proc.stdout.fileno()
        while end not in buf:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                self._kill_child()
                writer.join(1)
                text = buf.decode("utf-8", "replace")
                progress = re.findall(r"Reference value\s*:\s*(\S+)", text)
                reached = f" (simulated time reached {progress[-1]} s)" if progress else ""
                last = " | ".join(relevant_lines(text, ""))
                raise NgspiceTimeout(
                    f"ngspice session command {lines[0][:40]!r} ran past its timeout of "
                    f"{timeout:g} s and the child was killed{reached}" + (f"; last output: {last}" if last else "")
                )
            ready, _, _ = select.select([fd], [], [], wait if wait is not None else 1.0)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # EOF: the child is gone
                writer.join(1)
                code = proc.wait()
                self._proc = None
                how = (
                    f"killed by signal {signal.Signals(-code).name}"
                    if code < 0 and -code in signal.valid_signals()
                    else f"exited with code {code}"
                )
                lines_out = relevant_lines(buf.decode("utf-8", "replace"), "")
                raise _Crashed(
                    f"ngspice session child {how} during {lines[0][:40]!r}"
                    + (":\n  " + "\n  ".join(lines_out) if lines_out else "")
                )
            buf += chunk
        writer.join()
        text = buf[1 : buf.index(end)].decode("utf-8", "replace")
        if check:
            bad = [ln for ln in error_lines(text) if not _HARMLESS.search(ln)]
            if bad:
                raise NgspiceError(
                    f"ngspice reported errors on {lines[0][:40]!r}:\n  " + "\n  ".join(relevant_lines(text, ""))
                )
        return text

    def _kill_child(self) -> None:
        proc, self._proc = self._proc, None
        _kill(proc)

    # -- public commands -----------------------------------------------------------------------
    def load(self, netlist: str, files: dict[str, bytes | str] | None = None) -> None:
        """Load a circuit (netlist text, a title line first), replacing any loaded one, with extra
        files (noise tables) that its elements read by name from the session directory."""
        if not isinstance(netlist, str) or "\n" not in netlist:
            raise DesignError("load() takes netlist text (a title line, elements, .end)")
        self._netlist = netlist if netlist.endswith("\n") else netlist + "\n"
        self._loaded = False
        self._altered.clear()
        self._files = {}
        self.set_files(files or {})
        self._reload()

    def set_files(self, files: dict[str, bytes | str]) -> None:
        """(Re)write extra files; ngspice's file sources read them again at each transient."""
        for name, data in files.items():
            try:
                check_file_name(name)
            except NgspiceError as e:
                raise DesignError(str(e)) from None
            blob = data.encode("ascii") if isinstance(data, str) else bytes(data)
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(blob)
            self._files[name] = blob

    def _reload(self) -> None:
        if self._netlist is None:
            raise NgspiceError("no circuit loaded in the ngspice session")
        with open(os.path.join(self.dir, NETLIST_FILE), "w", encoding="utf-8") as f:
            f.write(self._netlist)
        for name, blob in self._files.items():  # a restart finds them as the caller left them
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(blob)
        # `remcirc` drops the previous circuit so its memory does not pile up over a long run.
        self._command(["destroy all", "remcirc"], STARTUP_TIMEOUT_S, check=False)
        out = self._command([f"source {NETLIST_FILE}"], self.timeout, check=False)
        bad = [ln for ln in error_lines(out) if not _HARMLESS.search(ln)]
        if bad or re.search(r"circuit not parsed", out, re.IGNORECASE):
            self._netlist = None
            raise NgspiceError("ngspice could not load the circuit:\n  " + "\n  ".join(relevant_lines(out, "")))
        if self._altered:
            self._command([alter_command(n, p, v) for (n, p), v in self._altered.items()], self.timeout)
        self._loaded = True

    def _ensure_loaded(self) -> None:
        """A child that died between calls (crash, kill) is replaced and the circuit re-loaded."""
        if self._netlist is None:
            raise NgspiceError("no circuit loaded in the ngspice session (call load() first)")
        if not (self.alive and self._loaded):
            self._reload()

    def alter(self, changes) -> None:
        """Set element values: an iterable of (name, param, value), param in ALTER_PARAMS."""
        cmds, keep = [], {}
        for item in changes:
            try:
                name, param, value = item
            except (TypeError, ValueError):
                raise DesignError(f"alter takes (name, param, value) triples, got {item!r}") from None
            cmds.append(alter_command(name, param, value))
            keep[(name, param)] = float(value)
        self._ensure_loaded()
        if cmds:
            try:
                self._command(cmds, self.timeout)
            except _Crashed:
                self._reload()
                self._command(cmds, self.timeout)
        self._altered.update(keep)

    def tran(self, tstep, tstop, tmax, *, uic: bool = True) -> SessionRun:
        """Run a transient on the loaded circuit; return its plot (the circuit's .save vectors)."""
        cmd = tran_command(tstep, tstop, tmax, uic)
        restarted = not (self.alive and self._loaded) and self.starts > 0
        for attempt in (1, 2):
            try:
                self._ensure_loaded()
                return self._tran_once(cmd, restarted)
            except _Crashed as e:
                if attempt == 2:
                    raise NgspiceError(f"{e}; it crashed again after a restart, giving up") from None
                restarted = True
        raise AssertionError("unreachable")

    def _tran_once(self, cmd: str, restarted: bool) -> SessionRun:
        raw_path = os.path.join(self.dir, RAW_FILE)
        if os.path.exists(raw_path):
            os.remove(raw_path)
        t0 = time.monotonic()
        out = self._command([cmd, f"write {RAW_FILE}", "destroy all"], self.timeout, check=False)
        wall = time.monotonic() - t0
        bad = [ln for ln in error_lines(out) if not _HARMLESS.search(ln)]
        if bad:
            raise NgspiceError("ngspice transient failed:\n  " + "\n  ".join(relevant_lines(out, "")))
        if not os.path.exists(raw_path):
            raise NgspiceError(
                "ngspice wrote no raw file after the transient:\n  " + "\n  ".join(relevant_lines(out, ""))
            )
        plots = [p for p in read_raw_all(raw_path) if p.is_transient]
        if not plots or plots[-1].npoints == 0:
            raise NgspiceError("ngspice's raw file holds no transient points")
        raw = plots[-1]
        raw.path = None
        return SessionRun(raw=raw, output=out, wall_time_s=wall, restarted=restarted)

    def rusage(self) -> str:
        """ngspice's own accounting (`rusage all`): cumulative reorder/load/factor/solve times."""
        return self._command(["rusage all"], STARTUP_TIMEOUT_S, check=False)
