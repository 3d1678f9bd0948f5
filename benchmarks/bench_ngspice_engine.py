"""Today's ngspice defaults against the long-lived engine and table noise, side by side in ONE run.

    nice -n 10 python benchmarks/bench_ngspice_engine.py              # noise100, demo_step, layouts
    nice -n 10 python benchmarks/bench_ngspice_engine.py --cases noise100,demo_step,target1000

Cases (each runs the old and the new way through the public SPU API, same problem, same seed):

* noise100: factored N = 100, m = 16, t = 50 tau, kappa0 = 0.01 (the issue's 60 s case), full length;
  old = SPU(engine="batch", noise="held") (a fresh `ngspice -b` per solve, TRRANDOM sources),
  new = SPU() defaults (one ngspice session per SPU, noise from a table file, tmax = the hold).
* demo_step: the demo's ngspice-in-the-loop TNGD steps (analysis/demo.py: MLP width 3 on 4 digits,
  crossbar N = 235, m = 40, t = 5 tau, noise off), `--steps` steps each; old = batch engine with the
  demo's former design (dt_max = 0.02), new = session engine with analysis.demo.DEMO_DESIGN.
* layouts: ngspice's `acct` figures per Newton iteration (equations, non-zeros, fill-in, ms) of
  today's factored layout against a transconductor (VCCS) layout of the same matrix, a prototype
  built here only (signed gm per coefficient, no inverters, current-output DACs), N = 100 and 400.
* target1000: factored N = 1000, m = 64, noise on, new defaults only: a short run with ngspice's
  `acct` figures, extrapolated to t = 50 tau as benchmarks/bench_ngspice.py does (a full run takes
  hours here; the old path's prediction is in docs/BENCHMARKS.md).

Output: <out>/bench_ngspice_engine.csv (+ .png) and the table on stdout; `uptime` is printed
beside the figures because the machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ngspice import make_problem, parse_acct  # noqa: E402

from circuits.design import Design  # noqa: E402
from spu import SPU  # noqa: E402

OLD = {"engine": "batch", "noise": "held"}
NEW: dict = {}  # the defaults


def _load() -> str:
    return os.getloadavg().__repr__()


def case_noise100(log) -> list[dict]:
    p = make_problem("factored", 100, 16)
    rows = []
    for label, opts in (("old", OLD), ("new", NEW)):
        spu = SPU("ngspice", topology="factored", kappa0=0.01, seed=1, **opts)
        t0 = time.perf_counter()
        r = spu.run(p, t=50.0)
        wall = time.perf_counter() - t0
        spu.close()
        rows.append(
            {
                "case": "noise100",
                "path": label,
                "wall_s": wall,
                "ngspice_s": r.extra["ngspice_wall_s"],
                "points": r.extra["raw_points"],
                "noise": r.extra.get("noise", ""),
                "steps": 1,
            }
        )
        log(f"  noise100 {label}: {wall:7.2f} s wall, {r.extra['raw_points']} time points ({r.extra.get('noise')})")
    return rows


def case_demo_step(log, steps: int) -> list[dict]:
    import torch

    from analysis.demo import DEMO_DESIGN, SIZES
    from training.data import batches, load_digits_split
    from training.models import build_model
    from training.preconditioners import TNGD

    size = SIZES[True]
    train_set, _ = load_digits_split(flatten=True)
    rows = []
    for label, opts, design in (("old", {"engine": "batch"}, Design(dt_max=0.02)), ("new", NEW, DEMO_DESIGN)):
        model = build_model("mlp", width=size["width"], seed=0)
        spu = SPU("ngspice", topology="crossbar", design=design, **opts)
        pre = TNGD(model, damping=0.1, t=5.0, spu=spu)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        times, sims, losses = [], [], []
        for k, (x, y) in enumerate(batches(train_set, size["batch"], seed=0)):
            if k == steps:
                break
            opt.zero_grad()
            t0 = time.perf_counter()
            info = pre.step(x, y)
            times.append(time.perf_counter() - t0)
            sims.append(info.simulator_s)
            losses.append(info.loss)
            opt.step()
        spu.close()
        rows.append(
            {
                "case": "demo_step",
                "path": label,
                "wall_s": float(np.mean(times)),
                "ngspice_s": float(np.mean(sims)),
                "points": "",
                "noise": "off",
                "steps": steps,
                "first_step_s": times[0],
                "losses": " ".join(f"{v:.6f}" for v in losses),
            }
        )
        log(
            f"  demo_step {label}: {np.mean(times):.3f} s per TNGD step (first {times[0]:.3f} s, "
            f"simulator {np.mean(sims):.3f} s); losses {rows[-1]['losses']}"
        )
    return rows


def vccs_netlist(p, t: float, design: Design) -> str:
    """Factored A = lam I + U U^T with transconductor arrays: y = -(U^T x)*s^2 from G elements of
    gm = U_jk/(s R0) into summers, cells fed back by G elements reading y; no inverter anywhere."""
    from circuits.netlist import Netlist

    R0, n, m = design.R0, p.n, p.m
    su = float(np.abs(p.U).max())
    nl = Netlist(f"vccs factored n={n} m={m}")
    for i in range(n):
        nl.C(f"{i}", f"s{i}", f"x{i}", design.C, ic=0.0)
        nl.E(f"c{i}", f"x{i}", "0", "0", f"s{i}", 1e9)
        nl.R(f"l{i}", f"x{i}", f"s{i}", R0 / p.lam)
        nl.I(f"b{i}", f"s{i}", "0", float(p.b[i]) / R0)  # the integrator inverts: +b
    for k in range(m):
        nl.R(f"fy{k}", f"sy{k}", f"y{k}", R0 * su * su)
        nl.E(f"y{k}", f"y{k}", "0", "0", f"sy{k}", 1e9)
    for j, k in zip(*np.nonzero(p.U)):
        a = float(p.U[j, k]) / su
        nl.G(f"Ut_{k}_{j}", "0", f"sy{k}", f"x{j}", "0", a / R0)  # a V(x_j)/R0 into sy_k
        nl.G(f"U_{j}_{k}", "0", f"s{j}", f"y{k}", "0", -a / R0)  # V(y) = -U^T x
    nl.option("acct", 1)
    nl.option("reltol", 1e-3)
    nl.option("abstol", 1e-15)
    nl.option("vntol", 1e-9)
    xs = [f"x{i}" for i in range(n)]
    nl.save(xs)
    nl.print_tran(xs[:1])
    nl.transient(t * design.tau / 200, t * design.tau, design.dt_max * design.tau)
    return nl.text()


def case_layouts(log) -> list[dict]:
    import re

    from circuits.topologies import build
    from spu.ngspice.run import run_ngspice

    design, rows = Design(), []
    for n, m, t in ((100, 16, 14.0), (400, 16, 1.0)):
        p = make_problem("factored", n, m)
        w, V = np.linalg.eigh(p.matrix())
        x_star = np.linalg.solve(p.matrix(), p.b)
        x_t = x_star - V @ (np.exp(-w * t) * (V.T @ x_star))
        today = build(p, "factored", design, t=t).text().replace(".options ", ".options acct ", 1)
        for label, text in (("today", today), ("vccs", vccs_netlist(p, t, design))):
            r = run_ngspice(text)
            a = parse_acct(r.stdout)
            it = max(a["iterations"], 1)
            nz = int(re.search(r"original non-zeroes\s*=\s*(\d+)", r.stdout).group(1))
            fill = int(re.search(r"fill-in non-zeroes\s*=\s*(\d+)", r.stdout).group(1))
            x = np.array([r.raw[f"x{i}"][-1] for i in range(n)])
            err = float(np.linalg.norm(x - x_t) / np.linalg.norm(x_t))
            ms = 1e3 * (a["analysis_s"] - a["reorder_s"]) / it
            rows.append(
                {
                    "case": f"layout N={n} m={m}",
                    "path": label,
                    "wall_s": r.wall_time_s,
                    "ngspice_s": r.wall_time_s,
                    "points": int(a["accepted"]),
                    "noise": "off",
                    "steps": 1,
                    "equations": int(a["equations"]),
                    "nonzeros": nz,
                    "fill": fill,
                    "ms_per_iteration": ms,
                    "rel_error": err,
                }
            )
            log(
                f"  layout N={n} m={m} {label:5s}: {int(a['equations'])} equations, {nz} non-zeros + {fill} fill, "
                f"{ms:.3f} ms per iteration (factor {1e3 * a['factor_s'] / it:.3f}), x(t) error {err:.1e}"
            )
    return rows


def case_target1000(log, t_short: float) -> list[dict]:
    """Short run through the new netlist path with acct, extrapolated to 50 tau by points.

    The short run's table is small; at the full 50 tau it would need ~1e8 values and build() would
    fall back to held noise, so the figure is what a table (written in pieces) would give."""
    from circuits.topologies import build
    from spu.ngspice.session import NgspiceSession

    p = make_problem("factored", 1000, 64)
    design = Design()
    c = build(p, "factored", design, kappa0=0.01, t=t_short, seed=1)
    text = c.text().replace(".options ", ".options acct ", 1)
    with NgspiceSession(timeout=3600) as ng:
        t0 = time.perf_counter()
        ng.load(text, files=c.files())
        run = ng.tran(*c.tran_args())
        wall = time.perf_counter() - t0
        acct = parse_acct(ng.rusage())
    hold = c.record.noise_hold_tau
    it = max(acct["iterations"], 1)
    per_it = (acct["analysis_s"] - acct["reorder_s"]) / it
    pts_per_hold = run.raw.npoints / (t_short / hold)
    points_50 = pts_per_hold * 50.0 / hold
    predicted = acct["reorder_s"] + points_50 * (it / run.raw.npoints) * per_it
    log(
        f"  target1000 new: short run {t_short} tau in {wall:.1f} s: noise {c.noise_mode}, hold {hold:.3g} tau, "
        f"{pts_per_hold:.2f} points per hold, {it / run.raw.npoints:.2f} iterations per point, "
        f"{1e3 * per_it:.1f} ms per iteration (load {1e3 * acct['load_s'] / it:.1f}, factor "
        f"{1e3 * acct['factor_s'] / it:.1f}, solve {1e3 * acct['solve_s'] / it:.1f}), reorder {acct['reorder_s']:.1f} s, "
        f"{acct['equations']:.0f} equations; predicted t = 50 tau: {points_50:.0f} points, {predicted:.0f} s"
    )
    return [
        {
            "case": "target1000",
            "path": "new (predicted)",
            "wall_s": predicted,
            "ngspice_s": predicted,
            "points": int(points_50),
            "noise": c.noise_mode,
            "steps": 1,
        }
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="noise100,demo_step,layouts")
    ap.add_argument("--steps", type=int, default=3, help="TNGD steps per path in demo_step")
    ap.add_argument("--t-short", type=float, default=0.02, help="tau of the target1000 short run")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    log(f"load average before: {_load()}")
    rows: list[dict] = []
    for case in args.cases.split(","):
        if case == "noise100":
            rows += case_noise100(log)
        elif case == "demo_step":
            rows += case_demo_step(log, args.steps)
        elif case == "layouts":
            rows += case_layouts(log)
        elif case == "target1000":
            rows += case_target1000(log, args.t_short)
        else:
            raise SystemExit(f"unknown case {case!r}")
    log(f"load average after: {_load()}")
    for case in dict.fromkeys(r["case"] for r in rows):
        old = [r for r in rows if r["case"] == case and r["path"] == "old"]
        new = [r for r in rows if r["case"] == case and r["path"] == "new"]
        if old and new:
            log(
                f"  {case}: new is {old[0]['wall_s'] / new[0]['wall_s']:.1f}x faster "
                f"({old[0]['wall_s']:.2f} s -> {new[0]['wall_s']:.2f} s)"
            )
    path = os.path.join(args.out, "bench_ngspice_engine.csv")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    _plot(rows, os.path.join(args.out, "bench_ngspice_engine.png"))
    log(f"wrote {path}")
    return 0


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [c for c in dict.fromkeys(r["case"] for r in rows)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k, case in enumerate(cases):
        for j, label in enumerate(("old", "new")):
            alias = {"old": "today", "new": "vccs"}[label]  # the layout study's two paths
            r = next((r for r in rows if r["case"] == case and r["path"].startswith((label, alias))), None)
            if r is not None:
                ax.bar(
                    k + 0.4 * j,
                    r["wall_s"],
                    width=0.38,
                    color=("tab:gray", "tab:blue")[j],
                    label=label if k == 0 else None,
                )
    ax.set_xticks([k + 0.2 for k in range(len(cases))], cases)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per solve / TNGD step")
    ax.legend()
    ax.set_title("ngspice: today's defaults (old) vs session + table noise (new)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
