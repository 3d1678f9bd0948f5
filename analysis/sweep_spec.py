"""What a sweep is: its kinds, CSV columns, options and their checks, and its grid of points.

``build_spec(kind, quick=..., **options)`` resolves and validates the options into the sweep's
JSON-able specification (written to KIND.manifest.json); ``grid_points(spec)`` lists its points in
id order. See analysis/sweeps.py for how a sweep runs.
"""
from __future__ import annotations

import itertools
import json
import math

import numpy as np

from spu.core.errors import ThermospiceError
from spu.core.spectral import MODE_DECAY_TOL, settling_time

from .sweep_point import make_problem

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


class SweepMismatchError(SweepError):
    """The output folder holds results of a sweep with other parameters."""


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
# Settling band of tolerance/opamp points, relative to the final state (a trajectory tolerance,
# not spu.core.spectral.MODE_DECAY_TOL, which sets the default t below).
TRAJECTORY_SETTLE_TOL = 1e-3


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
        t = given.get("t", _round(settling_time(lam_min, MODE_DECAY_TOL)))
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
        st = float(given.get("settle_tol", TRAJECTORY_SETTLE_TOL))
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


def spec_json(spec: dict) -> str:
    """The canonical JSON of a spec: what workers receive and what manifests are compared by."""
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
