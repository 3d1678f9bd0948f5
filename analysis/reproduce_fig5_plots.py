"""fig5.png: training loss against iterations, panel (a) Adam / TNGD / TNGD-Adam, panel (b)
TNGD-Adam over the analog time t, mean +- std over seeds (the paper's Fig. 5 axes)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"adam": "C7", "tngd": "C0", "tngd-adam": "C3"}


def _smooth(y: np.ndarray, w: int) -> np.ndarray:
    """Running mean over w steps (the minibatch loss of b = 4 examples is noisy); NaN-aware."""
    if w <= 1:
        return y
    out = np.full_like(y, np.nan)
    for i in range(len(y)):
        seg = y[max(0, i - w + 1) : i + 1]
        seg = seg[np.isfinite(seg)]
        if seg.size:
            out[i] = seg.mean()
    return out


def plot_fig5(rows: list[dict], summary: list[dict], path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    steps = max((int(r["step"]) for r in rows), default=1)
    w = max(1, steps // 10)
    f1 = {(s["panel"], s["label"]): s["final_heldout_f1_mean"] for s in summary}
    for ax, panel in zip(axes, ("a", "b")):
        labels = list(dict.fromkeys(r["label"] for r in rows if r["panel"] == panel))
        for i, label in enumerate(labels):
            sel = [r for r in rows if r["panel"] == panel and r["label"] == label]
            x = np.array([int(r["step"]) for r in sel])
            m = _smooth(np.array([float(r["train_loss_mean"]) for r in sel]), w)
            s = _smooth(np.array([float(r["train_loss_std"]) for r in sel]), w)
            colour = (
                COLOURS[sel[0]["optimizer"]]
                if panel == "a"
                else plt.cm.viridis(0.15 + 0.7 * i / max(1, len(labels) - 1))
            )
            score = f1.get((panel, label), math.nan)
            ax.plot(x, m, color=colour, label=f"{label} (held-out F1 {score:.2f})")
            ax.fill_between(x, m - s, m + s, color=colour, alpha=0.2, linewidth=0)
        ax.set_xlabel("iteration")
        ax.set_title("(a) optimizers" if panel == "a" else "(b) TNGD-Adam, analog time t", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(f"training loss (running mean over {w} steps)")
    seeds = rows[0]["seeds"] if rows else "?"
    fig.suptitle(
        f"Fig. 5: MiniLM-L6 + LoRA (r = 2), generated QA, lambda = 1; mean +- std over {seeds} seeds", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
