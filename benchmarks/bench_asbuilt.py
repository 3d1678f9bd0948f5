"""The asbuilt backend's targets (issue 9), measured beside the ou backend in the same run:

1. one asbuilt solve, factored N = 1e5, m = 64, t = 50 tau, noise on (kappa0 = 1e-3), for an
   ideal-component design (exact transition) and an erroneous one (8-bit R/DAC/ADC, 1 % R and C
   tolerance, op-amp gain 1e5: Strang splitting at 0.25 tau), with the realisation (component
   values from the builder) and the propagation timed apart;
2. one TNGD step of the digits CNN at b = 64 with asbuilt (8-bit design) against the same step
   with ou (median over steps after a warm-up).

Run: OMP_NUM_THREADS=1 python benchmarks/bench_asbuilt.py [--steps K] [--skip-train]
(glibc malloc tuned first, as the `thermospice` command does: training.malloc)
Writes benchmarks/results/bench_asbuilt.json; say `uptime` beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuits.design import Design, OpAmp  # noqa: E402
from spu.backends import asbuilt, ou  # noqa: E402
from spu.core.problems import FactoredProblem  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def solve_bench(n=100_000, m=64, t=50.0):
    rng = np.random.default_rng(0)
    p = FactoredProblem(rng.standard_normal((n, m)) / np.sqrt(m), 0.01, rng.standard_normal(n))
    out = {}
    t0 = time.perf_counter()
    ou.run(p, t=t, x0=np.zeros(n), kappa0=1e-3, seed=0, times=None, options={})
    out["ou_solve_s"] = time.perf_counter() - t0
    designs = {
        "ideal": Design(bits_r=16, r_max=1e9),
        "8bit_1pct_gain1e5": Design(bits_r=8, bits_dac=8, bits_adc=8, tol_r=0.01, tol_c=0.01, opamp=OpAmp(gain=1e5)),
    }
    for name, d in designs.items():
        t0 = time.perf_counter()
        rs, prop = asbuilt.transition(p, "factored", d, 1e-3)
        t1 = time.perf_counter()
        prop.advance(np.zeros(n), t, np.random.default_rng(0))
        t2 = time.perf_counter()
        out[name] = {
            "realise_and_prepare_s": t1 - t0,
            "propagate_s": t2 - t1,
            "total_s": t2 - t0,
            "exact": bool(prop.uniform),
        }
    return out


def train_bench(steps: int):
    from training.loop import TrainConfig, train

    res = {}
    for backend, design in (("ou", None), ("asbuilt", {"bits_r": 8, "bits_dac": 8, "bits_adc": 8, "r_max": 1e9})):
        cfg = TrainConfig(optimizer="tngd", backend=backend, steps=steps, eval_every=steps, design=design)
        out = f"/tmp/bench_asbuilt_{backend}_{os.getpid()}"
        train(cfg, out, resume=False)
        import csv

        with open(os.path.join(out, "metrics.csv")) as fh:
            wall = [float(r["wall_s"]) for r in csv.DictReader(fh)]
        per_step = np.diff(wall)[1:]  # first step pays the warm-up
        res[backend] = {"median_step_s": float(np.median(per_step)), "steps": steps}
    res["ratio_asbuilt_over_ou"] = res["asbuilt"]["median_step_s"] / res["ou"]["median_step_s"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    from training.malloc import tune_glibc_malloc

    tune_glibc_malloc()  # as the thermospice command does for every subcommand
    res = {"load": os.getloadavg(), "solve": solve_bench()}
    print(json.dumps(res["solve"], indent=1), flush=True)
    if not args.skip_train:
        res["tngd_step"] = train_bench(args.steps)
        print(json.dumps(res["tngd_step"], indent=1))
    res["load_after"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_asbuilt.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
