"""Where a `thermospice train --optimizer tngd --backend ou` step's wall time goes (digits CNN,
b = 64, one thread), against Adam's: digital (gradient + curvature), simulated device (handing the
factors to the SPU and its backend call), bookkeeping (the rest of the loop: update, checks, test
evaluation, metrics, checkpoints).

Run: python benchmarks/bench_tngd_step.py [--steps S] [--repeat R] [--out CSV]
     PYTHONPATH=/path/to/other/checkout python benchmarks/bench_tngd_step.py ...   (before/after)

Each (optimizer, repetition) trains S steps through training.loop.train in a child process
(glibc malloc tuned as `thermospice train` does, after a 2-step warm-up run) and reports the
process CPU time per step (cpu_ms: what the step costs, nearly independent of how many other jobs
share the cores) and the mean wall ms per step of each part (what a user waits, load included);
the step wall time is taken from consecutive wall_s values of metrics.csv, so checkouts older than
the bookkeeping_s column are measured the same way. Repetitions alternate between the optimizers,
so a change in the machine's load hits both; the table keeps the repetition with the lowest CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time


def child(optimizer: str, steps: int) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    try:
        from training.malloc import tune_glibc_malloc
    except ImportError:  # a checkout from before training/ was split (measuring "before")
        from training.curvature import tune_glibc_malloc
    from training.loop import TrainConfig, train

    tune_glibc_malloc()
    torch.set_num_threads(1)
    with threadpool_limits(1), tempfile.TemporaryDirectory() as out:
        train(TrainConfig(optimizer=optimizer, backend="ou", steps=2, eval_every=10))  # imports, data, caches
        cpu = time.process_time()
        train(TrainConfig(optimizer=optimizer, backend="ou", steps=steps, eval_every=10), out)
        cpu = (time.process_time() - cpu) / steps
        with open(os.path.join(out, "metrics.csv"), newline="") as fh:
            rows = list(csv.DictReader(fh))
    rows = rows[1:]  # the first step pays for lazy initialisation (imports, allocations)
    walls = [float(r["wall_s"]) for r in rows]
    steps_wall = [b - a for a, b in zip(walls, walls[1:])]
    n = len(steps_wall)
    digital = sum(float(r["digital_s"]) for r in rows[1:]) / n
    sim = sum(float(r["simulator_s"]) for r in rows[1:]) / n
    total = sum(steps_wall) / n
    return {
        "optimizer": optimizer,
        "cpu_ms": 1e3 * cpu,
        "step_ms": 1e3 * total,
        "digital_ms": 1e3 * digital,
        "simulator_ms": 1e3 * sim,
        "bookkeeping_ms": 1e3 * (total - digital - sim),
        "device_model_ms": 1e3 * sum(float(r["device_s"]) for r in rows[1:]) / n,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="CSV to write the table to")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return 0
    best: dict[str, dict] = {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for _ in range(args.repeat):
        for opt in ("tngd", "adam"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", opt, "--steps", str(args.steps)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if opt not in best or r["cpu_ms"] < best[opt]["cpu_ms"]:
                best[opt] = r
    cols = ["optimizer", "cpu_ms", "step_ms", "digital_ms", "simulator_ms", "bookkeeping_ms", "device_model_ms"]
    print(" ".join(f"{c:>15s}" for c in cols))
    for r in best.values():
        print(" ".join(f"{r[c]:>15.2f}" if c != "optimizer" else f"{r[c]:>15s}" for c in cols))
    print(
        f"TNGD / Adam per step: {best['tngd']['cpu_ms'] / best['adam']['cpu_ms']:.1f}x CPU time, "
        f"{best['tngd']['step_ms'] / best['adam']['step_ms']:.1f}x wall time"
    )
    if args.out:
        with open(args.out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(best.values())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
