"""Per-iteration time of each optimizer's DIGITAL part on the digits CNN (N = 16 826), batch 64,
against Adam's. Writes benchmarks/results/bench_optimizers_<T>thread(s).csv and .png.

Run: python benchmarks/bench_optimizers.py [--reps R] [--threads T] [--quick] [--malloc tuned|default|both]
     (the figures in docs/TRAINING.md: --reps 30 --threads 1 --malloc both)

What is timed (one training step through the real preconditioner + torch optimizer, as in the loop):
  adam (torch)   model(x) -> cross_entropy -> backward -> Adam.step: the reference
  adam, sgd      the same through training.loop (Gradient preconditioner: functional_call forward)
  tngd           StepInfo.digital_s (gradient + U^T = S^T J_f by the 'layers' method) + SGD step.
                 NOT counted: handing U to the simulator (float64 copy, validation) and the OU
                 simulation itself; they stand for the device, whose time the loop models separately
                 (spu.timing, column device_ms).
  tngd mc K=k    the same with curvature="mc" (k sampled labels per example: U has b*k columns)
  tngd empirical the same with curvature="empirical" (U = per-example gradients / sqrt(b))
  tngd-adam      the same with Adam (beta1 = beta2 = 0)
  ngd-woodbury   gradient + U + the (m x m) float64 Cholesky + two products with U: all digital
  ngd-cg c=20    20 matrix-free GGN-vector products (our default), and c=200 (the paper's), digital
  ... mc K=1     the same method with the sampled-label Fisher (CG: products with its U, b columns)
  ngd            dense N x N GGN: refused at N = 16 826 (> NGD.MAX_N = 8000; 2.3 GB and O(N^3))
TNGD's digital part is split further (same child process, same batch):
  grad only      loss_and_grad (one backward pass)
  write U only   buf.copy_(src) of m x N floats: the memory traffic any U-producing method pays
  U+g            compute_curvature (fresh U^T each call) / into a reused out= buffer (TNGD reuses it)
  handoff        FactoredProblem(U^T as float64, lam, g): the copy + validation the simulator needs
                 (excluded above; the real device would get 16-bit values over its link)

Each optimizer runs in its own child process (a re-exec of this script) so that glibc's malloc
setting applies to it alone. --malloc tuned (default) runs the children with
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1GiB: glibc otherwise mmaps every tensor over 32 MB
(U^T here: 640 x 16 826 float32 = 43 MB) and returns it to the OS on free, so each step pays its
page faults again (DESIGN.md). Median and minimum over --reps steps after warm-up; the machine is
shared, so the minimum is the better estimate of the cost and the median of what a run sees.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_curvature  # noqa: E402  (shares the child-process runner and allocator settings)

PARTS = ("grad only", "write U only", "U+g fresh", "U+g out=", "handoff")
CASES = [
    "adam (torch)",
    "adam",
    "sgd",
    "tngd",
    "tngd mc K=1",
    "tngd mc K=4",
    "tngd empirical",
    "tngd-adam",
    "ngd-woodbury",
    "ngd-woodbury mc K=1",
    "ngd-cg c=20",
    "ngd-cg c=20 mc K=1",
    "ngd-cg c=200",
    "ngd",
]


def parse_case(case: str) -> tuple[str, int | None, str, int | None]:
    """'ngd-cg c=20 mc K=1' -> ('ngd-cg', 20, 'mc', 1): optimizer, CG iterations, curvature, K."""
    words = case.split()
    iters = next((int(w[2:]) for w in words if w.startswith("c=")), None)
    K = next((int(w[2:]) for w in words if w.startswith("K=")), None)
    curvature = next((w for w in words if w in ("mc", "empirical")), "ggn")
    return words[0], iters, curvature, K


def _stats(ts):
    ts = sorted(ts)
    return 1e3 * ts[len(ts) // 2], 1e3 * ts[0]


def run_case(case: str, reps: int, batch: int, threads: int) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(1)  # numpy only runs the (excluded) simulator; keep it off torch's cores
    from spu.core.problems import FactoredProblem
    from training.curvature import compute_curvature, loss_and_grad
    from training.data import batches, load_digits_split
    from training.loop import TrainConfig, build_optimizer
    from training.models import build_model, count_params
    from training.optimizers import OPTIMIZERS
    from training.preconditioners import NGD, TrainingError

    train, _ = load_digits_split()
    model = build_model("cnn", seed=0)
    N = count_params(model)
    stream = batches(train, batch, epochs=1000, seed=0)
    warm = max(3, reps // 10)
    out = {"case": case, "N": N, "batch": batch, "m": batch * 10, "reps": reps}

    if case == "ngd":
        try:
            NGD(model).step(*next(stream))
        except TrainingError as exc:
            out["note"] = str(exc)
        return out

    # The reference: a plain torch Adam step on its own copy of the model, timed right before every
    # measured step, so that both see the same load on this shared machine (x_adam_paired below).
    ref_model = build_model("cnn", seed=0)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)

    def adam_step(x, y):
        t0 = time.perf_counter()
        ref_opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(ref_model(x), y).backward()
        ref_opt.step()
        return time.perf_counter() - t0

    if case == "adam (torch)":
        ts = []
        for i in range(warm + reps):
            dt = adam_step(*next(stream))
            if i >= warm:
                ts.append(dt)
        out["median_ms"], out["min_ms"] = _stats(ts)
        out["adam_median_ms"], out["adam_min_ms"], out["x_adam_paired"] = out["median_ms"], out["min_ms"], 1.0
        return out

    name, iters, curvature, K = parse_case(case)
    cfg = TrainConfig(
        optimizer=name,
        model="cnn",
        batch_size=batch,
        cg_iters=iters,
        steps=1,
        curvature=curvature if OPTIMIZERS[name].needs_curvature else None,
        mc_samples=K,
    ).resolved()
    pre, opt = build_optimizer(cfg, model)
    if name == "ngd-cg" and iters >= 200:
        reps, warm = max(3, reps // 10), 1
        out["reps"] = reps
    digital, sim, device, ref = [], [], [], []
    for i in range(warm + reps):
        x, y = next(stream)
        ref_dt = adam_step(x, y)
        opt.zero_grad(set_to_none=True)
        info = pre.step(x, y)
        t1 = time.perf_counter()
        opt.step()
        upd = time.perf_counter() - t1
        if i >= warm:
            digital.append(info.digital_s + upd)
            ref.append(ref_dt)
            sim.append(info.simulator_s)
            device.append(info.device_s)
    out["median_ms"], out["min_ms"] = _stats(digital)
    out["adam_median_ms"], out["adam_min_ms"] = _stats(ref)
    ratios = sorted(d / r for d, r in zip(digital, ref))
    out["x_adam_paired"] = ratios[len(ratios) // 2]
    if name.startswith("tngd"):
        out["simulator_ms"] = _stats(sim)[0]
        out["device_ms"] = _stats(device)[0]
    if case == "tngd":
        # where TNGD's digital time goes, on the same kind of batches
        buf = torch.empty(batch * 10, N)
        src = torch.randn(batch * 10, N)  # the floor: copying m x N floats into the buffer
        parts = {
            "grad only": lambda x, y: loss_and_grad(model, x, y),
            "U+g fresh": lambda x, y: compute_curvature(model, x, y),
            "U+g out=": lambda x, y: compute_curvature(model, x, y, out=buf),
            "write U only": lambda x, y: buf.copy_(src),
            "handoff": None,
        }
        for part, fn in parts.items():
            ts, pr = [], []
            for i in range(warm + reps):
                x, y = next(stream)
                ref_dt = adam_step(x, y)
                if part == "handoff":
                    c = compute_curvature(model, x, y, out=buf)
                    t0 = time.perf_counter()
                    FactoredProblem(c.Ut.to(torch.float64, copy=True).numpy().T, 0.01, c.grad.double().numpy())
                else:
                    t0 = time.perf_counter()
                    fn(x, y)
                if i >= warm:
                    ts.append(time.perf_counter() - t0)
                    pr.append(ts[-1] / ref_dt)
            out[f"{part} median_ms"], out[f"{part} min_ms"] = _stats(ts)
            out[f"{part} x_adam_paired"] = sorted(pr)[len(pr) // 2]
    return out


def child(case, reps, batch, threads, tuned: bool) -> dict:
    return bench_curvature.child(case, reps, batch, threads, tuned, script=__file__)


def plot(rows_by_setting, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    width = 0.8 / len(rows_by_setting)
    for j, (label, rows) in enumerate(rows_by_setting.items()):
        rows = [r for r in rows if "median_ms" in r]
        xs = [i + j * width for i in range(len(rows))]
        ax.bar(xs, [r["x_adam_paired"] for r in rows], width, label=f"{label}: median paired ratio")
        ax.scatter(
            xs, [r["x_adam_min"] for r in rows], color="k", s=10, zorder=3, label="min / Adam min" if j == 0 else None
        )
        ax.set_xticks([i + width * (len(rows_by_setting) - 1) / 2 for i in range(len(rows))])
        ax.set_xticklabels([r["case"] for r in rows], rotation=30, ha="right")
    ax.axhline(1, color="gray", lw=0.8)
    ax.axhline(4, color="C3", lw=0.8, ls="--", label="4x Adam (target for TNGD)")
    ax.set_yscale("log")
    ax.set_ylabel("digital time per step / Adam step")
    ax.set_title(f"digits CNN, N = {rows[0]['N']}, batch {rows[0]['batch']} (ngd: N too large)")
    ax.legend(fontsize=8)
    ax = axes[1]
    label, rows = next(iter(rows_by_setting.items()))
    t = next(r for r in rows if r["case"] == "tngd")
    names = list(PARTS) + ["tngd step (digital)"]
    vals = [t[f"{p} x_adam_paired"] for p in PARTS] + [t["x_adam_paired"]]
    ax.barh(names, vals, color=["C0", "C5", "C1", "C1", "C7", "C2"])
    ax.axvline(1, color="gray", lw=0.8)
    ax.set_xlabel("time / Adam step (median paired ratio)")
    ax.set_title(f"where TNGD's time goes ({label}; handoff = simulator's, excluded)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on the 2 shared cores a 2-thread step stalls whenever "
        "another process takes a core; Adam itself went from 1.2 to 80 ms)",
    )
    ap.add_argument("--malloc", choices=["tuned", "default", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="10 reps, tuned malloc only")
    ap.add_argument(
        "--cases",
        default=None,
        help="comma-separated subset of: " + ", ".join(CASES) + " (adam (torch) and tngd always run)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.reps, args.batch, args.threads)))
        return
    if args.quick:
        args.reps, args.malloc = 10, "tuned"
    cases = bench_curvature.select_cases(args.cases, CASES, always=("adam (torch)", "tngd"))
    settings = {"tuned": [True], "default": [False], "both": [True, False]}[args.malloc]
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows_by_setting, csv_rows = {}, []
    for tuned in settings:
        label = "malloc tuned" if tuned else "glibc defaults"
        load0 = os.getloadavg()[0]
        rows = [child(c, args.reps, args.batch, args.threads, tuned) for c in cases]
        rows_by_setting[label] = rows
        print(
            f"\ndigits CNN N={rows[0]['N']}, batch {args.batch} (m={rows[0]['m']}), {args.threads} torch "
            f"threads, {label}; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}"
        )
        print(
            "x Adam: 'paired' = median over steps of (this step / the Adam step timed just before it);"
            " 'min' = min / Adam's min in the same process"
        )
        print("'x ref' = min / the min of the plain Adam step in its own process (first row)")
        print(
            f"{'optimizer':<15}{'median ms':>10}{'min ms':>9}{'Adam min':>9}{'x paired':>9}{'x min':>8}{'x ref':>7}"
            "   excluded: simulator ms / modelled device ms"
        )
        adam_ref = rows[0]["min_ms"]  # the plain torch Adam step, alone in its process
        for r in rows:
            if "median_ms" not in r:
                print(f"{r['case']:<15}  n/a: {r.get('note', '')}")
                csv_rows.append(
                    {
                        "malloc": label,
                        "optimizer": r["case"],
                        "N": r["N"],
                        "batch": r["batch"],
                        "note": r.get("note", ""),
                    }
                )
                continue
            r["x_adam_min"] = r["min_ms"] / r["adam_min_ms"]
            r["x_adam_ref"] = r["min_ms"] / adam_ref
            extra = f"   {r['simulator_ms']:.1f} / {r['device_ms']:.3f}" if "simulator_ms" in r else ""
            print(
                f"{r['case']:<15}{r['median_ms']:>10.2f}{r['min_ms']:>9.2f}{r['adam_min_ms']:>9.2f}"
                f"{r['x_adam_paired']:>9.2f}{r['x_adam_min']:>8.2f}{r['x_adam_ref']:>7.2f}{extra}"
            )
            csv_rows.append(
                {
                    "malloc": label,
                    "optimizer": r["case"],
                    "N": r["N"],
                    "batch": r["batch"],
                    "reps": r["reps"],
                    "median_ms": r["median_ms"],
                    "min_ms": r["min_ms"],
                    "adam_median_ms": r["adam_median_ms"],
                    "adam_min_ms": r["adam_min_ms"],
                    "x_adam_paired": r["x_adam_paired"],
                    "x_adam_min": r["x_adam_min"],
                    "x_adam_ref": r["x_adam_ref"],
                    "simulator_ms": r.get("simulator_ms", ""),
                    "device_ms": r.get("device_ms", ""),
                }
            )
        t = next(r for r in rows if r["case"] == "tngd")
        print("TNGD digital part, by piece:     median ms   min ms  x paired   x min   x ref")
        for part in PARTS:
            t[f"{part} x_adam_min"] = t[f"{part} min_ms"] / t["adam_min_ms"]
            t[f"{part} x_adam_ref"] = t[f"{part} min_ms"] / adam_ref
            print(
                f"  {part:<28}{t[f'{part} median_ms']:>10.2f}{t[f'{part} min_ms']:>9.2f}"
                f"{t[f'{part} x_adam_paired']:>10.2f}{t[f'{part} x_adam_min']:>8.2f}{t[f'{part} x_adam_ref']:>8.2f}"
            )
            csv_rows.append(
                {
                    "malloc": label,
                    "optimizer": f"tngd part: {part}",
                    "N": t["N"],
                    "batch": t["batch"],
                    "reps": t["reps"],
                    "median_ms": t[f"{part} median_ms"],
                    "min_ms": t[f"{part} min_ms"],
                    "adam_median_ms": t["adam_median_ms"],
                    "adam_min_ms": t["adam_min_ms"],
                    "x_adam_paired": t[f"{part} x_adam_paired"],
                    "x_adam_min": t[f"{part} x_adam_min"],
                    "x_adam_ref": t[f"{part} x_adam_ref"],
                }
            )
    stem = RESULTS / f"bench_optimizers_{args.threads}thread{'s' if args.threads > 1 else ''}"
    with open(f"{stem}.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in csv_rows for k in r))
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(csv_rows)
    plot(rows_by_setting, f"{stem}.png")
    print(f"\nwrote {stem}.csv and {stem}.png")


if __name__ == "__main__":
    main()
