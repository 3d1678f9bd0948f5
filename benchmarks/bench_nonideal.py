"""Issue 17's speed target, measured side by side in one run: one TNGD step of the digits CNN
(b = 64) on asbuilt with the amplifier and converter errors on, against the same step on asbuilt
with the training design alone and on the ideal ou device (median wall time per step after a
warm-up step); the same with the host's gain stage and chopping (two runs per solve); and what
one solve costs where a slew limit is reached (the limited stepper's step count, from the
LimitError it raises before it starts).

Run: OMP_NUM_THREADS=1 python benchmarks/bench_nonideal.py [--steps K]
Writes benchmarks/results/bench_nonideal.json; say `uptime` beside the figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"

# The effects of issue 17 that keep the circuit linear, on at once: a general-purpose op-amp's
# offset, bias and 1/f noise, and 12-bit converters with offset, gain error and INL. The swing and
# slew are measured apart (LIMITED): where a limit is set, every solve first runs the linear path
# on its step grid under a check, and where one is reached it needs the limited stepper.
EVERY_EFFECT = {
    "bits_dac": 12,
    "bits_adc": 12,
    "opamp": {
        "offset": 1e-3,
        "bias": 1e-10,
        "noise_density": 18e-9,
        "flicker_corner": 100.0,
    },
    "dac": {"offset": 1e-3, "gain_error": 1e-3, "inl": 1.0},
    "adc": {"offset": 1e-3, "gain_error": 1e-3, "inl": 1.0},
}

LIMITED = {**EVERY_EFFECT, "opamp": {**EVERY_EFFECT["opamp"], "swing": 13.5, "slew": 13e6}}

CASES = {
    "ou": ("ou", None, {}),
    "asbuilt": ("asbuilt", None, {}),
    "asbuilt_every_effect": ("asbuilt", EVERY_EFFECT, {}),
    "asbuilt_every_effect_staged_chopped": ("asbuilt", EVERY_EFFECT, {"gain_stage": True, "chop": True}),
}


def slewing_solve_steps() -> str:
    """The limited stepper's own count for one solve of the design with the general-purpose part's
    swing and slew rate (max_steps = 1 makes it say the count and stop before it runs)."""
    from spu.core.errors import ThermospiceError
    from training.loop import TrainConfig, train

    cfg = TrainConfig(optimizer="tngd", backend="asbuilt", steps=2, eval_every=2, design=LIMITED, max_steps=1)
    out = tempfile.mkdtemp(prefix="bench_nonideal_")
    try:
        train(cfg, out, resume=False)
        return "no limit reached in 2 steps"
    except ThermospiceError as exc:
        return " ".join(str(exc).split())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def step_time(backend: str, design: dict | None, extra: dict, steps: int) -> dict:
    from training.loop import TrainConfig, train

    cfg = TrainConfig(optimizer="tngd", backend=backend, steps=steps, eval_every=steps, design=design, **extra)
    out = tempfile.mkdtemp(prefix="bench_nonideal_")
    try:
        train(cfg, out, resume=False)
        with open(os.path.join(out, "metrics.csv")) as fh:
            rows = list(csv.DictReader(fh))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    wall = [float(r["wall_s"]) for r in rows]
    per_step = np.diff(wall)[1:]  # the first step pays the warm-up
    sim = [float(r["simulator_s"]) for r in rows][2:]
    return {
        "median_step_s": float(np.median(per_step)),
        "median_simulator_s": float(np.median(sim)),
        "final_train_loss": float(rows[-1]["train_loss"]),
        "steps": steps,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    from training.malloc import tune_glibc_malloc

    tune_glibc_malloc()  # as the thermospice command does for every subcommand
    res = {"load": os.getloadavg()}
    for name, (backend, design, extra) in CASES.items():
        res[name] = step_time(backend, design, extra, args.steps)
        print(name, json.dumps(res[name]), flush=True)
    res["slewing_solve"] = slewing_solve_steps()
    print("slewing", res["slewing_solve"], flush=True)
    ou = res["ou"]["median_step_s"]
    res["ratio_asbuilt_over_ou"] = res["asbuilt"]["median_step_s"] / ou
    res["ratio_every_effect_over_ou"] = res["asbuilt_every_effect"]["median_step_s"] / ou
    res["ratio_staged_chopped_over_ou"] = res["asbuilt_every_effect_staged_chopped"]["median_step_s"] / ou
    res["load_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in res.items() if k.startswith("ratio")}, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_nonideal.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
