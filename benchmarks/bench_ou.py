"""Wall time of one exact OU transition (with noise): low-rank path at N = 1e5, m = 64, and the
dense eigh path at N = 2000 for comparison.  Run: python benchmarks/bench_ou.py [--reps R]

"run" is a full ou.run call (decomposition + one transition); "step" reuses the decomposition,
which is what a trajectory or the TNGD loop with a fixed system pays per extra time point.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from spu.backends import direct, ou
from spu.core.problems import DenseProblem, FactoredProblem


def best(fn, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def factored(n, m, seed=0):
    rng = np.random.default_rng(seed)
    return FactoredProblem(rng.standard_normal((n, m)) / np.sqrt(m), 0.01, rng.standard_normal(n))


def bench(p, reps):
    x0 = np.zeros(p.n)
    # A fresh (shallow) copy per repetition: ou keeps the propagator of a problem it has seen.
    run = best(lambda: ou.run(copy.copy(p), t=1.0, x0=x0, kappa0=0.01, seed=0, times=None, options={}), reps)
    prop = ou.propagator(p)
    rng = np.random.default_rng(0)
    step = best(lambda: prop.step(x0, 1.0, 0.01, rng), reps)
    # Accuracy: the t = inf noiseless state must solve A x = b.
    x = ou.run(p, t=np.inf, x0=x0, kappa0=0.0, seed=0, times=None, options={}).x
    resid = np.linalg.norm(p.matvec(x) - p.b) / np.linalg.norm(p.b)
    return run, step, resid


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    reps = ap.parse_args().reps
    rows = []
    for n, m in ((100_000, 64), (2000, 64)):
        p = factored(n, m)
        rows.append((f"lowrank N={n} m={m}", *bench(p, reps)))
    pf = factored(2000, 64)
    pd = DenseProblem(pf.matrix(), pf.b)
    rows.append(("dense eigh N=2000", *bench(pd, reps)))
    t_direct = best(lambda: direct.solve(factored(100_000, 64), np.ones(100_000)), 1)
    print(f"{'path':<26}{'run [s]':>12}{'step [s]':>12}{'|Ax-b|/|b|':>14}")
    for name, run, step, resid in rows:
        print(f"{name:<26}{run:>12.4f}{step:>12.5f}{resid:>14.2e}")
    print(f"dense/lowrank run time at N=2000: {rows[2][1] / rows[1][1]:.0f}x")
    print(f"(direct Woodbury solve N=1e5 m=64 incl. problem build: {t_direct:.4f} s)")


if __name__ == "__main__":
    main()
