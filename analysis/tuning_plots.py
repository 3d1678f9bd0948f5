"""PNG figures of `thermospice reproduce tuning` (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"sgd": ("SGD", "C2"), "adam": ("Adam", "C7"), "tngd": ("TNGD", "C0"), "tngd-adam": ("TNGD-Adam", "C1")}


def _label(c: dict) -> str:
    name = STYLE[c["method"]][0]
    lam = f", lambda {c['damping']:g}" if c.get("damping") is not None else ""
    return f"{name} (lr {c['lr']:g}{lam})"


def _finite(points):
    return sorted((x, y) for x, y in points if math.isfinite(x) and math.isfinite(y))


def plot_grid(configs: list[dict], path: str) -> None:
    """Per model: final train loss and test accuracy against lr (stage 1), and final train loss
    against lambda at the best stage-1 lr (natural-gradient methods)."""
    models = sorted({c["model"] for c in configs})
    fig, axes = plt.subplots(len(models), 3, figsize=(15, 4 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        for method, (name, color) in STYLE.items():
            mine = [c for c in configs if c["model"] == model and c["method"] == method]
            first = [c for c in mine if c["stage"] == 1]
            for ax, col in ((row[0], "final_train_loss_mean"), (row[1], "final_test_accuracy_mean")):
                pts = _finite((c["lr"], c[col]) for c in first)
                if pts:
                    ax.plot(*zip(*pts), "o-", color=color, ms=4, label=name)
                gone = [c["lr"] for c in first if c["diverged"]]
                if gone and col == "final_train_loss_mean":
                    ax.plot(gone, [ax.get_ylim()[1]] * len(gone), "x", color=color, ms=7)
            second = [c for c in mine if c["stage"] == 2]
            if second:
                lr = second[0]["lr"]
                pts = _finite((c["damping"], c["final_train_loss_mean"]) for c in mine if c["lr"] == lr)
                if pts:
                    row[2].plot(*zip(*pts), "o-", color=color, ms=4, label=f"{name} (lr {lr:g})")
        row[0].set_ylabel(f"{model}: final train loss")
        row[1].set_ylabel(f"{model}: final test accuracy")
        row[2].set_ylabel(f"{model}: final train loss")
        for ax, xlabel in zip(row, ("learning rate", "learning rate", "damping lambda (at the best lr)")):
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
        row[0].set_yscale("log")
        row[2].set_yscale("log")
    fig.suptitle(
        "Tuning grid: mean over seeds, equal step budgets (x: a seed diverged; natural-gradient "
        "methods at lambda = 0.01 in the lr panels)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_best(curves: list[dict], best: list[dict], path: str) -> None:
    """Per model: the best configuration of each method, training loss against step and against
    the estimated runtime."""
    models = sorted({c["model"] for c in best})
    fig, axes = plt.subplots(max(1, len(models)), 2, figsize=(11, 4 * max(1, len(models))), squeeze=False)
    for row, model in zip(axes, models):
        for c in (c for c in best if c["model"] == model):
            rs = [r for r in curves if r["model"] == model and r["method"] == c["method"]]
            color = STYLE[c["method"]][1]
            row[0].plot(
                [r["step"] for r in rs], [r["train_loss_mean"] for r in rs], color=color, lw=1.2, label=_label(c)
            )
            pts = _finite((r["estimated_s_mean"], r["train_loss_mean"]) for r in rs)
            if pts:
                row[1].plot(*zip(*pts), color=color, lw=1.2, label=_label(c))
        row[0].set_xlabel("step")
        row[1].set_xlabel("estimated runtime (s): TNGD device modelled + digital measured")
        row[1].set_xscale("log")
        for ax in row:
            ax.set_ylabel(f"{model}: train loss (minibatch)")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
    fig.suptitle("Best of each method (lowest final train loss), mean over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
