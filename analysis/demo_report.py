"""The demo's markdown report."""

from __future__ import annotations

import os


def write_report(out, problem, val, report_text, trained, loop_rows, quick, seconds) -> str:
    lines = [
        "# thermospice demo" + (" (quick)" if quick else ""),
        "",
        f"Total time {seconds:.0f} s.",
        "",
        *_circuit_section(problem, val),
        "## 2. Component report",
        "",
        "```",
        report_text,
        "```",
        "",
        *_training_section(trained),
        *_verdict_section(trained),
        *_loop_section(loop_rows),
    ]
    path = os.path.join(out, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _circuit_section(problem, val) -> list[str]:
    return [
        "## 1. A TNGD system on the crossbar circuit",
        "",
        f"The GGN system A = J^T H J + lambda I of an MLP on a digits minibatch: N = {problem.n}, "
        f"m = b*dz = {problem.m}, lambda = {problem.lam}. Netlist: `{os.path.basename(val['netlist'])}` "
        "(runs as it is in `ngspice -b`).",
        "",
        f"ngspice ran {val['t_tau']:.0f} tau in {val['ngspice_wall_s']:.2f} s. Steady state against the direct "
        f"solve: relative error **{val['steady_state_rel_error']:.2e}**; trajectory against the exact OU "
        f"solution: max relative error **{val['trajectory_max_rel_error']:.2e}**.",
        "",
        "![trajectory](circuit_trajectory.png)",
        "",
    ]


def _training_section(trained) -> list[str]:
    """TNGD and Adam at their tuned defaults: one table row each."""
    lines = [
        "## 3. Training: TNGD (exact OU backend) against Adam, tuned against tuned",
        "",
        "Both at their defaults, which come from `thermospice reproduce tuning` (docs/TRAINING.md gives "
        "the grid and the paper's values beside them).",
        "",
        "| optimizer (seed 0) | lr | damping | steps | final train loss | final test loss | test accuracy | wall s | "
        "estimated s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in (("TNGD", trained["tngd"]), ("Adam", trained["adam"])):
        c = r["config"]
        lam = f"{c['damping']:g}" if c["damping"] is not None else ""
        lines.append(
            f"| {name} | {c['lr']:g} | {lam} | {r['steps']} | {r['final_train_loss']:.4f} | "
            f"{r['final_test_loss']:.4f} | {r['final_test_accuracy']:.3f} | {r['wall_time_s']:.1f} | "
            f"{r['estimated_time_s']:.3g} |"
        )
    return lines


def _verdict_section(trained) -> list[str]:
    """Who wins per step and per estimated runtime, and where TNGD's wall time goes."""
    t = trained["tngd"]
    v = trained["verdict"]
    s, rt = v["steps"], v["runtime"]
    who = {"tngd": "TNGD", "adam": "Adam"}
    return [
        "",
        "Estimated time = digital part (measured) + modelled device time (spu.timing); for Adam it is the "
        "measured step time.",
        "",
        "| axis | compared at | TNGD | Adam | winner |",
        "| --- | --- | --- | --- | --- |",
        f"| steps | step {s['step']} (train loss, mean of the last {s['window']}, {v['seeds']} seed(s)) | "
        f"{s['loss']['tngd']:.4f} | "
        f"{s['loss']['adam']:.4f} | **{who[s['winner']]}** |",
        f"| estimated runtime | {rt['time_s']:.3g} s (TNGD step {rt['step']['tngd']}, Adam step "
        f"{rt['step']['adam']}) | {rt['loss']['tngd']:.4f} | {rt['loss']['adam']:.4f} | **{who[rt['winner']]}** |",
        "",
        "Where TNGD's wall time goes, per step: digital {:.1f} ms, simulating the device {:.1f} ms, "
        "bookkeeping {:.1f} ms (the modelled device itself: {:.3g} ms).".format(
            t["per_step_ms"]["digital"],
            t["per_step_ms"]["simulator"],
            t["per_step_ms"]["bookkeeping"],
            t["per_step_ms"]["device_model"],
        ),
        "",
        "![training](training.png)",
        "",
    ]


def _loop_section(loop_rows) -> list[str]:
    """The same TNGD steps with ngspice and with the exact OU backend, side by side."""
    worst = max(r["rel_diff"] for r in loop_rows)
    lines = [
        "## 4. ngspice in the loop",
        "",
        "The same TNGD steps with the crossbar circuit in ngspice and with the exact OU backend "
        f"(noise off): largest relative difference in the loss **{worst:.1e}**, in the natural-gradient "
        f"estimate g~ **{max(r['estimate_rel_diff'] for r in loop_rows):.1e}** (the circuit's integration "
        "error; the losses agree to float32 precision).",
        "",
        "| step | loss (ngspice) | loss (ou) | loss rel. diff | estimate rel. diff |",
        "| --- | --- | --- | --- | --- |",
    ]
    return lines + [
        f"| {r['step']} | {r['loss_ngspice']:.6f} | {r['loss_ou']:.6f} | {r['rel_diff']:.1e} | "
        f"{r['estimate_rel_diff']:.1e} |"
        for r in loop_rows
    ]
