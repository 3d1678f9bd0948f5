"""KIND.png of a training sweep: final train loss and test accuracy against the setting (mean and
spread over seeds), with the ideal `ou` device and Adam as horizontal reference lines."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .sweep_kinds import train_kind  # noqa: E402
from .train_sweep_runs import REFERENCE_RUNS, SWEPT_RUN  # noqa: E402


def summarise(rows, run: str, key: str):
    """{setting text: (mean, std, n ok, n failed)} over seeds for one run type."""
    groups: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    for r in rows:
        if r["run"] != run:
            continue
        v = float(r[key]) if r["status"] == "ok" else math.nan
        groups.setdefault(r["setting"], [])
        if math.isfinite(v):
            groups[r["setting"]].append(v)
        else:
            failed[r["setting"]] = failed.get(r["setting"], 0) + 1
    return {
        s: (float(np.mean(v)) if v else math.nan, float(np.std(v)) if v else math.nan, len(v), failed.get(s, 0))
        for s, v in groups.items()
    }


def plot_train_sweep(kind: str, rows, path: str) -> None:
    sweep = train_kind(kind)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in (
        (axes[0], "final_train_loss", "final train loss"),
        (axes[1], "final_test_accuracy", "test accuracy"),
    ):
        stats = summarise(rows, SWEPT_RUN, key)
        settings = sorted(stats, key=lambda s: json.loads(s))
        x, labels = sweep.axis([json.loads(s) for s in settings])
        mean = np.array([stats[s][0] for s in settings])
        std = np.array([stats[s][1] for s in settings])
        ax.errorbar(x, mean, yerr=std, fmt="o-", capsize=3, label="TNGD, asbuilt circuit")
        for s, xi in zip(settings, x):
            if stats[s][3]:
                ax.annotate(
                    f"{stats[s][3]} failed",
                    (xi, np.nanmax(mean) if np.isfinite(mean).any() else 0),
                    fontsize=7,
                    color="C3",
                )
        for run, line in REFERENCE_RUNS.items():
            ref = summarise(rows, run, key).get("null")
            if ref and math.isfinite(ref[0]):
                ax.axhline(ref[0], ls=line.style, color=line.color, label=f"{line.label} ({ref[0]:.3g})")
        if labels is not None:
            ax.set_xticks(x, labels, rotation=20, fontsize=8)
        ax.set_xlabel(sweep.xlabel)
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle(f"{kind}: digits CNN, final values after a fixed number of steps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
