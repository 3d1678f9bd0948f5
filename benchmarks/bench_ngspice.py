"""Wall time of one ngspice solve for the `factored` and `crossbar` topologies against circuit size.

    python benchmarks/bench_ngspice.py --quick      # ~5 min: N = 100..400, m = 16, validation, target case
    python benchmarks/bench_ngspice.py --quick --no-target   # ~1.5 min
    python benchmarks/bench_ngspice.py              # ~10 min: N = 100..2000, m = 16 and 64, within --budget-s
    options: --out DIR (default benchmarks/results/), --budget-s S, --case-cap-s S, --no-target,
             --no-options, --no-pyspice

What one solve costs, split the way the code splits it:

* generation: circuits.topologies.build (matrix -> components) and Circuit.text() (netlist text);
* ngspice: the `ngspice -b -r out.raw` process as spu.ngspice.run.run_ngspice runs it;
* parsing: spu.ngspice.rawfile.read_raw of the binary raw file;
* overhead: the rest of run_ngspice (writing the netlist, process start, temp dir).

Every solve is a transient of t = 50 tau. At the sizes that matter one such run takes minutes to
hours (see the printed table), so each case is MEASURED on a short transient (t_short = 0.05 tau
with noise, 0.1 tau without) with `.options acct` (ngspice's own accounting: reorder, load, factor,
solve time, iterations, time points) and EXTRAPOLATED to t = 50 tau:

    ngspice(50) = ngspice(t_short) + (P(50) - P(t_short)) * (iterations per point) * (cost per iteration)

with cost per iteration = (analysis time - reorder time) / iterations from the same run, and P(50),
the accepted time points at 50 tau, from the rate at which points accrue in the second half of the
short run (noise on: set by the noise hold time noise_dt) or from the step cap dt_max (noise off:
P grows by 50/dt_max at least, so that estimate is a lower bound). Parsing is scaled by points.
`--quick` also runs small cases at full length and prints predicted against measured.

Also reported: the cost of building the same N=1000, m=64 factored circuit as PySpice objects
(`PySpice.Spice.Netlist.Circuit`, `c.R(name, n1, n2, value)`, then `str(circuit)`) against
circuits.netlist's own emitter, and (unless --no-options) the effect of ngspice/design settings on
time points and cost per point on a mid-size case. Nothing here changes the Design defaults.

Output: <out>/bench_ngspice.csv, <out>/bench_ngspice.png, <out>/bench_ngspice_options.csv,
<out>/bench_ngspice_pyspice.csv, and the tables on stdout.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from circuits.design import Design  # noqa: E402
from circuits.netlist import Element, Netlist  # noqa: E402
from circuits.topologies import build  # noqa: E402
from spu.core.errors import NgspiceTimeout, ThermospiceError  # noqa: E402
from spu.core.problems import FactoredProblem, GGNProblem  # noqa: E402
from spu.core.softmax import random_softmax_hessian  # noqa: E402
from spu.ngspice.rawfile import read_raw  # noqa: E402
from spu.ngspice.run import run_ngspice  # noqa: E402

T_FULL = 50.0  # tau: the solve being benchmarked
T_SHORT = {True: 0.05, False: 0.1}  # tau of the measured run, noise on / off
KAPPA0 = 0.01  # noise level when noise is on
TARGET = ("factored", 1000, 64, True, 5.0)  # topology, N, m, noise, seconds
DZ = 4  # classes per sample in the crossbar's GGN (m = batch * DZ)


# -- problems ---------------------------------------------------------------------------------------
def make_problem(topology: str, n: int, m: int, seed: int = 0):
    """Entries of magnitude 0.1..0.2 (factored) / 0.1..0.3 (J) with random signs: inside the resistor
    range for every N with the default Design (autoranged arrays), lam = 1."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(-1, 1, n)
    if topology == "factored":
        U = rng.choice([-1.0, 1.0], (n, m)) * rng.uniform(0.1, 0.2, (n, m))
        return FactoredProblem(U, 1.0, b)
    J = rng.choice([-1.0, 1.0], (m, n)) * rng.uniform(0.1, 0.3, (m, n))
    H = random_softmax_hessian(rng, m // DZ, DZ)  # softmax cross-entropy blocks (m = batch * DZ)
    return GGNProblem(J, H, 1.0, b)


# -- one measured case ------------------------------------------------------------------------------
_ACCT = {
    "equations": r"Circuit Equations\s*=\s*(\S+)",
    "iterations": r"Transient iterations\s*=\s*(\S+)",
    "timepoints": r"Transient timepoints\s*=\s*(\S+)",
    "accepted": r"Accepted timepoints\s*=\s*(\S+)",
    "rejected": r"Rejected timepoints\s*=\s*(\S+)",
    "load_s": r"Transient load time\s*=\s*(\S+)",
    "factor_s": r"Transient factor time\s*=\s*(\S+)",
    "solve_s": r"Transient solve time\s*=\s*(\S+)",
    "reorder_s": r"Matrix reorder time\s*=\s*(\S+)",
    "analysis_s": r"Transient analysis time\s*=\s*(\S+)",
    "parse_netlist_s": r"Netlist parsing time\s*=\s*(\S+)",
    "load_netlist_s": r"Netlist loading time\s*=\s*(\S+)",
    "expand_s": r"Subckt and Param expansion time\s*=\s*(\S+)",
}


def parse_acct(text: str) -> dict:
    out = {}
    for key, pat in _ACCT.items():
        m = re.search(pat, text)
        out[key] = float(m.group(1)) if m else float("nan")
    return out


@dataclass
class Case:
    topology: str
    n: int
    m: int
    noise: bool
    components: int = 0
    resistors: int = 0
    netlist_mb: float = 0.0
    t_run_tau: float = 0.0
    measured_full: bool = False
    build_s: float = 0.0
    text_s: float = 0.0
    ngspice_run_s: float = 0.0  # the process, for the measured (short) run
    parse_run_s: float = 0.0
    overhead_s: float = 0.0
    points_run: int = 0
    equations: int = 0
    iterations: int = 0
    reorder_s: float = 0.0
    ngspice_setup_s: float = 0.0  # netlist loading + expansion + parsing inside ngspice
    s_per_iteration: float = 0.0
    load_ms: float = 0.0  # per iteration
    factor_ms: float = 0.0
    solve_ms: float = 0.0
    iters_per_point: float = 0.0
    points_full: float = 0.0  # accepted points at T_FULL (measured or extrapolated)
    points_full_is_lower_bound: bool = False
    ngspice_full_s: float = 0.0
    parse_full_s: float = 0.0
    total_full_s: float = 0.0
    status: str = "ok"
    extra: dict = field(default_factory=dict)

    @property
    def generation_s(self) -> float:
        return self.build_s + self.text_s


def measure(case: Case, design: Design, t_run: float, timeout: float, subs=(), seed: int = 1) -> Case:
    """Build, emit, run ngspice for t_run tau and parse; extrapolate to T_FULL."""
    problem = make_problem(case.topology, case.n, case.m)
    kappa0 = KAPPA0 if case.noise else 0.0
    t0 = time.perf_counter()
    circuit = build(problem, case.topology, design, kappa0=kappa0, t=t_run, seed=seed)
    t1 = time.perf_counter()
    text = circuit.text()
    t2 = time.perf_counter()
    case.build_s, case.text_s = t1 - t0, t2 - t1
    counts = circuit.netlist.counts()
    case.components = int(sum(counts.values()))
    case.resistors = int(counts.get("R", 0))
    case.netlist_mb = len(text) / 1e6
    # Benchmark-only edits of the emitted text: ngspice's time accounting, plus option experiments.
    text = text.replace(".options ", ".options acct ", 1)
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new)
    t3 = time.perf_counter()
    res = run_ngspice(text, keep=True, timeout=timeout)
    t4 = time.perf_counter()
    try:
        raw_path = os.path.join(res.workdir, "out.raw")
        t5 = time.perf_counter()
        raw = read_raw(raw_path)
        t6 = time.perf_counter()
    finally:
        shutil.rmtree(res.workdir, ignore_errors=True)
    case.t_run_tau = t_run
    case.ngspice_run_s = res.wall_time_s
    case.parse_run_s = t6 - t5
    # run_ngspice also parsed the raw file once; what is left is file writing, process start, cleanup.
    case.overhead_s = max((t4 - t3) - res.wall_time_s - case.parse_run_s, 0.0)
    acct = parse_acct(res.stdout + "\n" + res.stderr)
    case.points_run = raw.npoints
    case.equations = int(acct["equations"])
    case.iterations = int(acct["iterations"])
    case.reorder_s = acct["reorder_s"]
    case.ngspice_setup_s = acct["load_netlist_s"] + acct["expand_s"] + acct["parse_netlist_s"]
    it = max(case.iterations, 1)
    case.s_per_iteration = max(acct["analysis_s"] - acct["reorder_s"], 0.0) / it
    case.load_ms, case.factor_ms, case.solve_ms = (1e3 * acct[k] / it for k in ("load_s", "factor_s", "solve_s"))
    case.iters_per_point = it / max(acct["accepted"], 1.0)
    case.extra["x_final"] = np.array([raw[f"v({x})"][-1] for x in circuit.state_nodes])
    case.extra["x_solve"] = np.linalg.solve(problem.matrix(), problem.b) if problem.n <= 2000 else None

    # Points at T_FULL.
    tau = design.tau
    tt = raw["time"] / tau
    if t_run >= T_FULL * (1 - 1e-9):
        case.measured_full = True
        case.points_full = float(raw.npoints)
        case.ngspice_full_s = case.ngspice_run_s
        case.parse_full_s = case.parse_run_s
    else:
        if case.noise:
            half = tt > t_run / 2
            rate = half.sum() / (t_run - t_run / 2)  # accepted points per tau, steady noise regime
        else:
            rate = 1.0 / design.dt_max  # the step cap: a lower bound
            case.points_full_is_lower_bound = True
        extra_points = rate * (T_FULL - t_run)
        case.points_full = raw.npoints + extra_points
        case.ngspice_full_s = case.ngspice_run_s + extra_points * case.iters_per_point * case.s_per_iteration
        case.parse_full_s = case.parse_run_s * case.points_full / max(raw.npoints, 1)
    case.total_full_s = case.generation_s + case.ngspice_full_s + case.parse_full_s + case.overhead_s
    return case


# -- the grid ---------------------------------------------------------------------------------------
def power_fit(xs, ys):
    """y = a * x**p by least squares in log-log; returns (a, p) or None."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    ok = (xs > 0) & (ys > 0) & np.isfinite(ys)
    if ok.sum() < 2 or xs[ok].max() < 1.5 * xs[ok].min():  # too narrow a range to fit an exponent
        return None
    p, loga = np.polyfit(np.log(xs[ok]), np.log(ys[ok]), 1)
    return float(math.exp(loga)), float(p)


def run_grid(cases: list[Case], design: Design, budget_s: float, case_cap_s: float, log) -> list[Case]:
    start = time.monotonic()
    done: list[Case] = []
    for case in cases:
        # Predict this run's cost from the measured runs of the same topology and noise setting.
        same = [c for c in done if c.topology == case.topology and c.status == "ok"]
        guess = None
        if same:
            comps = _component_estimate(case.topology, case.n, case.m)
            fit = power_fit([c.components for c in same], [c.ngspice_run_s + c.generation_s for c in same])
            if fit:
                guess = fit[0] * comps ** fit[1]
        left = budget_s - (time.monotonic() - start)
        if guess is not None and (guess > case_cap_s or guess > left):
            case.status = (
                f"skipped (short run predicted {guess:.0f} s; cap {case_cap_s:.0f} s, budget left {left:.0f} s)"
            )
            log(
                f"  {case.topology:8s} N={case.n:5d} m={case.m:3d} noise={'on ' if case.noise else 'off'}: {case.status}"
            )
            done.append(case)
            continue
        t_run = T_SHORT[case.noise]
        try:
            measure(case, design, t_run, timeout=max(min(case_cap_s * 2, left), 30.0))
        except NgspiceTimeout as e:
            case.status = f"timeout ({str(e)[:80]})"
        except ThermospiceError as e:
            case.status = f"error: {str(e)[:120]}"
        log("  " + row_text(case))
        done.append(case)
    return done


def _component_estimate(topology: str, n: int, m: int) -> int:
    if topology == "factored":
        return 2 * n * m + 6 * n + 5 * m
    return 2 * n * m + m * DZ + 6 * n + 8 * m


def row_text(c: Case) -> str:
    if c.status != "ok":
        return f"{c.topology:8s} N={c.n:5d} m={c.m:3d} noise={'on ' if c.noise else 'off'}: {c.status}"
    share = (c.generation_s, c.ngspice_full_s, c.parse_full_s)
    tot = c.total_full_s
    lb = ">=" if c.points_full_is_lower_bound else "  "
    return (
        f"{c.topology:8s} N={c.n:5d} m={c.m:3d} noise={'on ' if c.noise else 'off'} comps={c.components:7d} "
        f"eq={c.equations:6d} | run {c.t_run_tau:g} tau: ngspice {c.ngspice_run_s:7.2f} s "
        f"(reorder {c.reorder_s:6.2f} s, {1e3 * c.s_per_iteration:7.2f} ms/iter, {c.iters_per_point:.2f} it/pt) | "
        f"t=50: points {lb}{c.points_full:8.0f} total {lb}{tot:9.1f} s = gen {100 * share[0] / tot:4.1f}% "
        f"ngspice {100 * share[1] / tot:5.1f}% parse {100 * share[2] / tot:4.2f}%"
        + ("  [measured]" if c.measured_full else "")
    )


# -- settings that change the number of time points or the cost of one ----------------------------
def options_study(log, n=200, m=16) -> list[dict]:
    """On one mid-size factored case: points per tau and cost per point under different settings."""
    base = Design()
    variants = [
        ("default (noise on)", base, True, ()),
        ("reltol 1e-3 instead of 1e-6 (noise on)", base, True, (("reltol=1e-06", "reltol=0.001"),)),
        ("noise_dt 0.1 tau (paper's Euler step) (noise on)", base.with_(noise_dt=0.1), True, ()),
        (
            "noise_dt 0.1 tau + reltol 1e-3 (noise on)",
            base.with_(noise_dt=0.1),
            True,
            (("reltol=1e-06", "reltol=0.001"),),
        ),
        (
            "noise_dt 0.1 + dt_max 0.1 + reltol 1e-3 (noise on)",
            base.with_(noise_dt=0.1, dt_max=0.1),
            True,
            (("reltol=1e-06", "reltol=0.001"),),
        ),
        ("pivrel 1e-12 (noise on)", base, True, (("reltol=1e-06", "reltol=1e-06 pivrel=1e-12"),)),
        ("default (noise off)", base, False, ()),
        ("dt_max 0.1 tau (noise off)", base.with_(dt_max=0.1), False, ()),
        ("dt_max 1 tau (noise off)", base.with_(dt_max=1.0), False, ()),
    ]
    rows = []
    for label, design, noise, subs in variants:
        t_run = 0.5 if noise else T_FULL  # noise off: run the full 50 tau, it is cheap here
        c = measure(Case("factored", n, m, noise), design, t_run, timeout=300, subs=subs)
        err = None
        if not noise:
            err = float(np.abs(c.extra["x_final"] - c.extra["x_solve"]).max() / np.abs(c.extra["x_solve"]).max())
        pts_per_tau = c.points_run / t_run if noise else c.points_run / T_FULL
        row = {
            "setting": label,
            "n": n,
            "m": m,
            "noise": noise,
            "t_run_tau": t_run,
            "points_per_tau": round(pts_per_tau, 1),
            "points_per_noise_interval": round(pts_per_tau * design.noise_dt, 2) if noise else "",
            "ms_per_iteration": round(1e3 * c.s_per_iteration, 3),
            "iters_per_point": round(c.iters_per_point, 2),
            "ngspice_s": round(c.ngspice_run_s, 3),
            "predicted_t50_ngspice_s": round(c.ngspice_full_s, 2),
            "rel_error_vs_solve_at_t50": "" if err is None else f"{err:.2e}",
        }
        rows.append(row)
        log(
            f"  {label:48s} points/tau {row['points_per_tau']:8.1f} "
            f"{('(' + str(row['points_per_noise_interval']) + ' per noise interval)') if noise else '':28s}"
            f" {row['ms_per_iteration']:7.3f} ms/iter  t=50 ngspice {row['predicted_t50_ngspice_s']:8.2f} s"
            + (f"  error vs solve {row['rel_error_vs_solve_at_t50']}" if err is not None else "")
        )
    return rows


# -- PySpice against the text emitter -------------------------------------------------------------
def pyspice_study(log, n=1000, m=64) -> dict:
    """Replay the elements of one built circuit into (a) a fresh circuits.netlist.Netlist and
    (b) a PySpice Circuit, and time creation and text for both (comments dropped in both)."""
    problem = make_problem("factored", n, m)
    t0 = time.perf_counter()
    circuit = build(problem, "factored", Design(), kappa0=KAPPA0, t=T_FULL, seed=1)
    t1 = time.perf_counter()
    text = circuit.text()
    t2 = time.perf_counter()
    nl = circuit.netlist
    elements = [e for e in nl.elements if isinstance(e, Element)]
    sub = nl.subckts["opamp"]
    out = {
        "n": n,
        "m": m,
        "elements": len(elements),
        "builder_build_s": t1 - t0,
        "builder_text_s": t2 - t1,
        "netlist_mb_with_comments": len(text) / 1e6,
    }

    def value_of(e):
        return e.value.split()

    # (a) the emitter alone, through its public methods
    t0 = time.perf_counter()
    own = Netlist(nl.title)
    own.subckt("opamp", sub.ports, lambda s: [s.E(x.name[1:], *x.nodes, float(x.value)) for x in sub.elements])
    for e in elements:
        v = value_of(e)
        k, name = e.kind, e.name[1:]
        if k == "R":
            own.R(name, *e.nodes, float(v[0]))
        elif k == "C":
            own.C(name, *e.nodes, float(v[0]), ic=float(v[1][3:]) if len(v) > 1 else None)
        elif k == "E":
            own.E(name, *e.nodes, float(v[0]))
        elif k == "V":
            own.V(name, *e.nodes, float(v[1]))
        elif k == "I":
            noise = None
            if len(v) > 2:
                parts = e.value[e.value.index("(") + 1 : -1].split()
                noise = (float(parts[1]), float(parts[3]))
            own.I(name, *e.nodes, float(v[1]), noise=noise)
        elif k == "X":
            own.X(name, e.nodes[:-1], e.nodes[-1])
    t1 = time.perf_counter()
    own_text = own.text()
    t2 = time.perf_counter()
    out.update(emitter_build_s=t1 - t0, emitter_text_s=t2 - t1, netlist_mb_no_comments=len(own_text) / 1e6)
    log(
        f"  circuits builder (matrix -> elements, with comments): build {out['builder_build_s']:.2f} s + "
        f"text {out['builder_text_s']:.2f} s ({out['netlist_mb_with_comments']:.1f} MB)"
    )
    log(
        f"  circuits.netlist emitter alone, {len(elements)} elements: create {out['emitter_build_s']:.2f} s + "
        f"text {out['emitter_text_s']:.2f} s = {out['emitter_build_s'] + out['emitter_text_s']:.2f} s"
    )

    # (b) PySpice
    try:
        import logging

        logging.disable(logging.WARNING)
        from PySpice.Spice.Netlist import Circuit, SubCircuit
    except Exception as exc:  # not installed or broken: report, don't fail the benchmark
        out["pyspice_error"] = f"{type(exc).__name__}: {exc}"
        log(f"  PySpice: not available ({out['pyspice_error']})")
        return out

    class OpAmp(SubCircuit):
        NODES = tuple(sub.ports)

        def __init__(self):
            super().__init__("opamp", *self.NODES)
            for x in sub.elements:
                self.VCVS(x.name[1:], *x.nodes, voltage_gain=float(x.value))

    t0 = time.perf_counter()
    c = Circuit(nl.title)
    c.subcircuit(OpAmp())
    for e in elements:
        v = value_of(e)
        k, name = e.kind, e.name[1:]
        if k == "R":
            c.R(name, *e.nodes, float(v[0]))
        elif k == "C":
            if len(v) > 1:
                c.C(name, *e.nodes, float(v[0]), initial_condition=float(v[1][3:]))
            else:
                c.C(name, *e.nodes, float(v[0]))
        elif k == "E":
            c.VCVS(name, *e.nodes, voltage_gain=float(v[0]))
        elif k == "V":
            c.V(name, *e.nodes, float(v[1]))
        elif k == "I":
            c.I(name, *e.nodes, e.value)  # raw SPICE value: "DC 0.0 TRRANDOM(...)"
        elif k == "X":
            c.X(name, e.nodes[-1], *e.nodes[:-1])
    t1 = time.perf_counter()
    py_text = str(c)
    t2 = time.perf_counter()
    out.update(pyspice_build_s=t1 - t0, pyspice_text_s=t2 - t1, pyspice_mb=len(py_text) / 1e6)
    total_own = out["emitter_build_s"] + out["emitter_text_s"]
    total_py = out["pyspice_build_s"] + out["pyspice_text_s"]
    out["pyspice_over_emitter"] = total_py / total_own
    log(
        f"  PySpice Circuit, same elements:             create {out['pyspice_build_s']:.2f} s + "
        f"str() {out['pyspice_text_s']:.2f} s = {total_py:.2f} s  ({out['pyspice_over_emitter']:.1f}x the emitter; "
        f"{1e6 * total_py / len(elements):.1f} vs {1e6 * total_own / len(elements):.1f} us per element)"
    )
    return out


# -- output ----------------------------------------------------------------------------------------
CSV_FIELDS = [
    "topology",
    "n",
    "m",
    "noise",
    "components",
    "resistors",
    "equations",
    "netlist_mb",
    "t_run_tau",
    "measured_full",
    "build_s",
    "text_s",
    "ngspice_run_s",
    "parse_run_s",
    "overhead_s",
    "points_run",
    "iterations",
    "reorder_s",
    "ngspice_setup_s",
    "s_per_iteration",
    "load_ms",
    "factor_ms",
    "solve_ms",
    "iters_per_point",
    "points_full",
    "points_full_is_lower_bound",
    "ngspice_full_s",
    "parse_full_s",
    "total_full_s",
    "share_generation",
    "share_ngspice",
    "share_parsing",
    "s_per_component_full",
    "status",
]


def write_csv(path, cases: list[Case]):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for c in cases:
            d = {k: v for k, v in asdict(c).items() if k in CSV_FIELDS}
            tot = c.total_full_s
            d.update(
                share_generation=c.generation_s / tot if tot else "",
                share_ngspice=c.ngspice_full_s / tot if tot else "",
                share_parsing=c.parse_full_s / tot if tot else "",
                s_per_component_full=tot / c.components if tot and c.components else "",
            )
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in d.items()})


def write_rows(path, rows: list[dict]):
    if not rows:
        return
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot(path, cases: list[Case]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in cases if c.status == "ok"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    styles = {
        ("factored", True): ("C0", "-"),
        ("factored", False): ("C0", "--"),
        ("crossbar", True): ("C3", "-"),
        ("crossbar", False): ("C3", "--"),
    }
    for (topo, noise), (color, ls) in styles.items():
        for m, marker in ((16, "o"), (32, "s"), (64, "^")):
            sel = sorted(
                (c for c in ok if c.topology == topo and c.noise == noise and c.m == m), key=lambda c: c.components
            )
            if not sel:
                continue
            lab = f"{topo} m={m} noise {'on' if noise else 'off'}"
            x = [c.components for c in sel]
            axes[0].plot(x, [c.total_full_s for c in sel], ls, color=color, marker=marker, label=lab)
            if noise:
                axes[1].plot(x, [1e3 * c.s_per_iteration for c in sel], ls, color=color, marker=marker, label=lab)
                axes[2].plot(x, [c.reorder_s for c in sel], ls, color=color, marker=marker, label=lab)
    if ok:
        xs = np.array(sorted({c.components for c in ok}), float)
        ref = min(c.total_full_s for c in ok if c.components == xs[0])
        axes[0].plot(xs, ref * xs / xs[0], ":", color="gray", label="linear growth from the smallest case")
        it0 = min(1e3 * c.s_per_iteration for c in ok if c.components == xs[0])
        axes[1].plot(xs, it0 * xs / xs[0], ":", color="gray", label="linear growth")
    axes[0].axhline(TARGET[4], color="k", lw=0.8)
    tc = [c for c in ok if (c.topology, c.n, c.m, c.noise) == TARGET[:4]]
    if tc:
        axes[0].scatter(
            [tc[0].components],
            [TARGET[4]],
            marker="*",
            s=160,
            color="k",
            zorder=5,
            label="target: 5 s (factored N=1000, m=64, noise)",
        )
    axes[0].set_title("one solve, t = 50 tau (wall s; mostly extrapolated)")
    axes[1].set_title("ngspice cost per Newton iteration (ms)")
    axes[2].set_title("ngspice matrix reorder, once per solve (s)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("components in the netlist")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fits_text(cases: list[Case]) -> list[str]:
    lines = []
    for topo in ("factored", "crossbar"):
        for noise in (True, False):
            sel = [c for c in cases if c.status == "ok" and c.topology == topo and c.noise == noise]
            if len(sel) < 2:
                continue
            comps = [c.components for c in sel]
            parts = []
            for label, ys in (
                ("total t=50", [c.total_full_s for c in sel]),
                ("per iteration", [c.s_per_iteration for c in sel]),
                ("reorder", [c.reorder_s for c in sel]),
                ("generation", [c.generation_s for c in sel]),
            ):
                f = power_fit(comps, ys)
                if f:
                    parts.append(f"{label} ~ comps^{f[1]:.2f}")
            per = ", ".join(
                f"{1e6 * c.total_full_s / c.components:.0f}" for c in sorted(sel, key=lambda c: c.components)
            )
            lines.append(
                f"  {topo:8s} noise {'on ' if noise else 'off'}: "
                + "; ".join(parts)
                + f"   (us per component at t=50, by size: {per})"
            )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small subset (N = 100..400, m = 16) + validation")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--budget-s", type=float, default=None, help="seconds for the grid's ngspice runs")
    ap.add_argument("--case-cap-s", type=float, default=None, help="skip a case whose short run would exceed this")
    ap.add_argument("--no-target", action="store_true", help="skip the N=1000, m=64 target case")
    ap.add_argument("--no-options", action="store_true", help="skip the settings study")
    ap.add_argument("--no-pyspice", action="store_true", help="skip the PySpice comparison")
    args = ap.parse_args(argv)
    if shutil.which(os.environ.get("THERMOSPICE_NGSPICE") or "ngspice") is None:
        print("ngspice is not installed", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    budget = args.budget_s if args.budget_s is not None else (150.0 if args.quick else 420.0)
    cap = args.case_cap_s if args.case_cap_s is not None else (60.0 if args.quick else 150.0)

    def log(s=""):
        print(s, flush=True)

    wall0 = time.monotonic()
    design = Design()
    log(
        f"ngspice solve benchmark: t = {T_FULL:g} tau, Design defaults (dt_max {design.dt_max} tau, noise_dt "
        f"{design.noise_dt} tau), kappa0 {KAPPA0} when noise is on; measured on t_short = "
        f"{T_SHORT[True]} tau (noise) / {T_SHORT[False]} tau (no noise) and extrapolated (see --help)"
    )
    if args.quick:
        ns, ms = [100, 200, 400], [16]
    else:
        ns, ms = [100, 200, 500, 1000, 2000], [16, 64]
    cases = [
        Case(topo, n, m, noise) for n in ns for m in ms for topo in ("factored", "crossbar") for noise in (True, False)
    ]
    tgt = TARGET[:4]
    if not args.no_target and not any((c.topology, c.n, c.m, c.noise) == tgt for c in cases):
        cases.append(Case(*tgt))
    log("\n== grid (one short run per case) ==")
    target_first = [c for c in cases if (c.topology, c.n, c.m, c.noise) == tgt]
    rest = [c for c in cases if (c.topology, c.n, c.m, c.noise) != tgt]
    results = run_grid(rest, design, budget, cap, log)
    if target_first:
        log("  -- target case (always measured) --")
        c = target_first[0]
        try:
            measure(c, design, T_SHORT[True], timeout=900)
        except ThermospiceError as e:
            c.status = f"error: {str(e)[:120]}"
        log("  " + row_text(c))
        results.append(c)

    validation = []
    if args.quick:
        log("\n== validation of the extrapolation: predicted from the short run vs measured at full length ==")
        for topo, n, m, noise, t_val in (
            ("factored", 100, 16, False, T_FULL),
            ("crossbar", 100, 16, False, T_FULL),
            ("factored", 100, 16, True, 2.0),
        ):
            short = next(
                (c for c in results if (c.topology, c.n, c.m, c.noise) == (topo, n, m, noise) and c.status == "ok"),
                None,
            )
            full = measure(Case(topo, n, m, noise), design, t_val, timeout=300)
            if short is None:
                continue
            if t_val < T_FULL:  # re-extrapolate the short run to t_val instead of T_FULL
                pts_pred = short.points_run + (short.points_full - short.points_run) * (
                    (t_val - short.t_run_tau) / (T_FULL - short.t_run_tau)
                )
                pred = (
                    short.ngspice_run_s + (pts_pred - short.points_run) * short.iters_per_point * short.s_per_iteration
                )
            else:
                pred, pts_pred = short.ngspice_full_s, short.points_full
            validation.append(
                {
                    "topology": topo,
                    "n": n,
                    "m": m,
                    "noise": noise,
                    "t_tau": t_val,
                    "points_predicted": round(pts_pred),
                    "points_measured": full.points_run,
                    "ngspice_predicted_s": round(pred, 3),
                    "ngspice_measured_s": round(full.ngspice_run_s, 3),
                }
            )
            err = np.abs(full.extra["x_final"] - full.extra["x_solve"]).max() if not noise else float("nan")
            log(
                f"  {topo:8s} N={n} m={m} noise {'on ' if noise else 'off'} t={t_val:g}: points predicted "
                f"{pts_pred:.0f} measured {full.points_run}; ngspice predicted {pred:.2f} s measured "
                f"{full.ngspice_run_s:.2f} s" + (f"; |x - solve| = {err:.1e}" if not noise else "")
            )

    log("\n== growth with the number of components (power-law fits) ==")
    for line in fits_text(results):
        log(line)

    opt_rows = []
    if not args.no_options:
        log("\n== settings: time points and cost per point (factored N=200, m=16) ==")
        opt_rows = options_study(log)

    py = {}
    if not args.no_pyspice:
        log("\n== netlist generation: PySpice objects vs circuits.netlist (factored N=1000, m=64, noise) ==")
        py = pyspice_study(log)

    write_csv(os.path.join(args.out, "bench_ngspice.csv"), results)
    write_rows(os.path.join(args.out, "bench_ngspice_options.csv"), opt_rows)
    write_rows(os.path.join(args.out, "bench_ngspice_validation.csv"), validation)
    if py:
        write_rows(
            os.path.join(args.out, "bench_ngspice_pyspice.csv"),
            [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in py.items()}],
        )
    plot(os.path.join(args.out, "bench_ngspice.png"), results)

    log("\n== target: factored N=1000, m=64, t=50 tau, noise on, under 5 s on one core ==")
    tc = next((c for c in results if (c.topology, c.n, c.m, c.noise) == tgt), None)
    if tc is None or tc.status != "ok":
        log(f"  not measured ({tc.status if tc else 'skipped'})")
    else:
        verdict = "MET" if tc.total_full_s < TARGET[4] else f"MISSED by {tc.total_full_s / TARGET[4]:.0f}x"
        log(
            f"  predicted {tc.total_full_s:.0f} s per solve ({verdict}): {tc.points_full:.0f} time points x "
            f"{tc.iters_per_point:.2f} Newton iterations x {1e3 * tc.s_per_iteration:.1f} ms, plus reorder "
            f"{tc.reorder_s:.1f} s, generation {tc.generation_s:.2f} s, parsing {tc.parse_full_s:.2f} s"
        )
        log(
            f"  per iteration: load {tc.load_ms:.1f} ms, factor {tc.factor_ms:.1f} ms, solve {tc.solve_ms:.1f} ms; "
            f"{tc.equations} equations"
        )
    log(
        f"\nwrote {args.out}/bench_ngspice.csv, bench_ngspice.png and the study CSVs "
        f"in {time.monotonic() - wall0:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
