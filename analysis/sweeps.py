"""Hardware-designer sweeps: what goes wrong in analog hardware, measured in ngspice.

    res = run_sweep("noise", "out/", quick=True)       # -> out/noise.csv, out/noise.png, ...
    res.csv_path, res.computed, res.skipped

Every sweep solves one fixed test problem (``make_problem``: a small TNGD-like GGN system
A = J^T H J + lam I with softmax-cross-entropy Hessian blocks, or a dense SPD system, built from a
seed and scaled so that max |A^-1 b| = 1) from x0 = 0 for an analog time t, on a grid of circuit
parameters, and compares the state with the exact solution x* = A^-1 b of the *ideal* problem:

    rel_error = ||x - x*|| / ||x*||

Kinds (columns of each CSV in ``COLUMNS``; the same table is in ``thermospice sweep KIND --help``):

* ``noise``      kappa0 x temperature x seeds. Seed index r uses the same noise seed at every
                 (kappa0, T): common random numbers, so differences between grid values are not
                 masked by sampling noise. Backend ngspice (or ``ou`` when every temperature is 0).
* ``tolerance``  Monte Carlo over the relative sigma of R (tol_r) and C (tol_c); draw r uses the same
                 component seed at every (tol_r, tol_c), so the error grows smoothly with sigma.
* ``bits``       resolution of the resistors (r), DAC (dac), ADC (adc), or all three (all).
* ``opamp``      op-amp DC gain x gain-bandwidth product (single-pole model); error and settling.
                 An ideal gain (inf) has no pole, so (ideal, finite GBW) pairs are left out.
* ``time``       analog time t against error, beside the exact OU mean and exp(-lambda_min t).
                 Backend ngspice or ``ou``.

Resumable and deterministic: each point has a stable id (its index in the grid) and fixed seeds,
and its row is appended and flushed to ``KIND.csv`` as soon as it finishes. A rerun on the same
folder skips the points already there, and at the end the CSV is rewritten sorted by point id, so
it is byte-identical to an uninterrupted run. Floats are written with 12 significant digits; no
wall times go into it (they go to ``KIND.timings.csv``). ``KIND.manifest.json`` records the
sweep's parameters; a rerun with different parameters on the same folder is refused. Several
kinds may share one folder (every file is prefixed by the kind).

Only deterministic outcomes become rows: a circuit that diverges or cannot be built (a
DesignError, e.g. a resistor out of range) is a row with status ``diverged`` / ``failed: ...``;
an ngspice timeout depends on the machine's load, so it is logged in ``KIND.errors.log``, gets no
row, and is retried by the next run.

Execution: points run in parallel processes (``workers``, default: the CPU count; 1 runs them in
this process), or on a Dask distributed cluster with ``scheduler="tcp://host:8786"``. Every Dask
worker needs this package and ngspice installed.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from spu.outdir import OutputFolderError as SharedOutputFolderError
from spu.outdir import ensure_output_folder
from spu.core.errors import NgspiceError, NgspiceTimeout, ThermospiceError

KINDS = ("noise", "tolerance", "bits", "opamp", "time")
FORMAT = 1
BITS_TARGETS = ("r", "dac", "adc", "all")
SEED_MAX = 2**31 - 1  # ngspice's seed option is a C int (see circuits.topologies.ngspice_seed)


# -- errors ---------------------------------------------------------------------------------------
class SweepError(ThermospiceError):
    """A sweep that cannot run as asked."""


class UnknownKindError(SweepError, ValueError):
    pass


class SweepOptionError(SweepError, ValueError):
    """A bad option value: an empty range, a value out of bounds, an option of another kind."""


class EmptyRangeError(SweepOptionError):
    pass


class OutputFolderError(SweepError, SharedOutputFolderError):
    pass


class SweepMismatchError(SweepError):
    """The output folder holds results of a sweep with other parameters."""


class SchedulerError(SweepError, ConnectionError):
    pass


class SweepInterrupted(SweepError):
    """Raised by the ``stop_after`` hook (and used for the message of a real interruption)."""

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = result


# -- CSV columns ----------------------------------------------------------------------------------
_STATUS = ("status", "ok; unsettled (still moving in the last 10% of t) or unstable (and its error growing; "
                     "tolerance/opamp only); diverged (non-finite voltages); failed: ErrorClass (e.g. a resistor "
                     "out of range)")
_REL = ("rel_error", "||x(t) - x*|| / ||x*||, x* = A^-1 b of the ideal problem")
_SETTLE = ("settle_tau", "time (tau) after which ||x(s) - x(t)|| <= settle_tol * ||x(t)|| for all later s; "
                         "inf: not settled before 0.9 t")

COLUMNS: dict[str, list[tuple[str, str]]] = {
    "noise": [
        ("point", "stable point id (index in the grid)"),
        ("kappa0", "programmable noise level kappa0"),
        ("temperature_k", "temperature of every resistor for Johnson noise, K (0: none)"),
        ("seed_index", "repetition r = 0..S-1 (same r, same noise seed at every grid value)"),
        ("seed", "noise seed given to the backend"),
        ("t_tau", "analog time of the solve from x0 = 0, in tau"),
        _REL,
        ("theory_rms_error", "sqrt(E||x(t) - x*||^2) / ||x*|| of the ideal OU process with this kappa0 "
                             "(Johnson noise not included)"),
        _STATUS,
    ],
    "tolerance": [
        ("point", "stable point id (index in the grid)"),
        ("tol_r", "relative sigma of every resistor"),
        ("tol_c", "relative sigma of every capacitor"),
        ("draw", "Monte Carlo draw r = 0..S-1 (same r, same component seed at every grid value)"),
        ("component_seed", "seed of the component draws"),
        _REL,
        ("asbuilt_error", "steady-state error of the as-built circuit (no simulation; component report)"),
        _SETTLE,
        _STATUS,
    ],
    "bits": [
        ("point", "stable point id (index in the grid)"),
        ("target", "what is quantised: r (resistors), dac, adc, or all"),
        ("bits", "resolution in bits"),
        _REL,
        ("asbuilt_error", "steady-state error of the as-built circuit from R and DAC quantisation "
                          "(no simulation; the ADC is not in it)"),
        _STATUS,
    ],
    "opamp": [
        ("point", "stable point id (index in the grid)"),
        ("gain", "op-amp DC gain (inf: ideal)"),
        ("gbw_hz", "gain-bandwidth product, Hz (inf: no pole)"),
        _REL,
        _SETTLE,
        ("ideal_settle_tau", "the same settling time for the ideal system (exact solution, same t)"),
        _STATUS,
    ],
    "time": [
        ("point", "stable point id (index in the grid)"),
        ("t_tau", "analog time of the solve from x0 = 0, in tau"),
        ("seed_index", "repetition r = 0..S-1 (matters only with kappa0 > 0)"),
        ("seed", "noise seed given to the backend"),
        _REL,
        ("theory_error", "sqrt(E||x(t) - x*||^2) / ||x*|| of the ideal OU process "
                         "(= ||exp(-A t) x*|| / ||x*|| without noise)"),
        ("bound_error", "exp(-lambda_min t): the decay of the slowest mode, an upper bound without noise"),
        _STATUS,
    ],
}
# Grid (parameter) columns of each kind, in the order of the grid product; the rest are results.
PARAMS = {"noise": ("kappa0", "temperature_k", "seed_index", "seed", "t_tau"),
          "tolerance": ("tol_r", "tol_c", "draw", "component_seed"),
          "bits": ("target", "bits"),
          "opamp": ("gain", "gbw_hz"),
          "time": ("t_tau", "seed_index", "seed")}
# The summary averages over the repetition columns.
SUMMARY = {"noise": (("kappa0", "temperature_k"), ("theory_rms_error",)),
           "tolerance": (("tol_r", "tol_c"), ("asbuilt_error", "settle_tau")),
           "time": (("t_tau",), ("theory_error", "bound_error"))}


def columns(kind: str) -> list[str]:
    return [c for c, _ in COLUMNS[check_kind(kind)]]


def columns_help(kind: str | None = None) -> str:
    """Plain-text table of the CSV columns (for --help epilogs and docs)."""
    kinds = KINDS if kind is None else (check_kind(kind),)
    out = []
    for k in kinds:
        out.append(f"{k}.csv columns:")
        width = max(len(c) for c, _ in COLUMNS[k])
        out += [f"  {c:<{width}}  {d}" for c, d in COLUMNS[k]]
        if k in SUMMARY:
            keys, extra = SUMMARY[k]
            out.append(f"  ({k}_summary.csv: {', '.join(keys)}, n_ok, n_failed, rel_error_mean, rel_error_std, "
                       f"rel_error_rms{''.join(', ' + e + '_mean' for e in extra)}; over the repetitions)")
    return "\n".join(out)


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise UnknownKindError(f"unknown sweep kind {kind!r}; choose one of {', '.join(KINDS)}")
    return kind


# -- ranges ---------------------------------------------------------------------------------------
def _round(v: float) -> float:
    """12 significant digits: stable ids and manifests for lin/log grids (no 0.30000000000000004)."""
    return float(f"{v:.12g}")


def parse_range(name: str, spec, *, lo: float | None = None, hi: float | None = None, lo_open=False,
                hi_open=False, integer=False, words: dict[str, float] | None = None) -> list[float]:
    """Parse a range option into sorted unique values.

    spec: a number, a list of numbers/strings, or a string of comma-separated items, each a number,
    a word from `words` (e.g. "ideal" -> inf), ``lin:START:STOP:NUM`` or ``log:START:STOP:NUM``.
    Bounds lo/hi (open or closed) are checked on every value; an empty result is an error."""
    opt = f"--{name.replace('_', '-')}"
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    pieces: list = []
    for it in items:
        if isinstance(it, str):
            pieces += [p.strip() for p in it.split(",") if p.strip()]
        else:
            pieces.append(it)
    if not pieces:
        raise EmptyRangeError(f"{opt}: empty range (give values like 1,2,3 or lin:1:3:3 or log:1e-3:1e-1:3)")
    vals: list[float] = []
    for p in pieces:
        if isinstance(p, str) and p.lower() in (words or {}):
            vals.append(float(words[p.lower()]))
        elif isinstance(p, str) and p.split(":")[0].lower() in ("lin", "log"):
            parts = p.split(":")
            if len(parts) != 4:
                raise SweepOptionError(f"{opt}: {p!r} must be lin:START:STOP:NUM or log:START:STOP:NUM")
            try:
                a, b, k = float(parts[1]), float(parts[2]), int(parts[3])
            except ValueError:
                raise SweepOptionError(f"{opt}: {p!r} must be lin:START:STOP:NUM with numbers "
                                       "(NUM an integer)") from None
            if not (math.isfinite(a) and math.isfinite(b)):
                raise SweepOptionError(f"{opt}: {p!r} needs finite START and STOP")
            if k < 1:
                raise EmptyRangeError(f"{opt}: {p!r} is empty (NUM must be >= 1)")
            if a > b:
                raise EmptyRangeError(f"{opt}: {p!r} is empty (START {a:g} > STOP {b:g})")
            if parts[0].lower() == "log":
                if a <= 0:
                    raise SweepOptionError(f"{opt}: {p!r}: a log range needs START > 0")
                vals += list(np.geomspace(a, b, k)) if k > 1 else [a]
            else:
                vals += list(np.linspace(a, b, k)) if k > 1 else [a]
        else:
            try:
                vals.append(float(p))
            except (TypeError, ValueError):
                hint = f" or one of {', '.join(words)}" if words else ""
                raise SweepOptionError(f"{opt}: {p!r} is not a number{hint}") from None
    out = sorted({_round(v) for v in vals})
    for v in out:
        if math.isnan(v):
            raise SweepOptionError(f"{opt}: NaN is not a value")
        if integer and not (math.isfinite(v) and v == int(v)):
            raise SweepOptionError(f"{opt}: {v:g} is not an integer")
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise SweepOptionError(f"{opt}: {v:g} is out of range (must be {'>' if lo_open else '>='} {lo:g})")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise SweepOptionError(f"{opt}: {v:g} is out of range (must be {'<' if hi_open else '<='} {hi:g})")
    return [int(v) for v in out] if integer else out


# -- the test problem -----------------------------------------------------------------------------
PROBLEM_DEFAULTS = {"form": "ggn", "n": 8, "seed": 0, "lam": 0.5, "batch": 2, "dz": 3}
PROBLEM_QUICK = {"form": "ggn", "n": 4, "seed": 0, "lam": 1.0, "batch": 1, "dz": 3}


def make_problem(form: str = "ggn", n: int = 8, seed: int = 0, lam: float = 0.5, batch: int = 2, dz: int = 3):
    """The fixed test problem of a sweep, scaled so that max |A^-1 b| = 1 (state voltages of about
    1 V against the ADC's 10 V full scale).

    ggn: A = J^T H J + lam I (GGNProblem; crossbar topology) with J (batch*dz x n) Gaussian, entries
         kept >= 0.05 in magnitude (so every resistor is in range), and H block-diagonal with the
         softmax cross-entropy Hessian diag(p) - p p^T of random logits per sample. With
         batch*dz < n, lambda_min = lam exactly (the null space of J).
    spd: A = M M^T / n + lam I with M uniform in [-1, 1] (DenseProblem; dense topology)."""
    from spu.core.problems import DenseProblem, GGNProblem

    rng = np.random.default_rng(seed)
    if form == "spd":
        M = rng.uniform(-1, 1, (n, n))
        A = M @ M.T / n + lam * np.eye(n)
        b = rng.normal(size=n)
        b = b / np.abs(np.linalg.solve(A, b)).max()
        return DenseProblem(A, b)
    m = batch * dz
    J = rng.normal(size=(m, n))
    J = np.where(J < 0, -1.0, 1.0) * np.maximum(np.abs(J), 0.05)
    H = np.zeros((m, m))
    for s in range(batch):
        z = rng.normal(size=dz)
        p = np.exp(z - z.max())
        p /= p.sum()
        H[s * dz:(s + 1) * dz, s * dz:(s + 1) * dz] = np.diag(p) - np.outer(p, p)
    b = rng.normal(size=n)
    prob = GGNProblem(J, H, lam, b)
    x = np.linalg.solve(prob.matrix(), b)
    return GGNProblem(J, H, lam, b / np.abs(x).max())


def _check_problem_options(p: dict) -> dict:
    form = p["form"]
    if form not in ("ggn", "spd"):
        raise SweepOptionError(f"--form must be ggn or spd, got {form!r}")
    for key in ("n", "batch", "dz"):
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise SweepOptionError(f"--{key} must be an integer >= 1, got {v!r}")
    if p["n"] > 2000:
        raise SweepOptionError(f"--n {p['n']} is too large for a sweep (at most 2000)")
    if not isinstance(p["seed"], (int, np.integer)) or p["seed"] < 0:
        raise SweepOptionError(f"--problem-seed must be an integer >= 0, got {p['seed']!r}")
    lam = p["lam"]
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
        raise SweepOptionError(f"--lam must be a number > 0, got {lam!r}")
    return {"form": form, "n": int(p["n"]), "seed": int(p["seed"]), "lam": float(lam),
            "batch": int(p["batch"]), "dz": int(p["dz"])}


# -- sweep specification --------------------------------------------------------------------------
_COMMON = {"n", "form", "problem_seed", "lam", "batch", "dz", "topology", "backend", "seeds", "seed", "timeout"}
_KIND_OPTIONS = {
    "noise": {"kappa0", "temperature", "t"},
    "tolerance": {"tol_r", "tol_c", "t", "settle_tol"},
    "bits": {"bits", "targets", "t"},
    "opamp": {"gain", "gbw", "t", "settle_tol"},
    "time": {"t", "kappa0"},
}
_DEFAULTS = {  # (full, quick)
    "noise": {"kappa0": ("0,1e-4,1e-3,1e-2,1e-1", "1e-3,1e-2"), "temperature": ("0,300", "0,300"),
              "seeds": (4, 2)},
    "tolerance": {"tol_r": ("0,0.001,0.003,0.01,0.03,0.1", "0.01,0.05"), "tol_c": ("0,0.05", "0,0.05"),
                  "seeds": (8, 2)},
    "bits": {"bits": ("4,6,8,10,12,14,16", "4,8,12"), "targets": ("r,dac,adc,all", "r,dac,adc"), "seeds": (1, 1)},
    "opamp": {"gain": ("1e2,1e3,1e4,1e5,1e6,ideal", "1e3,1e5"), "gbw": ("1e6,1e7,1e8,none", "1e7,none"),
              "seeds": (1, 1)},
    # time: multiples of 1/lambda_min
    "time": {"t": ((0.125, 0.25, 0.5, 1, 2, 3, 4, 5, 6, 8, 10), (0.25, 0.5, 1, 2, 4)), "kappa0": (0.0, 0.0),
             "seeds": (1, 1)},
}
SETTLE_TOL = 1e-3
SETTLED = 1e-6  # default t: the slowest mode decays to this fraction, ln(1e6)/lambda_min


def build_spec(kind: str, *, quick: bool = False, **options) -> dict:
    """Resolve defaults, validate every option and return the sweep's JSON-able specification.

    Options (None = default): problem: n, form (ggn|spd), problem_seed, lam, batch, dz;
    topology, backend, seeds (repetitions), seed (base seed), timeout (s per ngspice run);
    noise: kappa0, temperature, t; tolerance: tol_r, tol_c, t, settle_tol; bits: bits, targets, t;
    opamp: gain, gbw, t, settle_tol; time: t (range), kappa0 (one value). Ranges as in parse_range."""
    check_kind(kind)
    allowed = _COMMON | _KIND_OPTIONS[kind]
    given = {k: v for k, v in options.items() if v is not None}
    for k in given:
        if k not in allowed:
            others = [kk for kk in KINDS if k in _KIND_OPTIONS[kk]]
            where = f" (it belongs to: {', '.join(others)})" if others else ""
            raise SweepOptionError(f"option --{k.replace('_', '-')} does not apply to sweep {kind}{where}")
    q = 1 if quick else 0
    dflt = _DEFAULTS[kind]
    base = PROBLEM_QUICK if quick else PROBLEM_DEFAULTS
    prob = _check_problem_options({"form": given.get("form", base["form"]), "n": given.get("n", base["n"]),
                                   "seed": given.get("problem_seed", base["seed"]),
                                   "lam": given.get("lam", base["lam"]),
                                   "batch": given.get("batch", base["batch"]), "dz": given.get("dz", base["dz"])})
    from circuits.topologies import TOPOLOGIES

    topology = given.get("topology", "crossbar" if prob["form"] == "ggn" else "dense")
    if topology not in TOPOLOGIES:
        raise SweepOptionError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")
    if prob["form"] == "spd" and topology in ("crossbar", "factored"):
        raise SweepOptionError(f"topology {topology} needs --form ggn (a dense SPD A has no J/H factors)")
    backend = given.get("backend", "ngspice")
    allowed_backends = ("ngspice", "ou") if kind in ("noise", "time") else ("ngspice",)
    if backend not in allowed_backends:
        raise SweepOptionError(f"sweep {kind} runs on backend {' or '.join(allowed_backends)}, not {backend!r}"
                               + ("" if kind in ("noise", "time") else " (the circuit is what it sweeps)"))
    seeds = given.get("seeds", dflt["seeds"][q])
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise SweepOptionError(f"--seeds must be an integer >= 1, got {seeds!r}")
    if kind in ("bits", "opamp") and seeds != 1:
        raise SweepOptionError(f"--seeds does not apply to sweep {kind}: it has no randomness (use 1)")
    seed = given.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SweepOptionError(f"--seed must be an integer >= 0, got {seed!r}")
    timeout = float(given.get("timeout", 600.0))
    if not (math.isfinite(timeout) and timeout > 0):
        raise SweepOptionError(f"--timeout must be a number of seconds > 0, got {timeout:g}")

    problem = make_problem(**prob)
    lam_min = float(problem.eig_extremes()[0])
    spec = {"format": FORMAT, "kind": kind, "problem": prob, "topology": topology if backend == "ngspice" else None,
            "backend": backend, "seeds": int(seeds), "seed": int(seed), "lambda_min": _round(lam_min)}
    if kind != "time":
        t = given.get("t", _round(math.log(1 / SETTLED) / lam_min))
        t = parse_range("t", t, lo=0, lo_open=True)
        if len(t) != 1:
            raise SweepOptionError(f"--t takes one analog time for sweep {kind} (the time sweep takes a range)")
        spec["t_tau"] = t[0]
    grid: dict[str, list] = {}
    if kind == "noise":
        grid["kappa0"] = parse_range("kappa0", given.get("kappa0", dflt["kappa0"][q]), lo=0)
        grid["temperature_k"] = parse_range("temperature", given.get("temperature", dflt["temperature"][q]),
                                            lo=0, hi=1000)
        if backend == "ou" and any(T > 0 for T in grid["temperature_k"]):
            raise SweepOptionError("Johnson noise (--temperature > 0) exists only in the circuit: use --backend "
                                   "ngspice, or --temperature 0 with --backend ou")
    elif kind == "tolerance":
        grid["tol_r"] = parse_range("tol_r", given.get("tol_r", dflt["tol_r"][q]), lo=0, hi=0.5, hi_open=True)
        grid["tol_c"] = parse_range("tol_c", given.get("tol_c", dflt["tol_c"][q]), lo=0, hi=0.5, hi_open=True)
    elif kind == "bits":
        grid["bits"] = parse_range("bits", given.get("bits", dflt["bits"][q]), lo=1, hi=32, integer=True)
        tg = given.get("targets", dflt["targets"][q])
        tg = [s.strip().lower() for s in (tg.split(",") if isinstance(tg, str) else tg) if str(s).strip()]
        if not tg:
            raise EmptyRangeError("--targets: empty list (choose from r, dac, adc, all)")
        bad = [s for s in tg if s not in BITS_TARGETS]
        if bad:
            raise SweepOptionError(f"--targets: unknown target {bad[0]!r}; choose from {', '.join(BITS_TARGETS)}")
        grid["target"] = [s for s in BITS_TARGETS if s in tg]
    elif kind == "opamp":
        grid["gain"] = parse_range("gain", given.get("gain", dflt["gain"][q]), lo=1,
                                   words={"ideal": math.inf, "inf": math.inf})
        grid["gbw_hz"] = parse_range("gbw", given.get("gbw", dflt["gbw"][q]), lo=0, lo_open=True,
                                     words={"none": math.inf, "inf": math.inf})
    elif kind == "time":
        t = given.get("t")
        if t is None:
            t = [_round(f / lam_min) for f in dflt["t"][q]]
        grid["t_tau"] = parse_range("t", t, lo=0, lo_open=True, hi=1e6)
        k = parse_range("kappa0", given.get("kappa0", 0.0), lo=0)
        if len(k) != 1:
            raise SweepOptionError("--kappa0 takes one value for sweep time (the noise sweep takes a range)")
        spec["kappa0"] = k[0]
    if kind in ("tolerance", "opamp"):
        st = float(given.get("settle_tol", SETTLE_TOL))
        if not (0 < st < 1):
            raise SweepOptionError(f"--settle-tol must be in (0, 1), got {st:g}")
        spec["settle_tol"] = st
    spec["grid"] = grid
    spec["columns"] = columns(kind)
    spec["points"] = len(grid_points(spec))
    if spec["points"] == 0:
        raise EmptyRangeError(f"sweep {kind} has no points (every gain is ideal and every GBW finite?)")
    # Check once, here, that the circuit can be built at all (resistor ranges etc.).
    if backend == "ngspice":
        from circuits.topologies import build
        from spu.core.errors import DesignError

        try:
            build(problem, topology, t=1.0)
        except DesignError as exc:
            raise SweepOptionError(f"the test problem cannot be built as a {topology} circuit: {exc}") from None
    return spec


def _json(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, allow_nan=True)


def point_seed(base: int, index: int) -> int:
    """Seed of repetition `index`: fixed by (base, index) alone, in [1, 2**31 - 1]."""
    return int(np.random.SeedSequence([int(base), int(index)]).generate_state(1)[0]) % (SEED_MAX - 1) + 1


def grid_points(spec: dict) -> list[dict]:
    """All points of the sweep, in id order: the grid product with the repetitions innermost."""
    kind, g, S = spec["kind"], spec["grid"], spec["seeds"]
    seeds = [point_seed(spec["seed"], r) for r in range(S)]
    pts: list[dict] = []
    if kind == "noise":
        for k, T, r in itertools.product(g["kappa0"], g["temperature_k"], range(S)):
            pts.append({"kappa0": k, "temperature_k": T, "seed_index": r, "seed": seeds[r], "t_tau": spec["t_tau"]})
    elif kind == "tolerance":
        for tr, tc, r in itertools.product(g["tol_r"], g["tol_c"], range(S)):
            pts.append({"tol_r": tr, "tol_c": tc, "draw": r, "component_seed": seeds[r]})
    elif kind == "bits":
        for tg, bits in itertools.product(g["target"], g["bits"]):
            pts.append({"target": tg, "bits": bits})
    elif kind == "opamp":
        for gain, gbw in itertools.product(g["gain"], g["gbw_hz"]):
            if math.isinf(gain) and math.isfinite(gbw):
                continue  # a pole needs a finite DC gain (circuits.design.OpAmp)
            pts.append({"gain": gain, "gbw_hz": gbw})
    elif kind == "time":
        for t, r in itertools.product(g["t_tau"], range(S)):
            pts.append({"t_tau": t, "seed_index": r, "seed": seeds[r]})
    for i, p in enumerate(pts):
        p["point"] = i
    return pts


# -- evaluating one point (runs in worker processes) ---------------------------------------------
@dataclass
class _Context:
    problem: object
    x_star: np.ndarray
    norm: float
    w: np.ndarray     # eigenvalues of A
    c: np.ndarray     # Q^T x*
    lam_min: float


@lru_cache(maxsize=8)
def _context(spec_json: str) -> _Context:
    spec = json.loads(spec_json)
    problem = make_problem(**spec["problem"])
    A = problem.matrix()
    w, Q = np.linalg.eigh(A)
    x_star = np.linalg.solve(A, problem.b)
    return _Context(problem, x_star, float(np.linalg.norm(x_star)), w, Q.T @ x_star, float(w[0]))


def theory_rms(ctx: _Context, t: float, kappa0: float) -> float:
    """sqrt(E||x(t) - x*||^2)/||x*|| of the ideal OU process from x0 = 0: the mean error
    -exp(-A t) x* plus the covariance kappa0 A^-1 (I - exp(-2 A t))."""
    mean2 = float(np.sum((np.exp(-ctx.w * t) * ctx.c) ** 2))
    var = float(kappa0 * np.sum(-np.expm1(-2 * ctx.w * t) / ctx.w))
    return math.sqrt(mean2 + var) / ctx.norm


def settle_time(times: np.ndarray, X: np.ndarray, tol: float) -> float:
    """First time after which ||x(s) - x(end)|| <= tol * ||x(end)|| holds for every later sample,
    interpolated linearly between samples; inf if that happens only in the last 10% of the run."""
    final = X[-1]
    scale = max(float(np.linalg.norm(final)), np.finfo(float).tiny)
    d = np.linalg.norm(X - final, axis=1) / scale
    out = np.flatnonzero(d > tol)
    if out.size == 0:
        return float(times[0])
    k = int(out[-1])
    if k + 1 >= len(times):
        return math.inf
    t0, t1, d0, d1 = times[k], times[k + 1], d[k], d[k + 1]
    ts = float(t0 + (t1 - t0) * (d0 - tol) / (d0 - d1)) if d0 != d1 else float(t1)
    return math.inf if ts > 0.9 * times[-1] else ts


def growing(times: np.ndarray, E: np.ndarray) -> bool:
    """Whether the peak of ||E|| over the last quarter of the run exceeds that over the third
    quarter by more than 1%: an unstable (e.g. oscillating, growing) circuit, not a slow one."""
    nrm = np.linalg.norm(E, axis=1)
    T = times[-1]
    q3 = nrm[(times >= 0.5 * T) & (times < 0.75 * T)]
    q4 = nrm[times >= 0.75 * T]
    return bool(q3.size and q4.size and q4.max() > 1.01 * q3.max())


def ideal_settle_time(ctx: _Context, t: float, tol: float, samples: int = 20001) -> float:
    """settle_time of the exact ideal solution x(s) = x* - exp(-A s) x* on a fine grid (in the
    eigenbasis, where norms are the same)."""
    s = np.linspace(0.0, t, samples)
    E = np.exp(-np.outer(s, ctx.w)) * ctx.c      # Q^T (x* - x(s))
    X = ctx.c - E                                 # Q^T x(s)
    return settle_time(s, X, tol)


def _design(spec: dict, pt: dict):
    from circuits.design import Design, OpAmp

    kind = spec["kind"]
    if kind == "noise":
        return Design(temperature=pt["temperature_k"] or None)
    if kind == "tolerance":
        return Design(tol_r=pt["tol_r"], tol_c=pt["tol_c"], component_seed=pt["component_seed"])
    if kind == "bits":
        tg, b = pt["target"], pt["bits"]
        return Design(bits_r=b if tg in ("r", "all") else None, bits_dac=b if tg in ("dac", "all") else None,
                      bits_adc=b if tg in ("adc", "all") else None)
    if kind == "opamp":
        gain = None if math.isinf(pt["gain"]) else pt["gain"]
        gbw = None if math.isinf(pt["gbw_hz"]) else pt["gbw_hz"]
        return Design(opamp=OpAmp(gain, gbw))
    return Design()


def evaluate_point(spec_json: str, pt: dict) -> dict:
    """Run one point. Returns {"row": dict or None, "error": message or None, "retry": bool,
    "wall_s", "host", "pid"}. Only deterministic outcomes give a row (see the module docstring)."""
    from spu.device import SPU
    from spu.core.errors import DesignError, ProblemError

    start = time.perf_counter()
    spec = json.loads(spec_json)
    kind = spec["kind"]
    ctx = _context(spec_json)
    row = {c: pt[c] for c in PARAMS[kind]}
    row["point"] = pt["point"]
    info = {"row": None, "error": None, "retry": False, "host": socket.gethostname(), "pid": os.getpid()}
    t = pt.get("t_tau", spec.get("t_tau"))
    kappa0 = pt["kappa0"] if kind == "noise" else spec.get("kappa0", 0.0)
    seed = pt.get("seed")
    design = _design(spec, pt)
    want_report = kind in ("tolerance", "bits")
    options = {}
    if spec["backend"] == "ngspice":
        options = {"report": want_report, "timeout": spec.get("timeout", 600.0)}
    try:
        spu = SPU(spec["backend"], topology=spec["topology"], design=design, kappa0=kappa0, **options)
        res = spu.run(ctx.problem, t=t, seed=seed)
        row["rel_error"] = float(np.linalg.norm(res.x - ctx.x_star)) / ctx.norm
        row["status"] = "ok"
    except NgspiceTimeout as exc:
        info.update(error=f"{type(exc).__name__}: {exc}", retry=True, wall_s=time.perf_counter() - start)
        return info
    except (NgspiceError, DesignError, ProblemError) as exc:
        res = None
        row["rel_error"] = math.nan
        msg = str(exc)
        row["status"] = "diverged" if "non-finite" in msg or "diverged" in msg else f"failed: {type(exc).__name__}"
        info["error"] = f"{type(exc).__name__}: {msg}"
    if kind == "noise":
        row["theory_rms_error"] = theory_rms(ctx, t, kappa0)
    elif kind == "time":
        row["theory_error"] = theory_rms(ctx, t, kappa0)
        row["bound_error"] = math.exp(-ctx.lam_min * t)
    elif kind in ("tolerance", "bits"):
        row["asbuilt_error"] = (res.report["quantisation"]["steady_state_rel_error"]
                                if res is not None and res.report else math.nan)
    if kind in ("tolerance", "opamp"):
        row["settle_tau"] = math.nan
        if res is not None:
            times, X = res.extra["raw_times_tau"], res.extra["raw_states"]
            row["settle_tau"] = settle_time(times, X, spec["settle_tol"])
            if math.isinf(row["settle_tau"]):
                row["status"] = "unstable" if growing(times, X - ctx.x_star) else "unsettled"
    if kind == "opamp":
        row["ideal_settle_tau"] = ideal_settle_time(ctx, t, spec["settle_tol"])
    info["row"] = row
    info["wall_s"] = time.perf_counter() - start
    return info


# -- CSV ------------------------------------------------------------------------------------------
def fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.12g}"


def _csv_line(values: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def read_csv(path: str) -> list[dict[str, str]]:
    """Rows of a finished sweep CSV as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _atomic_write(path: str, text: str) -> None:
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_partial(path: str, cols: list[str], points: list[dict], kind: str) -> tuple[dict[int, list[str]], int]:
    """Finished rows of an earlier (maybe interrupted) run: {point id: values}. A last line cut
    short by a crash is dropped (its point is recomputed); anything else that does not fit the
    sweep is an error, never silently overwritten."""
    with open(path, newline="") as fh:
        text = fh.read()
    if not text:
        return {}, 0
    lines = text.split("\n")
    dropped = 0
    if lines[-1] != "":
        lines = lines[:-1]  # partial last line (no newline): an interrupted write
        dropped = 1
    else:
        lines = lines[:-1]
    if not lines:
        return {}, dropped
    header = next(csv.reader([lines[0]]))
    if header != cols:
        raise SweepMismatchError(f"{path} has columns {','.join(header)}, not those of sweep {kind} "
                                 f"({','.join(cols)}); use another --out folder or remove the file")
    done: dict[int, list[str]] = {}
    params = PARAMS[kind]
    for ln, line in enumerate(lines[1:], start=2):
        vals = next(csv.reader([line]), [])
        if len(vals) != len(cols):
            raise SweepMismatchError(f"{path} line {ln} has {len(vals)} fields, not {len(cols)}; the file is "
                                     "damaged: remove it (and its manifest) to start over")
        try:
            pid = int(vals[0])
            pt = points[pid]
        except (ValueError, IndexError):
            raise SweepMismatchError(f"{path} line {ln}: point id {vals[0]!r} is not a point of this sweep") from None
        for c in params:
            if vals[cols.index(c)] != fmt(pt[c]):
                raise SweepMismatchError(f"{path} line {ln}: point {pid} has {c} = {vals[cols.index(c)]}, but this "
                                         f"sweep's point {pid} has {c} = {fmt(pt[c])}")
        done.setdefault(pid, vals)
    return done, dropped


# -- output folder --------------------------------------------------------------------------------
def _prepare_folder(out: str) -> str:
    return ensure_output_folder(out, "sweep results", OutputFolderError)


def _diff_keys(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _check_manifest(path: str, spec: dict, csv_path: str) -> None:
    if not os.path.exists(path):
        if os.path.exists(csv_path) and os.path.getsize(csv_path) > 0:
            raise SweepMismatchError(f"{csv_path} exists but {os.path.basename(path)} does not: it is not a "
                                     "resumable sweep of this kind; use another --out folder or remove the CSV")
        _atomic_write(path, json.dumps(spec, indent=1, sort_keys=True) + "\n")
        return
    try:
        with open(path) as fh:
            old = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SweepMismatchError(f"cannot read the sweep manifest {path}: {exc}") from None
    if old != json.loads(_json(spec)):
        keys = _diff_keys(old, json.loads(_json(spec)))
        raise SweepMismatchError(
            f"{os.path.dirname(path)} holds a different {spec['kind']} sweep (its manifest differs in "
            f"{', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}); use another --out folder, rerun with "
            f"the same options, or delete {spec['kind']}.* there to start over")


# -- running --------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    kind: str
    out: str
    csv_path: str
    png_path: str | None
    summary_path: str | None
    manifest_path: str
    total: int
    skipped: int          # points already finished by an earlier run
    computed: int         # points evaluated (and written) by this run
    failed: int           # rows with status != ok (deterministic failures, written)
    retry: int            # points without a row (ngspice timeout): a rerun retries them
    wall_s: float
    spec: dict = field(repr=False, default_factory=dict)


def _serial(spec_json, todo):
    for pt in todo:
        yield pt, evaluate_point(spec_json, pt)


def _processes(spec_json, todo, workers):
    ctx = multiprocessing.get_context("forkserver")
    # forkserver, not fork: the parent may hold threads (tqdm, a Dask client) that a fork copies
    # mid-lock. Preloading this module makes each worker start in milliseconds.
    ctx.set_forkserver_preload(["analysis.sweeps"])
    ex = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx)
    try:
        futs = {ex.submit(evaluate_point, spec_json, pt): pt for pt in todo}
        for f in as_completed(futs):
            yield futs[f], f.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def connect_scheduler(address: str, timeout: float = 10.0):
    """A dask.distributed Client for `address`, or a SchedulerError within about `timeout` s."""
    try:
        from distributed import Client
    except ImportError as exc:  # pinned in pyproject; only a broken install lands here
        raise SchedulerError(f"--scheduler needs dask.distributed: {exc}") from None
    if not isinstance(address, str) or not address.strip():
        raise SchedulerError("--scheduler needs an address such as tcp://host:8786")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError/TimeoutError when unreachable, ValueError for a bad address
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise SchedulerError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s: {msg}") from None


def _dask(spec_json, todo, client):
    from distributed import as_completed as dask_completed

    tag = hashlib.sha1(spec_json.encode()).hexdigest()[:12]
    futs = {}
    for pt in todo:
        f = client.submit(evaluate_point, spec_json, pt, pure=False,
                          key=f"thermospice-sweep-{json.loads(spec_json)['kind']}-{tag}-{pt['point']}")
        futs[f.key] = (f, pt)
    pending = dict(futs)
    try:
        for f in dask_completed([f for f, _ in futs.values()], loop=client.loop):
            pending.pop(f.key, None)
            yield futs[f.key][1], f.result()
    finally:
        if pending:
            client.cancel([f for f, _ in pending.values()])


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_sweep(kind: str, out: str = "sweeps", *, quick: bool = False, workers: int | None = None,
              scheduler: str | None = None, scheduler_timeout: float = 10.0, progress: bool = True,
              stop_after: int | None = None, plot: bool = True, **options) -> SweepResult:
    """Run (or resume) a sweep into folder `out`; see the module docstring.

    stop_after: stop (raising SweepInterrupted, which carries the partial SweepResult) once this
    many points have been written by this run, as a crash would; the next run resumes."""
    check_kind(kind)
    t_start = time.perf_counter()
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise SweepOptionError(f"--workers must be an integer >= 1, got {workers!r}")
    if not (isinstance(scheduler_timeout, (int, float)) and scheduler_timeout > 0):
        raise SweepOptionError(f"--scheduler-timeout must be > 0 seconds, got {scheduler_timeout!r}")
    timeout = options.get("timeout")
    spec = build_spec(kind, quick=quick, **options)
    # The ngspice timeout is an execution setting, not part of the sweep: it stays out of the manifest.
    run_spec = dict(spec, timeout=float(timeout) if timeout is not None else 600.0)
    spec_json = _json(run_spec)
    out = _prepare_folder(out)
    # Connect before touching the folder's sweep files, so an unreachable scheduler leaves nothing behind.
    client = connect_scheduler(scheduler, scheduler_timeout) if scheduler is not None else None
    paths = {s: os.path.join(out, f"{kind}{s}") for s in
             (".csv", ".png", "_summary.csv", ".manifest.json", ".timings.csv", ".errors.log")}
    try:
        with open(os.path.join(out, f".{kind}.lock"), "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise SweepError(f"another {kind} sweep is running in {out} (lock held); wait for it or use "
                                 "another --out folder") from None
            return _run_locked(kind, spec, spec_json, out, paths, workers, client, progress, stop_after, plot,
                               t_start)
    finally:
        if client is not None:
            client.close()


def _run_locked(kind, spec, spec_json, out, paths, workers, client, progress, stop_after, plot,
                t_start) -> SweepResult:
    from tqdm import tqdm

    cols = spec["columns"]
    points = grid_points(spec)
    csv_path = paths[".csv"]
    _check_manifest(paths[".manifest.json"], spec, csv_path)
    done: dict[int, list[str]] = {}
    if os.path.exists(csv_path):
        done, _ = _load_partial(csv_path, cols, points, kind)
    # Rewrite what is valid (drops a half-written last line), then append to it.
    _atomic_write(csv_path, "".join(_csv_line(v) for v in [cols] + [done[k] for k in sorted(done)]))
    skipped = len(done)
    todo = [p for p in points if p["point"] not in done]
    computed = failed = retry = 0
    result = None
    stream = None
    try:
        if todo:
            if client is not None:
                stream = _dask(spec_json, todo, client)
            elif workers == 1 or len(todo) == 1:
                stream = _serial(spec_json, todo)
            else:
                stream = _processes(spec_json, todo, workers)
            new_timings = not os.path.exists(paths[".timings.csv"])
            with open(csv_path, "a", newline="") as fcsv, open(paths[".timings.csv"], "a") as ftim, \
                    tqdm(total=len(points), initial=skipped, desc=f"sweep {kind}", unit="pt", file=sys.stderr,
                         disable=not progress, dynamic_ncols=True) as bar:
                if new_timings:
                    ftim.write("point,wall_s,host,pid\n")
                for pt, info in stream:
                    if info["error"]:
                        with open(paths[".errors.log"], "a") as fe:
                            fe.write(f"point {pt['point']} {json.dumps({k: pt[k] for k in PARAMS[kind]})}: "
                                     f"{info['error']}\n")
                    if info["retry"]:
                        retry += 1
                        bar.update(1)
                        continue
                    vals = [fmt(info["row"][c]) for c in cols]
                    fcsv.write(_csv_line(vals))
                    fcsv.flush()
                    os.fsync(fcsv.fileno())
                    ftim.write(f"{pt['point']},{info['wall_s']:.4f},{info['host']},{info['pid']}\n")
                    ftim.flush()
                    done[pt["point"]] = vals
                    computed += 1
                    failed += info["row"]["status"] != "ok"
                    bar.update(1)
                    if stop_after is not None and computed >= stop_after and len(done) < len(points):
                        result = _result(kind, out, paths, spec, points, skipped, computed, failed, retry, t_start,
                                         finished=False)
                        raise SweepInterrupted(f"sweep {kind} stopped after {computed} points (stop_after); "
                                               f"rerun to resume", result)
    finally:
        if stream is not None:
            stream.close()
    # Finished (maybe with retries pending): the sorted CSV, summary and plot.
    _atomic_write(csv_path, "".join(_csv_line(v) for v in [cols] + [done[k] for k in sorted(done)]))
    rows = [dict(zip(cols, done[k])) for k in sorted(done)]
    if kind in SUMMARY:
        _atomic_write(paths["_summary.csv"], summary_csv(kind, rows))
    if plot and rows:
        from .sweep_plots import plot_sweep

        plot_sweep(kind, rows, spec, paths[".png"])
    return _result(kind, out, paths, spec, points, skipped, computed, failed, retry, t_start, finished=True)


def _result(kind, out, paths, spec, points, skipped, computed, failed, retry, t_start, finished) -> SweepResult:
    return SweepResult(kind=kind, out=out, csv_path=paths[".csv"],
                       png_path=paths[".png"] if finished and os.path.exists(paths[".png"]) else None,
                       summary_path=paths["_summary.csv"] if finished and kind in SUMMARY else None,
                       manifest_path=paths[".manifest.json"], total=len(points), skipped=skipped,
                       computed=computed, failed=failed, retry=retry, wall_s=time.perf_counter() - t_start,
                       spec=spec)


# -- summary --------------------------------------------------------------------------------------
def summary_columns(kind: str) -> list[str]:
    keys, extra = SUMMARY[kind]
    return list(keys) + ["n_ok", "n_failed", "rel_error_mean", "rel_error_std", "rel_error_rms"] + \
        [f"{e}_mean" for e in extra]


def summary_rows(kind: str, rows: list[dict[str, str]]) -> list[dict]:
    """Statistics over the repetitions (seeds / draws) of each grid value; rows in id order."""
    keys, extra = SUMMARY[kind]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        e = np.array([float(r["rel_error"]) for r in ok])
        row = dict(zip(keys, key))
        row.update(n_ok=len(ok), n_failed=len(rs) - len(ok),
                   rel_error_mean=float(e.mean()) if e.size else math.nan,
                   rel_error_std=float(e.std(ddof=1)) if e.size > 1 else (0.0 if e.size else math.nan),
                   rel_error_rms=float(np.sqrt(np.mean(e ** 2))) if e.size else math.nan)
        for c in extra:
            v = np.array([float(r[c]) for r in ok])
            row[f"{c}_mean"] = float(v.mean()) if v.size else math.nan
        out.append(row)
    return out


def summary_csv(kind: str, rows: list[dict[str, str]]) -> str:
    cols = summary_columns(kind)
    return "".join(_csv_line(v) for v in [cols] + [[fmt(r[c]) for c in cols] for r in summary_rows(kind, rows)])
