"""The end-to-end demo: one TNGD circuit checked in ngspice, then training with TNGD against Adam.

Steps (each writes its files into the output folder as it goes):
1. a small TNGD system: the GGN of a tiny MLP on a digits minibatch -> crossbar circuit + netlist;
2. ngspice transient against the exact OU trajectory and the direct solve (PNG + CSV);
3. the component report (text + JSON);
4. the digits classifier trained with TNGD (ou backend) and with Adam, each at its tuned defaults, and
   which wins at equal steps and at equal estimated runtime (CSV + PNG, analysis/demo_verdict.py);
5. a few TNGD steps with ngspice in the loop beside the ou backend (CSV);
6. report.md tying it together.
"""

from __future__ import annotations

import csv
import json
import os
import time

import numpy as np

from circuits.design import Design
from circuits.report import format_report
from circuits.topologies import build
from spu.core.problems import GGNProblem
from spu.device import SPU

from .io import prepare_folder

SIZES = {
    # quick: for tests (~1 min); full: the README's main job (a few minutes on 2 cores)
    True: {
        "width": 3,
        "batch": 4,
        "train_steps": 20,
        "train_batch": 16,
        "loop_steps": 3,
        "model": "mlp",
        "train_width": 16,
        "train_seeds": 1,
    },
    # full: the batch size of `thermospice train` (64), at which its defaults were tuned
    # 3 seeds: one seed's minibatch losses at step 150 differ by 2-5x between seeds
    False: {
        "width": 3,
        "batch": 4,
        "train_steps": 150,
        "train_batch": 64,
        "loop_steps": 10,
        "model": "cnn",
        "train_width": 32,
        "train_seeds": 3,
    },
}


# dt_max = 0.1 tau: on the demo's crossbar ngspice's own step control keeps x(5 tau) within ~3e-5
# (relative) of the matrix exponential at a quarter of the time points of 0.02 (docs/BENCHMARKS.md).
DEMO_DESIGN = Design(dt_max=0.1)


def _log(msg: str) -> None:
    print(msg, flush=True)


def tngd_system(width: int, batch: int, lam: float = 0.1, seed: int = 0) -> GGNProblem:
    """The GGN system of a tiny MLP at initialisation on the first digits minibatch."""
    from training.curvature import jacobian_curvature
    from training.data import load_digits_split
    from training.models import build_model

    train_set, _ = load_digits_split(flatten=True)
    model = build_model("mlp", width=width, seed=seed)
    x, y = train_set.x[:batch], train_set.y[:batch]
    c = jacobian_curvature(model, x, y)
    return GGNProblem(c.J.double().numpy(), c.H.double().numpy(), lam, c.grad.double().numpy())


def validate_circuit(problem: GGNProblem, design: Design, out: str) -> dict:
    """ngspice against the exact OU trajectory and the direct solve; writes CSV and PNG."""
    lam_min = problem.eig_extremes()[0]
    t = float(np.ceil(np.log(1e7) / lam_min))
    times = np.linspace(0, t, 101)
    x0 = problem.b.copy()  # the device starts from the gradient, as in TNGD's first step
    # One batch run (a session would serve this single run only); its folder goes when it ends.
    ng = SPU("ngspice", topology="crossbar", design=design, engine="batch").run(problem, t=t, x0=x0, times=times)
    ou = SPU("ou").run(problem, t=t, x0=x0, times=times)
    x_star = SPU("direct").run(problem, t=0).x
    rel = float(np.linalg.norm(ng.x - x_star) / np.linalg.norm(x_star))
    traj_err = float(np.abs(ng.trajectory - ou.trajectory).max() / np.abs(ou.trajectory).max())
    # Show the three coordinates that move most. The first ones are weights on the digits' corner
    # pixels, which are always 0: their gradient is 0 and they stay at 0 (a flat, empty plot).
    idx = sorted(np.argsort(-np.abs(x_star - x0), kind="stable")[:3].tolist())
    with open(os.path.join(out, "circuit_trajectory.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_tau"] + [f"ngspice_x{i}" for i in idx] + [f"ou_x{i}" for i in idx])
        for k, tk in enumerate(times):
            w.writerow([tk, *ng.trajectory[k, idx], *ou.trajectory[k, idx]])
    from .demo_plots import plot_trajectory

    plot_trajectory(times, ng.trajectory, ou.trajectory, x_star, os.path.join(out, "circuit_trajectory.png"), idx=idx)
    netlist = os.path.join(out, "tngd_crossbar.cir")
    with open(netlist, "w") as f:
        f.write(build(problem, "crossbar", design, x0=x0, t=t).text())
    return {
        "t_tau": t,
        "steady_state_rel_error": rel,
        "trajectory_max_rel_error": traj_err,
        "ngspice_wall_s": ng.wall_time_s,
        "report": ng.report,
        "netlist": netlist,
    }


def train_pair(size: dict, out: str, progress: bool) -> dict:
    """TNGD and Adam, each at its tuned defaults (training.loop.DEFAULTS, from `reproduce tuning`),
    over size["train_seeds"] seeds (folders train_NAME for seed 0, train_NAME_seedS for the others);
    the verdict compares the means over seeds."""
    from training.loop import TrainConfig, train

    from .demo_verdict import verdict

    results, metrics = {}, {}
    for name in ("tngd", "adam"):
        metrics[name] = []
        for seed in range(size["train_seeds"]):
            folder = os.path.join(out, f"train_{name}" + (f"_seed{seed}" if seed else ""))
            cfg = TrainConfig(
                optimizer=name,
                model=size["model"],
                width=size["train_width"],
                seed=seed,
                steps=size["train_steps"],
                batch_size=size["train_batch"],
                eval_every=10,
            )
            r = train(cfg, folder, progress=progress, resume=False)
            metrics[name].append(os.path.join(folder, "metrics.csv"))
            if seed == 0:
                results[name] = r
            ms, c = r["per_step_ms"], r["config"]
            lam = f", lambda {c['damping']:g}" if c["damping"] is not None else ""
            _log(
                f"  {name:5s} (lr {c['lr']:g}{lam}) seed {seed}: train loss {r['final_train_loss']:.4f}, test "
                f"accuracy {r['final_test_accuracy']:.3f} after {r['steps']} steps ({r['wall_time_s']:.1f} s wall; "
                f"per step digital {ms['digital']:.1f} ms, simulated device {ms['simulator']:.1f} ms, "
                f"bookkeeping {ms['bookkeeping']:.1f} ms)"
            )
    v = verdict(metrics)
    s, t = v["steps"], v["runtime"]
    over = f"mean of {v['seeds']} seeds, " if v["seeds"] > 1 else ""
    _log(
        f"  at equal steps ({s['step']}; {over}loss averaged over the last {s['window']}): TNGD "
        f"{s['loss']['tngd']:.4f}, Adam {s['loss']['adam']:.4f}: {_name(s['winner'])} wins"
    )
    _log(
        f"  at equal estimated runtime ({t['time_s']:.3g} s): TNGD {t['loss']['tngd']:.4f} (step "
        f"{t['step']['tngd']}), Adam {t['loss']['adam']:.4f} (step {t['step']['adam']}): {_name(t['winner'])} wins"
    )
    from .demo_plots import plot_training_pair

    plot_training_pair({k: v[0] for k, v in metrics.items()}, os.path.join(out, "training.png"))
    results["verdict"] = v
    return results


def _name(key: str) -> str:
    return {"tngd": "TNGD", "adam": "Adam"}[key]


def ngspice_in_the_loop(size: dict, design: Design, out: str) -> list[dict]:
    """The same few TNGD steps with the ngspice crossbar and with the ou backend."""
    import torch

    from training.data import batches, load_digits_split
    from training.models import build_model
    from training.preconditioners import TNGD

    train_set, _ = load_digits_split(flatten=True)
    losses, estimates = {}, {}
    for backend, topology in (("ngspice", "crossbar"), ("ou", None)):
        model = build_model("mlp", width=size["width"], seed=0)
        spu = SPU(backend, topology=topology, design=design)
        pre = TNGD(model, damping=0.1, t=5.0, spu=spu)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        losses[backend], estimates[backend] = [], []
        for x, y in batches(train_set, size["batch"], seed=0):
            if len(losses[backend]) == size["loop_steps"]:
                break
            opt.zero_grad()
            losses[backend].append(pre.step(x, y).loss)
            estimates[backend].append(pre.estimate.copy())
            opt.step()
    # The losses agree to float32 precision; the natural-gradient estimates show the circuit's error.
    rows = [
        {
            "step": k + 1,
            "loss_ngspice": a,
            "loss_ou": b,
            "rel_diff": abs(a - b) / abs(b),
            "estimate_rel_diff": float(np.linalg.norm(ga - gb) / np.linalg.norm(gb)),
        }
        for k, (a, b, ga, gb) in enumerate(zip(losses["ngspice"], losses["ou"], estimates["ngspice"], estimates["ou"]))
    ]
    with open(os.path.join(out, "ngspice_in_the_loop.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def run_demo(out: str, quick: bool = False, progress: bool = True) -> str:
    size = SIZES[quick]
    prepare_folder(out, "the demo report")
    start = time.perf_counter()
    design = DEMO_DESIGN

    _log(f"[1/5] TNGD system: GGN of an MLP (width {size['width']}) on {size['batch']} digits")
    problem = tngd_system(size["width"], size["batch"])
    _log(f"      N = {problem.n} parameters, m = b*dz = {problem.m}, lambda = {problem.lam}")

    _log("[2/5] ngspice transient of the crossbar circuit against the exact OU solution")
    val = validate_circuit(problem, design, out)
    _log(
        f"      steady state vs direct solve: relative error {val['steady_state_rel_error']:.2e}; "
        f"trajectory vs exact OU: max relative error {val['trajectory_max_rel_error']:.2e}"
    )

    _log("[3/5] component report")
    report_text = format_report(val["report"])
    _log(report_text)
    with open(os.path.join(out, "component_report.json"), "w") as f:
        json.dump(val["report"], f, indent=2)

    _log(
        f"[4/5] training the digits classifier ({size['model']}): TNGD (ou backend) vs Adam, both at their "
        f"tuned defaults, {size['train_steps']} steps"
    )
    trained = train_pair(size, out, progress)

    _log(f"[5/5] {size['loop_steps']} TNGD steps with ngspice in the loop (crossbar) beside the ou backend")
    loop_rows = ngspice_in_the_loop(size, design, out)
    for r in loop_rows:
        _log(
            f"      step {r['step']}: loss ngspice {r['loss_ngspice']:.6f}, ou {r['loss_ou']:.6f} "
            f"(rel. diff {r['rel_diff']:.1e}); natural-gradient estimates differ by {r['estimate_rel_diff']:.1e}"
        )

    from .demo_report import write_report

    path = write_report(out, problem, val, report_text, trained, loop_rows, quick, time.perf_counter() - start)
    _log(f"report written to {path}")
    return path
