"""Run ngspice in batch mode in a subprocess and read its binary raw file.

    run = run_ngspice(netlist_text, timeout=60)
    t, v = run.raw["time"], run.raw["x1"]          # "x1" is short for "v(x1)"

Each call runs ``ngspice -b -r out.raw circuit.cir`` in its own fresh directory (tempfile.mkdtemp),
in its own process group, with stdin=/dev/null and OMP_NUM_THREADS=1. The shared library is never
used: it segfaults when re-initialised, and a crash or hang of ngspice must not take the caller down.
Calls are independent and may run concurrently from threads or processes; separate ngspice processes
parallelise across cores.

Failures raise (all derive from spu.core.errors.NgspiceError):

* NgspiceNotFound: the executable (argument ``ngspice``, else env THERMOSPICE_NGSPICE, else
  "ngspice" on PATH) is missing;
* NgspiceTimeout: the run took longer than ``timeout`` seconds; the whole process group is killed;
* NgspiceError: non-zero exit, error lines in the output (ngspice -b often exits 0 after printing
  "Error: ..." or "simulation(s) aborted"), no raw file, an empty or unreadable raw file. The message
  quotes the few relevant lines of ngspice's output.

No ``.control`` block is added: the netlist goes to ngspice exactly as given (a final newline is
appended if missing). ``.options filetype=ascii`` in the netlist or ``ascii=True`` (env
SPICE_ASCIIRAWFILE=1) give an ascii raw file, which is read as well but parses ~200x slower.

Measured facts (ngspice 39.3, this machine)
-------------------------------------------
Binary raw parsing: 100 000 points x 100 variables (80 MB) in ~0.07 s (ascii: ~6 s); see spu/ngspice/rawfile.py.

Startup overhead of one ``ngspice -b`` run of a tiny circuit: ~10 ms.

TRRANDOM(2 NT 0 NA 0) on a current source, determined empirically (I into 1 ohm, and I into 1 F):

* The value is HELD CONSTANT over each interval of length NT, not interpolated. ngspice puts a
  breakpoint at every k*NT; the point at t = k*NT still carries the old value, the first time point
  after it carries the new one. At t = 0 (the operating point / uic start) the source is 0; the first
  drawn value applies to (0, NT].
* Integrated into a capacitor (C dV/dt = I), V(k*NT) equals NT * (sum of the held values) to
  ~1e-16 relative for tmax = 10u ... 10m with NT = 1m: ngspice restarts integration with backward
  Euler after each breakpoint, so the ramp between old and new value contributes nothing. Hence a
  held-constant Gaussian of standard deviation NA integrates to variance NA^2 * NT^2 per interval;
  to model C dV = ... + sigma dW use NA = sigma / sqrt(NT), which gives the Wiener increment
  variance sigma^2 * NT per interval, exactly (no interpolation correction factor).
* Time points per NT interval when tmax >= NT (large tmax, breakpoint-limited): ~5-6 in steady
  state (e.g. steps at 0.027, 0.082, 0.19, 0.41, 0.85, 1.0 x NT after each breakpoint; min 4, mean
  5.4-5.8), ~15-19 in the first interval. With tmax = NT/10 about 14 per interval; with no tmax
  given ngspice limits the step to TSTEP (tstep=NT/100 gave ~103 per interval).
* ``.options seed=N`` makes TRRANDOM reproducible: the same seed gives bit-identical raw files;
  different seeds give different values; without a seed option each run differs. All TRRANDOM
  sources draw from ONE generator stream in turn (with one source the values are v1, v2, v3, ...;
  adding sources interleaves them), so adding or reordering sources changes every source's values.
  Values of different sources are independent N(mean, sd^2) draws.
* (From DESIGN.md) TRNOISE is not reproducible with any seed; use TRRANDOM when reproducibility
  matters.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from ..core.errors import NgspiceError, NgspiceNotFound, NgspiceTimeout
from .rawfile import RawData, read_raw_all

__all__ = [
    "NgspiceRun",
    "run_ngspice",
    "ngspice_version",
    "find_ngspice",
    "ENV_VAR",
    "check_file_name",
    "error_lines",
    "relevant_lines",
    "kill_group",
]

ENV_VAR = "THERMOSPICE_NGSPICE"
DEFAULT_TIMEOUT_S = 600.0
INSTALL_HINT = "install it with `apt-get install ngspice`, or set THERMOSPICE_NGSPICE to the executable's path"

# Lines in ngspice's output that mean the run failed even when it exits 0.
ERROR_RE = re.compile(
    r"^\s*error\b|simulation\(s\) aborted|simulation interrupted due to error|circuit not parsed"
    r"|timestep too small|transient solution failed|no data saved|fatal",
    re.IGNORECASE,
)
# Output lines never worth quoting in an error message.
_NOISE_RE = re.compile(
    r"^\s*$|DRAM|pages =|program size|^Stack =|Total (elapsed|analysis) time|No compatibility mode"
    r"|Reference value|no resource usage information|no active circuit available|^Trying gmin|gmin increment"
    r"|^\s*No\. of Data|^Doing analysis at TEMP|^\s*binary raw file|^\s*ascii raw file|^Circuit:",
    re.IGNORECASE,
)


@dataclass
class NgspiceRun:
    raw: RawData  # last transient plot (else last plot) of the raw file
    stdout: str
    stderr: str
    wall_time_s: float  # of the ngspice process
    netlist_path: str | None  # None unless keep=True or a netlist path was given
    workdir: str | None  # the per-run directory, None unless keep=True
    returncode: int = 0
    plots: list[RawData] = field(default_factory=list, repr=False)  # every plot in the raw file


def find_ngspice(ngspice: str | None = None) -> str:
    """Absolute path of the ngspice executable: ``ngspice`` argument, else $THERMOSPICE_NGSPICE,
    else "ngspice" on PATH. Raises NgspiceNotFound."""
    if ngspice:
        name, origin = ngspice, "argument ngspice="
    elif os.environ.get(ENV_VAR):
        name, origin = os.environ[ENV_VAR], f"${ENV_VAR}="
    else:
        name, origin = "ngspice", ""
    exe = shutil.which(name)
    if exe is None:
        where = "is not an executable file" if os.sep in name else "was not found on PATH"
        raise NgspiceNotFound(f"ngspice executable {origin}{name!r} {where}; {INSTALL_HINT}")
    return os.path.abspath(exe)


_version_cache: dict[str, str] = {}


def ngspice_version(ngspice: str | None = None) -> str:
    """The ngspice version as printed by ``ngspice -v``, e.g. "39". Raises NgspiceNotFound/NgspiceError."""
    exe = find_ngspice(ngspice)
    if exe in _version_cache:
        return _version_cache[exe]
    try:
        p = subprocess.run(
            [exe, "-v"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, env=_child_env(False)
        )
    except (FileNotFoundError, PermissionError) as e:
        raise NgspiceNotFound(f"cannot run {exe}: {e}; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise NgspiceTimeout(f"`{exe} -v` did not finish within 30 s") from None
    out = (p.stdout + p.stderr).decode("utf-8", errors="replace")
    m = re.search(r"ngspice-(\S+)", out)
    if not m:
        raise NgspiceError(f"cannot read a version from `{exe} -v` output: {_tail(out) or '(no output)'}")
    _version_cache[exe] = m.group(1).rstrip(":,")
    return _version_cache[exe]


def _child_env(ascii_raw: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("SPICE_ASCIIRAWFILE", None)
    if ascii_raw:
        env["SPICE_ASCIIRAWFILE"] = "1"
    return env


def relevant_lines(stdout: str, stderr: str, max_lines: int = 10, width: int = 160) -> list[str]:
    """The few lines of ngspice's output worth quoting: stderr (plus stdout if stderr holds no error
    line), without banner/statistics noise and repeated messages, as first 3 + last (max_lines - 3) lines."""
    lines = stderr.splitlines()
    if not any(ERROR_RE.search(ln) for ln in lines):
        lines += stdout.splitlines()  # errors may be on stdout only
    seen: set[str] = set()
    kept = []
    for ln in lines:
        ln = ln.rstrip()[:width]
        if _NOISE_RE.search(ln) or (ln in seen and not ln[:1].isspace()):
            continue  # repeated gmin-stepping warnings etc.
        seen.add(ln)
        kept.append(ln)
    if len(kept) <= max_lines:
        return kept
    return kept[:3] + ["..."] + kept[-(max_lines - 3) :]


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ERROR_RE.search(ln)]


# Extra files a netlist reads from its run directory (noise tables): plain names only, so that
# nothing outside the directory can be written and the netlist names them without a path.
FILE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\.txt$")


def check_file_name(name) -> str:
    if not isinstance(name, str) or not FILE_RE.match(name):
        raise NgspiceError(f"invalid run file name {name!r} (lowercase letters, digits, '_', then '.txt')")
    return name


def _tail(text: str) -> str:
    return " | ".join(relevant_lines(text, ""))


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and its whole group (ngspice started with start_new_session=True)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def run_ngspice(
    netlist: str | os.PathLike,
    *,
    workdir: str | os.PathLike | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    keep: bool = False,
    ngspice: str | None = None,
    ascii: bool = False,
    files: dict[str, bytes] | None = None,
) -> NgspiceRun:
    """Simulate ``netlist`` with ``ngspice -b -r out.raw`` in a subprocess and read the raw file.

    netlist: netlist text (anything containing a newline), or the path of a netlist file, which is
        used in place (so its relative .include paths keep working).
    workdir: directory in which the per-run directory is created (default: the system temp dir).
    timeout: seconds before the process group is killed and NgspiceTimeout raised (None: no limit).
    keep: keep the per-run directory (netlist, out.raw) and return its path as ``.workdir``;
        otherwise it is deleted after reading, also when the run fails.
    ngspice: executable name or path; default $THERMOSPICE_NGSPICE, else "ngspice" on PATH.
    ascii: ask for an ascii raw file (SPICE_ASCIIRAWFILE=1) instead of binary.
    files: extra files (name -> content) written into the run directory, e.g. the noise table that
        the netlist reads (names as check_file_name allows; netlist text only, not a netlist path).
    """
    exe = find_ngspice(ngspice)
    files = {check_file_name(k): bytes(v) for k, v in (files or {}).items()}
    given_path = _netlist_path(netlist)
    if given_path is not None and files:
        raise NgspiceError("extra files go with netlist text, not with a netlist path")
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
    rundir = tempfile.mkdtemp(prefix="ngspice-", dir=None if workdir is None else os.fspath(workdir))
    try:
        if given_path is None:
            cir, name = _write_run_files(rundir, netlist, files)
        else:
            cir = name = given_path
        job = _Job(exe, cir, os.path.join(rundir, "out.raw"), rundir, name, f" (kept in {rundir})" if keep else "")
        stdout, stderr, returncode, wall = job.wait(timeout, ascii)
        raw, plots = job.read_plots(stdout, stderr, returncode)
        for p in plots:
            p.path = job.raw_path if keep else None
        return NgspiceRun(
            raw=raw,
            stdout=stdout,
            stderr=stderr,
            wall_time_s=wall,
            netlist_path=cir if (keep or given_path) else None,
            workdir=rundir if keep else None,
            returncode=returncode,
            plots=plots,
        )
    finally:
        if not keep:
            shutil.rmtree(rundir, ignore_errors=True)


def _netlist_path(netlist) -> str | None:
    """The absolute path when ``netlist`` names a file (no line break in it), None for netlist text."""
    if not isinstance(netlist, os.PathLike) and ("\n" in netlist or "\r" in netlist):
        return None
    path = os.path.abspath(os.fspath(netlist))
    if not os.path.isfile(path):
        raise NgspiceError(
            f"netlist file {path} does not exist (netlist text must contain at least a title line and a newline)"
        )
    return path


def _write_run_files(rundir: str, text: str, files: dict[str, bytes]) -> tuple[str, str]:
    """Write the netlist text and its extra files into the run directory; (netlist path, the name
    error messages give the run: its title line)."""
    cir = os.path.join(rundir, "circuit.cir")
    text = text if text.endswith("\n") else text + "\n"
    with open(cir, "w", encoding="utf-8") as f:
        f.write(text)
    for fname, blob in files.items():
        with open(os.path.join(rundir, fname), "wb") as f:
            f.write(blob)
    title = text.lstrip("\ufeff").splitlines()[0].strip() if text.strip() else ""
    return cir, f"netlist {title[:60]!r}"


@dataclass
class _Job:
    """One ``ngspice -b`` process on a netlist in its run directory, and what its output means."""

    exe: str
    cir: str
    raw_path: str
    rundir: str
    name: str  # how error messages call the run
    where: str  # " (kept in DIR)" when the run directory stays

    def wait(self, timeout: float | None, ascii: bool) -> tuple[str, str, int, float]:
        """Run ngspice to its end or the timeout; (stdout, stderr, return code, wall seconds)."""
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(
                [self.exe, "-b", "-r", self.raw_path, self.cir],
                cwd=self.rundir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_child_env(ascii),
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as e:
            raise NgspiceNotFound(f"cannot start {self.exe}: {e}; {INSTALL_HINT}") from None
        try:
            out_b, err_b = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out_b, err_b = proc.communicate()
            raise self._timeout(time.monotonic() - t0, timeout, out_b, err_b) from None
        except BaseException:  # KeyboardInterrupt etc.: never leave ngspice running
            kill_group(proc)
            proc.communicate()
            raise
        wall = time.monotonic() - t0
        return (out_b.decode("utf-8", errors="replace"), err_b.decode("utf-8", errors="replace"), proc.returncode, wall)

    def _timeout(self, elapsed: float, timeout: float, out_b: bytes, err_b: bytes) -> NgspiceTimeout:
        err = err_b.decode("utf-8", "replace")
        progress = re.findall(r"Reference value\s*:\s*(\S+)", err)  # ngspice's progress report
        reached = f" (simulated time reached {progress[-1]} s)" if progress else ""
        last = _tail(err + out_b.decode("utf-8", "replace"))
        return NgspiceTimeout(
            f"ngspice ran {elapsed:.2f} s on {self.name}, past the timeout of {timeout:g} s, and was killed"
            f"{reached}{self.where}" + (f"; last output: {last}" if last else "")
        )

    def read_plots(self, stdout: str, stderr: str, returncode: int) -> tuple[RawData, list[RawData]]:
        """(last transient plot, else last plot; every plot) of a finished run's raw file;
        NgspiceError when the run failed, whatever its exit code."""

        def fail(what: str, hint: str = "") -> NgspiceError:
            lines = relevant_lines(stdout, stderr)
            detail = (":\n  " + "\n  ".join(lines)) if lines else "; it printed nothing"
            return NgspiceError(f"ngspice {what} on {self.name}{self.where}{hint}{detail}")

        if returncode != 0:
            if returncode < 0:
                sig = -returncode
                try:
                    signame = signal.Signals(sig).name
                except ValueError:
                    signame = str(sig)
                raise fail(f"was killed by signal {signame}")
            raise fail(f"failed with exit code {returncode}")
        if any(ERROR_RE.search(ln) for ln in (stderr + "\n" + stdout).splitlines()):
            raise fail("reported errors (exit code 0)")
        if not os.path.exists(self.raw_path):
            raise fail("wrote no raw file", " (does the netlist contain an analysis such as .tran?)")
        try:
            plots = read_raw_all(self.raw_path)
        except NgspiceError as e:
            raise fail(f"wrote an unreadable raw file ({e})") from None
        tran = [p for p in plots if p.is_transient]
        raw = tran[-1] if tran else plots[-1]
        if raw.npoints == 0:
            raise fail(f"wrote no data points for {raw.plotname or 'its analysis'}")
        return raw, plots
