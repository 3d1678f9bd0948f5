"""PNG figures of `thermospice reproduce` on the paper's axes (matplotlib, Agg: no display needed)."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "adam": ("Adam", "C7", "--"),
    "ngd": ("NGD", "C3", "-"),
    "ngd-cg": ("NGD-CG", "C1", "-"),
    "ngd-woodbury": ("NGD-Woodbury", "C2", "-"),
    "tngd": ("TNGD (estimated)", "C0", "-"),
}


def _save(fig, title: str, path: str) -> None:
    """Title, lay out, write the PNG and free the figure: the same ending for every figure."""
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(v) -> float:
    try:
        return float(v) if v not in ("", None) else math.nan
    except (TypeError, ValueError):
        return math.nan


def plot_fig2(rows: list[dict], path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, sweep, xlabel in ((axes[0], "N", "number of parameters N"), (axes[1], "dz", "output dimension dz")):
        fixed = ""
        for method, (label, color, ls) in STYLE.items():
            pts = [
                (float(r[sweep]), _f(r["seconds_per_iter"]))
                for r in rows
                if r["sweep"] == sweep and r["method"] == method and math.isfinite(_f(r["seconds_per_iter"]))
            ]
            if pts:
                pts.sort()
                ax.plot(*zip(*pts), ls, marker="o", ms=4, color=color, label=label)
        sel = [r for r in rows if r["sweep"] == sweep]
        if sel:
            if sweep == "N":
                fixed = f"dz = {sel[0]['dz']}, b = {sel[0]['batch']}"
            else:
                ns = sorted({int(r["N"]) for r in sel})
                fixed = f"N = {ns[0]}..{ns[-1]}, b = {sel[0]['batch']}"
        ax.set_xscale("log")
        ax.set_yscale("log")
        if sweep == "dz":  # few decades: plain tick labels at the swept values
            ax.set_xticks(sorted({int(r["dz"]) for r in sel}))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("runtime per iteration (s)")
        ax.set_title(f"against {sweep} ({fixed})", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, "Fig. 2: runtime per iteration (TNGD: measured digital part + modelled device time)", path)


def _series(rows, label, key, x="step"):
    sel = [r for r in rows if r["label"] == label]
    xs = np.array([_f(r[x]) for r in sel])
    m = np.array([_f(r[f"{key}_mean"]) for r in sel])
    s = np.array([_f(r[f"{key}_std"]) for r in sel])
    ok = np.isfinite(xs) & np.isfinite(m)
    return xs[ok], m[ok], np.nan_to_num(s[ok])


def _smooth(y: np.ndarray, w: int) -> np.ndarray:
    if w <= 1 or y.size < w:
        return y
    k = np.ones(w) / w
    pad = np.concatenate([np.full(w - 1, y[0]), y])
    return np.convolve(pad, k, mode="valid")


def _band(ax, x, m, s, label, color, smooth=1, ls="-"):
    m2, s2 = _smooth(m, smooth), _smooth(s, smooth)
    ax.plot(x, m2, ls, color=color, label=label, lw=1.4)
    ax.fill_between(x, np.maximum(m2 - s2, 1e-12), m2 + s2, color=color, alpha=0.2, lw=0)


def _yscale(ax) -> None:
    """Log scale when the data span more than a decade, else linear (plain tick labels)."""
    ys = np.concatenate([ln.get_ydata() for ln in ax.get_lines()] or [np.array([1.0])])
    ys = ys[np.isfinite(ys) & (ys > 0)]
    if ys.size and ys.max() / ys.min() > 10:
        ax.set_yscale("log")


def _labels(rows, panel=None):
    seen = []
    for r in rows:
        if (panel is None or r["panel"] == panel) and r["label"] not in seen:
            seen.append(r["label"])
    return seen


def plot_curves(figure: str, rows: list[dict], path: str) -> None:
    if figure == "fig3":
        _plot_fig3(rows, path)
    elif figure == "fig4":
        _plot_fig4(rows, path)
    else:
        _plot_fig7(rows, path)


def _plot_fig3(rows, path):
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    labels = _labels(rows)
    steps = max(int(_f(r["step"])) for r in rows)
    w = max(1, steps // 30)
    for lab in labels:
        color = "C0" if lab.startswith("TNGD") else "C1"
        for ax, key, sm in ((axes[0], "train_loss", w), (axes[1], "test_loss", 1), (axes[2], "test_error", 1)):
            x, _, _ = _series(rows, lab, key, "estimated_s_mean")
            _, m, s = _series(rows, lab, key)
            _band(ax, x, m, s, lab, color, smooth=sm)
    seeds = rows[0]["seeds"] if rows else "?"
    for ax, yl in zip(
        axes, ("training loss" + (f" (moving mean of {w})" if w > 1 else ""), "test loss", "1 - test accuracy")
    ):
        ax.set_xlabel("estimated runtime (s)")
        ax.set_ylabel(yl)
        _yscale(ax)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, f"Fig. 3: TNGD vs Adam on digits, mean +- std over {seeds} seeds", path)


def _plot_fig4(rows, path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    for col, panel, title in ((0, "a", "(a) analog time t"), (1, "b", "(b) delay t_d at t = 5 tau")):
        labels = _labels(rows, panel)
        for i, lab in enumerate(labels):
            sel = [r for r in rows if r["panel"] == panel]
            color = "k" if lab.startswith("NGD") else ("0.5" if lab == "SGD" else f"C{i}")
            ls = "--" if lab.startswith("NGD") or lab == "SGD" else "-"
            steps = max(int(_f(r["step"])) for r in sel)
            for row, key, sm in ((0, "train_loss", max(1, steps // 20)), (1, "test_loss", 1)):
                x, m, s = _series(sel, lab, key)
                _band(axes[row, col], x, m, s, lab, color, smooth=sm, ls=ls)
        axes[0, col].set_title(title, fontsize=10)
        axes[0, col].set_ylabel("training loss (moving mean)")
        axes[1, col].set_ylabel("test loss")
        axes[1, col].set_xlabel("iteration")
        for row in (0, 1):
            _yscale(axes[row, col])
            axes[row, col].grid(True, which="both", alpha=0.3)
            axes[row, col].legend(fontsize=7)
    _save(fig, "Fig. 4: TNGD against the analog time t (a) and the delay t_d (b); NGD for reference", path)


def _plot_fig7(rows, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    labels = _labels(rows)
    steps = max(int(_f(r["step"])) for r in rows)
    for i, lab in enumerate(labels):
        color = "k" if "noiseless" in lab else f"C{i}"
        for ax, key, sm in ((axes[0], "train_loss", max(1, steps // 20)), (axes[1], "test_loss", 1)):
            x, m, s = _series(rows, lab, key)
            _band(ax, x, m, s, lab, color, smooth=sm)
    axes[0].set_ylabel("training loss (moving mean)")
    axes[1].set_ylabel("test loss")
    for ax in axes:
        ax.set_xlabel("iteration")
        _yscale(ax)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, "Fig. 7: TNGD at t = tau for several noise levels kappa0", path)
