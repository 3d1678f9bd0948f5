"""Fig. 5: LoRA fine-tuning of a small transformer for extractive QA with Adam, TNGD and TNGD-Adam.

The paper fine-tunes DistilBERT with LoRA (r = 2, alpha = 32, ~75k parameters) on SQuAD; here the
packaged MiniLM-L6 with the same adapters (19 202 parameters, training/lm_model.py) on the
generated component-facts QA set (training/lm_data.py), because nothing can be downloaded.

Curves (panel a: the paper's Fig. 5a, panel b: its Fig. 5b), lambda = 1 throughout:

* a: Adam (betas 0.9, 0.999), TNGD (t = t_a, SGD update), TNGD-Adam (t = t_a, Adam with betas (0, 0));
* b: TNGD-Adam for t in t_values (paper: 0.1, 0.2, 0.4 tau). The t_a run is shared with panel a.

Each (curve, seed) is one run of training.lm_train.train_run in ``OUT/runs/<name>`` (metrics.csv,
checkpoint.pt, final.json): resumable per step checkpoint, finished runs reused. fig5.csv has one row
per curve and step (mean and std over seeds of the minibatch training loss; the held-out loss, exact
match and F1 at evaluation steps), fig5_summary.csv one row per curve, fig5.png both panels.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .io import REPRODUCE_CELLS, read_csv, write_csv

FIG5_COLUMNS = (
    ("panel", "a (Adam, TNGD, TNGD-Adam) or b (TNGD-Adam over t)"),
    ("label", "the curve's legend entry"),
    ("optimizer", "adam, tngd or tngd-adam"),
    ("t_tau", "analog time per step in tau (empty for Adam)"),
    ("lr", "learning rate"),
    ("seeds", "number of seeds averaged"),
    ("step", "iteration, 1-based"),
    ("train_loss_mean", "minibatch training loss (mean of the start and end cross-entropies), mean over seeds"),
    ("train_loss_std", "its standard deviation over seeds"),
    ("heldout_loss_mean", "held-out span loss after this step (evaluation steps only), mean over seeds"),
    ("heldout_loss_std", "its standard deviation over seeds"),
    ("heldout_em_mean", "held-out exact match (fraction), mean over seeds"),
    ("heldout_em_std", "its standard deviation over seeds"),
    ("heldout_f1_mean", "held-out token F1 (fraction), mean over seeds"),
    ("heldout_f1_std", "its standard deviation over seeds"),
    ("digital_s_mean", "wall time of the step's gradient/curvature on this machine, s, mean over seeds"),
)
FIG5_SUMMARY_COLUMNS = (
    ("panel", "as in fig5.csv"),
    ("label", "the curve's legend entry"),
    ("optimizer", "adam, tngd or tngd-adam"),
    ("t_tau", "analog time per step in tau"),
    ("lr", "learning rate"),
    ("seeds", "number of seeds"),
    ("steps", "iterations per run"),
    ("final_train_loss_mean", "training loss averaged over the last 25 % of the steps, mean over seeds"),
    ("final_train_loss_std", "its standard deviation over seeds"),
    ("final_heldout_loss_mean", "held-out loss after the last step, mean over seeds"),
    ("final_heldout_em_mean", "held-out exact match after the last step, mean over seeds"),
    ("final_heldout_f1_mean", "held-out F1 after the last step, mean over seeds"),
    ("final_heldout_f1_std", "its standard deviation over seeds"),
    ("digital_s_per_step", "mean wall time per step of the digital part (gradient, and U for TNGD), s"),
)
METRICS = ("train_loss", "heldout_loss", "heldout_em", "heldout_f1", "digital_s")


def curves(size: dict) -> list[dict]:
    """Every curve with its panel; the TNGD-Adam run at t_a appears in both panels."""
    g = lambda t: f"{t:g}"  # noqa: E731
    a = [
        {"panel": "a", "label": "Adam", "optimizer": "adam", "t": None, "lr": size["lr_adam"]},
        {
            "panel": "a",
            "label": f"TNGD (t = {g(size['t_a'])} tau)",
            "optimizer": "tngd",
            "t": size["t_a"],
            "lr": size["lr_tngd"],
        },
        {
            "panel": "a",
            "label": f"TNGD-Adam (t = {g(size['t_a'])} tau)",
            "optimizer": "tngd-adam",
            "t": size["t_a"],
            "lr": size["lr_tngd_adam"],
        },
    ]
    b = [
        {
            "panel": "b",
            "label": f"TNGD-Adam t = {g(t)} tau",
            "optimizer": "tngd-adam",
            "t": float(t),
            "lr": size["lr_tngd_adam"],
        }
        for t in size["t_values"]
    ]
    return a + b


def run_name(curve: dict, seed: int) -> str:
    t = "" if curve["t"] is None else f"-t{curve['t']:g}"
    return f"{curve['optimizer']}{t}-lr{curve['lr']:g}-seed{seed}"


def _stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        n = np.sum(np.isfinite(a), 0)
        mean = np.where(n > 0, np.nansum(a, 0) / np.maximum(n, 1), np.nan)
        dev = np.where(np.isfinite(a), a - mean, 0.0)
        std = np.where(n >= 2, np.sqrt((dev**2).sum(0) / np.maximum(n - 1, 1)), np.where(n == 1, 0.0, np.nan))
    return mean, std


def _load(run_dir: str, steps: int) -> dict[str, np.ndarray]:
    out = {m: np.full(steps, np.nan) for m in METRICS}
    for r in read_csv(os.path.join(run_dir, "metrics.csv")):
        k = int(r["step"]) - 1
        if 0 <= k < steps:
            for m in METRICS:
                if r.get(m) not in ("", None):
                    out[m][k] = float(r[m])
    return out


def run_fig5(size: dict, out: str, csv_path: str, png_path: str, log):
    """Train every (curve, seed) not finished yet, then write fig5.csv, fig5_summary.csv, fig5.png.
    size: checked by analysis.reproduce; log: a callable taking one progress line.
    Returns (computed, skipped, summary rows, summary path)."""
    from training.lm_data import splits
    from training.lm_model import load_encoder, load_tokenizer
    from training.lm_train import LMRunConfig, finished, train_run

    tokenizer = load_tokenizer()
    encoder = load_encoder()
    train, heldout = splits(tokenizer, size["n_train"], size["n_heldout"], size["seq_len"], seed=0, facts=size["facts"])
    runs: dict[str, LMRunConfig] = {}
    # Seed-major order: an interrupted full run has every curve for its first seeds.
    for seed in range(size["seeds"]):
        for c in curves(size):
            runs[run_name(c, seed)] = LMRunConfig(
                c["optimizer"],
                size["steps"],
                size["batch"],
                seed,
                float(c["lr"]),
                t=float(c["t"] or 0.0),
                damping=float(size["damping"]),
                eval_every=size["eval_every"],
                checkpoint_every=max(1, min(10, size["eval_every"])),
            )
    computed = skipped = 0
    for i, (name, cfg) in enumerate(runs.items(), 1):
        run_dir = os.path.join(out, "runs", name)
        if finished(run_dir, cfg):
            skipped += 1
            continue
        log(f"[fig5] run {i}/{len(runs)} {name}")
        train_run(
            cfg, encoder, tokenizer, train, heldout, run_dir, log=(lambda m, name=name: log(f"[fig5]   {name} {m}"))
        )
        computed += 1
    rows, summary = _tables(size, out)
    write_csv(csv_path, [c for c, _ in FIG5_COLUMNS], rows, **REPRODUCE_CELLS)
    summary_path = os.path.join(out, "fig5_summary.csv")
    write_csv(summary_path, [c for c, _ in FIG5_SUMMARY_COLUMNS], summary, **REPRODUCE_CELLS)
    from .reproduce_fig5_plots import plot_fig5

    plot_fig5(rows, summary, png_path)
    return computed, skipped, summary, summary_path


def _tables(size: dict, out: str) -> tuple[list[dict], list[dict]]:
    """(per-step rows, per-curve summary) over the seeds of every curve's finished runs."""
    rows, summary = [], []
    for c in curves(size):
        per = [_load(os.path.join(out, "runs", run_name(c, s)), size["steps"]) for s in range(size["seeds"])]
        stats = {m: _stats(np.stack([p[m] for p in per])) for m in METRICS}
        base = {
            "panel": c["panel"],
            "label": c["label"],
            "optimizer": c["optimizer"],
            "t_tau": c["t"],
            "lr": c["lr"],
            "seeds": size["seeds"],
        }
        for k in range(size["steps"]):
            row = {**base, "step": k + 1}
            for m in METRICS:
                if m == "digital_s":
                    row["digital_s_mean"] = float(stats[m][0][k])
                else:
                    row[f"{m}_mean"], row[f"{m}_std"] = float(stats[m][0][k]), float(stats[m][1][k])
            rows.append(row)
        tail = max(1, size["steps"] // 4)
        final_train = np.array([np.nanmean(p["train_loss"][-tail:]) for p in per])
        f_mean, f_std = _stats(final_train[:, None])
        last = {m: _stats(np.array([[p[m][-1]] for p in per])) for m in ("heldout_loss", "heldout_em", "heldout_f1")}
        summary.append(
            {
                **base,
                "steps": size["steps"],
                "final_train_loss_mean": float(f_mean[0]),
                "final_train_loss_std": float(f_std[0]),
                "final_heldout_loss_mean": float(last["heldout_loss"][0][0]),
                "final_heldout_em_mean": float(last["heldout_em"][0][0]),
                "final_heldout_f1_mean": float(last["heldout_f1"][0][0]),
                "final_heldout_f1_std": float(last["heldout_f1"][1][0]),
                "digital_s_per_step": float(np.nanmean([np.nanmean(p["digital_s"]) for p in per])),
            }
        )
    return rows, summary


def ordering(summary: list[dict]) -> dict:
    """Whether the paper's orderings hold in the final training losses: TNGD-Adam < Adam < TNGD
    (panel a) and TNGD-Adam's loss falling as t grows (panel b). Not called by the run itself: it
    reads a finished summary (the test, and whoever checks the paper's claims against a run)."""
    a = {s["optimizer"]: s["final_train_loss_mean"] for s in summary if s["panel"] == "a"}
    b = sorted((s["t_tau"], s["final_train_loss_mean"]) for s in summary if s["panel"] == "b")
    panel_a = a.get("tngd-adam", math.nan) < a.get("adam", math.nan) < a.get("tngd", math.nan)
    panel_b = all(l2 < l1 for (_, l1), (_, l2) in zip(b, b[1:]))
    return {"tngd_adam_lt_adam_lt_tngd": bool(panel_a), "better_with_larger_t": bool(panel_b)}
