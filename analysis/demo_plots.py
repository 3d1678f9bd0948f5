"""Figures of the demo (matplotlib, Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import read_csv  # noqa: E402


def plot_trajectory(times, ng, ou, x_star, path: str, k: int = 3, idx=None) -> None:
    """Trajectories of the coordinates idx (default the first k)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    idx = list(range(min(k, ng.shape[1]))) if idx is None else list(idx)
    for c, i in enumerate(idx):
        ax.plot(times, ng[:, i], "-", color=f"C{c}", label=f"ngspice x{i}")
        ax.plot(times, ou[:, i], "--", color="k", lw=0.8, label="exact OU" if c == 0 else None)
        ax.axhline(x_star[i], color=f"C{c}", ls=":", lw=0.8)
    ax.set_xlabel("t / tau")
    ax.set_ylabel("state x (V / v_unit)")
    ax.set_title("TNGD crossbar in ngspice vs exact OU (dotted: A^-1 b)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_training_pair(csv_paths: dict, path: str) -> None:
    """Train loss against step and against estimated runtime, test accuracy against step."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    for name, p in csv_paths.items():
        rows = read_csv(p)
        loss = [float(r["train_loss"]) for r in rows]
        ax1.plot([int(r["step"]) for r in rows], loss, label=name)
        ax2.plot([float(r["cumulative_estimated_s"]) for r in rows], loss, label=name)
        ev = [r for r in rows if r["test_accuracy"]]
        ax3.plot([int(r["step"]) for r in ev], [float(r["test_accuracy"]) for r in ev], "o-", ms=3, label=name)
    ax1.set_xlabel("step")
    ax2.set_xlabel("estimated runtime (s): TNGD digital measured + device modelled")
    ax2.set_xscale("log")
    for ax in (ax1, ax2):
        ax.set_ylabel("train loss (minibatch)")
        ax.set_yscale("log")
    ax3.set_xlabel("step")
    ax3.set_ylabel("test accuracy")
    for ax in (ax1, ax2, ax3):
        ax.legend()
    fig.suptitle("TNGD against Adam, each at its tuned defaults", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
