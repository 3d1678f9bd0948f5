"""Fig. 2: runtime per iteration against N and against dz for Adam, NGD, NGD-CG, NGD-Woodbury and TNGD.

Model: flatten -> Linear(64, width) -> ReLU -> Linear(width, dz) on synthetic inputs x ~ N(0, 1) and
uniform random labels in dz classes (cross-entropy), a fresh batch each iteration. Sweep "N": dz fixed,
width varied (N = 65 width + width dz + dz). Sweep "dz": dz varied, width chosen so that N stays near
n_target. The batch size b is fixed; m = b dz.

What is timed, per iteration (one optimizer step on one batch, single-threaded by default):

* adam, ngd, ngd-cg, ngd-woodbury: the wall time of the preconditioner step (gradient, curvature,
  digital solve) plus the torch optimizer step. NGD forms the dense N x N GGN and uses Cholesky
  (only up to ngd_max_n: it is O(N^3)); NGD-CG runs cg_iters matrix-free GGN-vector products,
  warm-started from the previous solution (the paper's c = 200); NGD-Woodbury solves an m x m system.
* tngd: *estimated*, as in the paper: the measured digital part (gradient and U = J^T S, and the SGD
  step) plus the device time of spu.timing.TimingModel for the factored layout (2 N m resistors) at
  analog time t. The device itself is stood in for by the `direct` backend, whose wall time is not
  counted.

The learning rate is 0, so every iteration does the same work on the same parameters.
Each point: `warmup` untimed iterations, then timed ones until `budget_s` of wall time is spent
(at least 2, at most `reps`), so cheap methods get many repetitions and the dense solves few.
seconds_per_iter is the minimum over the timed iterations: on a shared machine a step is often
descheduled, and the minimum is the best estimate of the cost itself (the median has its own column).
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time

import numpy as np
import torch

from training.optimizers import OPTIMIZERS

from .io import REPRODUCE_CELLS, fmt, read_csv, write_csv

METHODS = ("adam", "ngd", "ngd-cg", "ngd-woodbury", "tngd")
N_IN = 64

FIG2_COLUMNS = (
    ("sweep", "N (dz fixed, width varied) or dz (N held near n_target)"),
    ("method", "adam, ngd, ngd-cg, ngd-woodbury or tngd"),
    ("N", "number of parameters"),
    ("dz", "network outputs (classes)"),
    ("width", "hidden width of the MLP"),
    ("batch", "batch size b"),
    ("m", "b * dz"),
    ("cg_iters", "CG iterations per step (ngd-cg)"),
    ("t_tau", "analog time per step for tngd's device time, in tau"),
    ("reps", "timed iterations"),
    ("seconds_per_iter", "min over the timed iterations, s (tngd: digital + device)"),
    ("seconds_median", "median over the timed iterations, s"),
    ("digital_s", "tngd: measured digital part of the fastest iteration, s (others: = seconds_per_iter)"),
    ("device_s", "tngd: modelled device time per iteration, s (others: 0)"),
    ("status", "ok, or skipped: why"),
)
KEY = ("sweep", "method", "N", "dz")


def n_params(width: int, dz: int) -> int:
    return N_IN * width + width + width * dz + dz


def width_for(n_target: int, dz: int) -> int:
    return max(1, round((n_target - dz) / (N_IN + 1 + dz)))


def points(size: dict) -> list[dict]:
    """The sweep points, in plotting order."""
    pts = []
    for w in size["widths"]:
        dz = size["dz_fixed"]
        pts.append({"sweep": "N", "dz": dz, "width": w, "N": n_params(w, dz)})
    for dz in size["dz_values"]:
        w = width_for(size["n_target"], dz)
        pts.append({"sweep": "dz", "dz": dz, "width": w, "N": n_params(w, dz)})
    return pts


def _model(width: int, dz: int, seed: int = 0):
    from training.models import MLP

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(width=width, depth=1, n_in=N_IN, n_out=dz)


def _batches(batch: int, dz: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    while True:
        yield torch.randn(batch, N_IN, generator=g), torch.randint(0, dz, (batch,), generator=g)


def time_method(method: str, pt: dict, size: dict) -> dict:
    """Time one method at one sweep point; returns the timing columns."""
    from spu.device import SPU
    from training.optimizers import make_optimizer

    model = _model(pt["width"], pt["dz"])
    spu = SPU("direct") if OPTIMIZERS[method].uses_spu else None
    pre, opt = make_optimizer(method, model, spu=spu, lr=0.0, damping=0.01, t=size["t"], cg_iters=size["cg_iters"])
    stream = _batches(size["batch"], pt["dz"])
    times, digital, device = [], [], []
    spent = 0.0
    for i in range(size["warmup"] + size["reps"]):
        x, y = next(stream)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        info = pre.step(x, y)
        opt.step()
        wall = time.perf_counter() - t0
        dig = wall - info.simulator_s  # the stand-in device's own wall time is not the device's cost
        if i >= size["warmup"]:
            times.append(dig + info.device_s)
            digital.append(dig)
            device.append(info.device_s)
            spent += wall
            if len(times) >= 2 and spent > size["budget_s"]:
                break  # (the loop itself stops at `reps`)
    k = int(np.argmin(times))
    return {
        "reps": len(times),
        "seconds_per_iter": float(times[k]),
        "seconds_median": float(np.median(times)),
        "digital_s": float(digital[k]),
        "device_s": float(device[k]),
        "status": "ok",
    }


def run_fig2(size: dict, out: str, csv_path: str, png_path: str, progress: bool):
    """Time every (point, method) not in fig2.csv yet; returns (computed, skipped, summary rows)."""
    names = [c for c, _ in FIG2_COLUMNS]
    done = {}
    if os.path.exists(csv_path):
        try:
            rows = read_csv(csv_path)
        except (OSError, csv.Error):
            rows = []
        for r in rows:
            if r.get("status"):  # a complete row (an interrupted write leaves the last cell empty)
                done[tuple(r[k] for k in KEY)] = r
    pts = points(size)
    todo = [(pt, m) for pt in pts for m in METHODS]
    computed = skipped = 0
    # Rewrite what is valid, then append each point as it finishes (resumable).
    write_csv(csv_path, names, list(done.values()), **REPRODUCE_CELLS)
    with open(csv_path, "a", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        for i, (pt, method) in enumerate(todo, 1):
            key = (pt["sweep"], method, str(pt["N"]), str(pt["dz"]))
            if key in done:
                skipped += 1
                continue
            variant = OPTIMIZERS[method]
            row = {
                **pt,
                "method": method,
                "batch": size["batch"],
                "m": size["batch"] * pt["dz"],
                "cg_iters": size["cg_iters"] if "cg_iters" in variant.reads else None,
                "t_tau": size["t"] if variant.uses_spu else None,
            }
            if variant.dense and pt["N"] > size["ngd_max_n"]:
                row.update(reps=0, status=f"skipped: N > ngd_max_n = {size['ngd_max_n']} (dense O(N^3))")
            else:
                row.update(time_method(method, pt, size))
            computed += 1
            cells = {c: fmt(row.get(c), **REPRODUCE_CELLS) for c in names}
            w.writerow([cells[c] for c in names])
            fh.flush()
            done[key] = cells
            sec = row.get("seconds_per_iter")
            if progress:
                print(
                    f"[fig2] {i}/{len(todo)} {pt['sweep']}-sweep N={pt['N']} dz={pt['dz']} {method}: "
                    + (f"{sec * 1e3:.2f} ms/iter" if sec is not None else row["status"]),
                    file=sys.stderr,
                    flush=True,
                )
    order = {(pt["sweep"], str(pt["N"]), str(pt["dz"])): i for i, pt in enumerate(pts)}
    rows = sorted(
        (r for r in done.values() if (r["sweep"], r["N"], r["dz"]) in order),
        key=lambda r: (order[(r["sweep"], r["N"], r["dz"])], METHODS.index(r["method"])),
    )
    write_csv(csv_path, names, rows, **REPRODUCE_CELLS)
    from .reproduce_plots import plot_fig2

    plot_fig2(rows, png_path)
    return computed, skipped, rows


def scaling_exponent(rows: list[dict], sweep: str, method: str) -> float:
    """Slope of log(seconds_per_iter) against log(x) (x = N or dz) over the timed points. Not
    called by the run itself: it is how the fitted exponents in docs/RESULTS.md are read off
    fig2.csv, and the test checks the paper's scaling claim with it."""
    xs, ys = [], []
    for r in rows:
        if r["sweep"] == sweep and r["method"] == method and r.get("seconds_per_iter"):
            xs.append(math.log(float(r[sweep])))
            ys.append(math.log(float(r["seconds_per_iter"])))
    if len(xs) < 2:
        return math.nan
    return float(np.polyfit(xs, ys, 1)[0])
