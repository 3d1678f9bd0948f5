"""What a sweep is: its options and their checks, its CSV columns, and its grid of points.

``build_spec(kind, quick=..., **options)`` resolves and validates the options into the sweep's
JSON-able specification (written to KIND.manifest.json); ``grid_points(spec)`` lists its points in
id order. The options every kind shares are checked here; the kind's own (its grid) by the kind
object (analysis/sweep_kinds/). See analysis/sweeps.py for how a sweep runs.
"""

from __future__ import annotations

import json
import math

import numpy as np

from spu.limits import Limits

from .ranges import count, round12
from .sweep_errors import EmptyRangeError, SweepOptionError
from .sweep_kinds import SWEEP_KINDS, SweepKind, circuit_backend, sweep_kind
from .sweep_point import make_problem

FORMAT = 1
SEED_MAX = 2**31 - 1  # ngspice's seed option is a C int (see circuits.topologies.ngspice_seed)


# -- CSV columns ----------------------------------------------------------------------------------
def columns(kind: str) -> list[str]:
    return [c for c, _ in sweep_kind(kind).columns]


def columns_help(kind: str | None = None) -> str:
    """Plain-text table of the CSV columns (for --help epilogs and docs)."""
    kinds = SWEEP_KINDS.values() if kind is None else (sweep_kind(kind),)
    out = []
    for k in kinds:
        out.append(f"{k.name}.csv columns:")
        width = max(len(c) for c, _ in k.columns)
        out += [f"  {c:<{width}}  {d}" for c, d in k.columns]
        if k.summary:
            keys, extra = k.summary.keys, k.summary.extra
            out.append(
                f"  ({k.name}_summary.csv: {', '.join(keys)}, n_ok, n_failed, rel_error_mean, rel_error_std, "
                f"rel_error_rms{''.join(', ' + e + '_mean' for e in extra)}; over the repetitions)"
            )
    return "\n".join(out)


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
    return {
        "form": form,
        "n": int(p["n"]),
        "seed": int(p["seed"]),
        "lam": float(lam),
        "batch": int(p["batch"]),
        "dz": int(p["dz"]),
    }


def _problem_options(given: dict, quick: bool) -> dict:
    base = PROBLEM_QUICK if quick else PROBLEM_DEFAULTS
    return _check_problem_options(
        {
            "form": given.get("form", base["form"]),
            "n": given.get("n", base["n"]),
            "seed": given.get("problem_seed", base["seed"]),
            "lam": given.get("lam", base["lam"]),
            "batch": given.get("batch", base["batch"]),
            "dz": given.get("dz", base["dz"]),
        }
    )


# -- sweep specification --------------------------------------------------------------------------
# The options of every kind; each kind adds its own (SweepKind.options).
COMMON_OPTIONS = frozenset(
    {"n", "form", "problem_seed", "lam", "batch", "dz", "topology", "backend", "seeds", "seed", "timeout"}
)


def _given(kind: SweepKind, options: dict) -> dict:
    """The options set (not None), each checked to apply to this kind."""
    given = {k: v for k, v in options.items() if v is not None}
    for k in given:
        if k not in COMMON_OPTIONS | kind.options:
            others = [kk.name for kk in SWEEP_KINDS.values() if k in kk.options]
            where = f" (it belongs to: {', '.join(others)})" if others else ""
            raise SweepOptionError(f"option --{k.replace('_', '-')} does not apply to sweep {kind.name}{where}")
    return given


def _topology(given: dict, form: str) -> str:
    from circuits.topologies import TOPOLOGIES, find

    topology = given.get("topology", "crossbar" if form == "ggn" else "dense")
    chosen = find(topology)
    if chosen is None:
        raise SweepOptionError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")
    if form == "spd" and not chosen.accepts_dense:
        raise SweepOptionError(f"topology {topology} needs --form ggn (a dense SPD A has no J/H factors)")
    return topology


def _run_options(kind: SweepKind, given: dict, quick: bool) -> tuple[str, int, int]:
    """(backend, repetitions, base seed), checked; and the ngspice timeout checked."""
    backend = given.get("backend", kind.backends[0])
    kind.check_backend(backend)
    seeds = kind.default(given, "seeds", quick)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise SweepOptionError(f"--seeds must be an integer >= 1, got {seeds!r}")
    kind.check_seeds(seeds)
    seed = given.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SweepOptionError(f"--seed must be an integer >= 0, got {seed!r}")
    timeout = float(given.get("timeout", 600.0))
    if not (math.isfinite(timeout) and timeout > 0):
        raise SweepOptionError(f"--timeout must be a number of seconds > 0, got {timeout:g}")
    return backend, int(seeds), int(seed)


def _check_size(sweep: SweepKind, given: dict, quick: bool, seeds: int, limits: Limits) -> None:
    """Refuse, before any grid is made, a sweep with more points than the limit: the product of
    its ranges' sizes (given or default) and the repetitions, counted without making them."""
    points = seeds
    for option in sorted(sweep.options):
        default = sweep.defaults.get(option, (1, 1))[int(quick)]
        points *= count(given.get(option, default))
    limits.check_points(f"sweep {sweep.name} (its grid x {seeds} seeds, before duplicates are removed)", points)


def _check_buildable(problem, topology: str, t_max: float, limits: Limits) -> None:
    """Check once, here, that the circuit can be built at all (resistor ranges etc.), and that its
    longest run's ngspice transient stays within the step limit (each step of the built circuit
    at t = 1 covers the same share of tau at any t)."""
    from circuits.topologies import build
    from spu.core.errors import DesignError
    from spu.limits import transient_steps

    try:
        circuit = build(problem, topology, t=1.0)
    except DesignError as exc:
        raise SweepOptionError(f"the test problem cannot be built as a {topology} circuit: {exc}") from None
    _, t_stop, t_max_step = circuit.tran_args()
    limits.check_steps(
        f"the sweep's longest ngspice run (t = {t_max:g} tau)", t_max * transient_steps(t_stop, t_max_step)
    )


def build_spec(kind: str, *, quick: bool = False, limits: Limits | None = None, **options) -> dict:
    """Resolve defaults, validate every option and return the sweep's JSON-able specification.

    Options (None = default): problem: n, form (ggn|spd), problem_seed, lam, batch, dz;
    topology, backend, seeds (repetitions), seed (base seed), timeout (s per ngspice run);
    and the kind's own (its SweepKind.options; e.g. noise: kappa0, temperature, t; time: t as a
    range, kappa0 as one value). Ranges as in analysis.ranges.parse_range. limits: the grid's
    points and the longest run's ngspice steps are checked against them (default Limits())."""
    limits = limits or Limits()
    sweep = sweep_kind(kind)
    given = _given(sweep, options)
    prob = _problem_options(given, quick)
    topology = _topology(given, prob["form"])
    backend, seeds, seed = _run_options(sweep, given, quick)
    _check_size(sweep, given, quick, seeds, limits)
    circuit = circuit_backend(backend)
    problem = make_problem(**prob)
    lam_min = float(problem.eig_extremes()[0])
    spec = {
        "format": FORMAT,
        "kind": kind,
        "problem": prob,
        "topology": topology if circuit else None,
        "backend": backend,
        "seeds": seeds,
        "seed": seed,
        "lambda_min": round12(lam_min),
    }
    spec.update(sweep.resolve(given, quick, lam_min, backend))
    spec["columns"] = columns(kind)
    spec["points"] = len(grid_points(spec))
    if spec["points"] == 0:
        raise EmptyRangeError(f"sweep {kind} has no points{sweep.empty_hint}")
    if circuit:
        _check_buildable(problem, topology, sweep.longest_t(spec), limits)
    return spec


def spec_json(spec: dict) -> str:
    """The canonical JSON of a spec: what workers receive and what manifests are compared by."""
    return json.dumps(spec, sort_keys=True, allow_nan=True)


def point_seed(base: int, index: int) -> int:
    """Seed of repetition `index`: fixed by (base, index) alone, in [1, 2**31 - 1]."""
    return int(np.random.SeedSequence([int(base), int(index)]).generate_state(1)[0]) % (SEED_MAX - 1) + 1


def grid_points(spec: dict) -> list[dict]:
    """All points of the sweep, in id order: the grid product with the repetitions innermost."""
    seeds = [point_seed(spec["seed"], r) for r in range(spec["seeds"])]
    pts = sweep_kind(spec["kind"]).points(spec, seeds)
    for i, p in enumerate(pts):
        p["point"] = i
    return pts
