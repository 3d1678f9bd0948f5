"""Training curves as PNG (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _col(rows, key):
    xs, ys = [], []
    for r in rows:
        v = r[key]
        if v != "" and v is not None:
            xs.append(float(r["step"]))
            ys.append(float(v))
    return xs, ys


def plot_training(rows, path: str, title: str = "") -> None:
    """Train and test loss against step, test accuracy on a second panel."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(*_col(rows, "train_loss"), label="train loss", lw=1)
    ax1.plot(*_col(rows, "test_loss"), "o-", label="test loss", ms=3)
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(*_col(rows, "test_accuracy"), "o-", ms=3, color="C2")
    ax2.set_xlabel("step")
    ax2.set_ylabel("test accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
