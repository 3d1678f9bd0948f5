"""PNG figures of the sweeps (matplotlib, Agg; no pyplot state, so safe in any process)."""
from __future__ import annotations

import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .sweep_summary import summary_rows


def _f(rows, col):
    return np.array([float(r[col]) for r in rows])


def _ok(rows):
    return [r for r in rows if r["status"] == "ok"]


def _title(spec: dict) -> str:
    p = spec["problem"]
    where = f"{spec['backend']}" + (f" ({spec['topology']})" if spec.get("topology") else "")
    return (f"{spec['kind']} sweep: {p['form']} problem n={p['n']}, lam={p['lam']:g}, "
            f"lambda_min={spec['lambda_min']:.3g}; {where}")


def _new(ncols: int = 1):
    fig = Figure(figsize=(5.2 * ncols + 0.6, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _positive(v):
    """Log axes: zero errors (exact runs) drawn at a visible floor instead of vanishing."""
    v = np.asarray(v, float)
    pos = v[np.isfinite(v) & (v > 0)]
    floor = pos.min() / 3 if pos.size else 1e-16
    return np.where(v > 0, v, floor)


def plot_noise(rows, spec, path):
    fig, (ax, ax2) = _new(2)
    summ = summary_rows("noise", rows)
    kap_pos = sorted({float(r["kappa0"]) for r in rows if float(r["kappa0"]) > 0})
    for T in sorted({float(r["temperature_k"]) for r in summ}):
        s = [r for r in summ if float(r["temperature_k"]) == T and r["n_ok"]]
        if not s:
            continue
        kap = np.array([float(r["kappa0"]) for r in s])
        lab = "no Johnson noise" if T == 0 else f"T = {T:g} K"
        line, = ax.plot(kap, _positive([r["rel_error_rms"] for r in s]), "o-", label=f"rms over seeds, {lab}")
        pts = [r for r in _ok(rows) if float(r["temperature_k"]) == T]
        ax.plot(_f(pts, "kappa0"), _positive(_f(pts, "rel_error")), ".", color=line.get_color(), alpha=0.4)
        std = np.array([r["rel_error_std"] for r in s])
        if np.any(std > 0):  # zero spread (deterministic runs) has no place on a log axis: left out
            ax2.plot(kap[std > 0], std[std > 0], "o-", color=line.get_color(), label=f"std over seeds, {lab}")
    s0 = [r for r in summ if float(r["temperature_k"]) == 0 and r["n_ok"]] or [r for r in summ if r["n_ok"]]
    if s0:
        k0 = [r for r in summ if r["temperature_k"] == s0[0]["temperature_k"] and r["n_ok"]]
        ax.plot([float(r["kappa0"]) for r in k0], [r["theory_rms_error_mean"] for r in k0], "k--",
                label="theory (ideal OU, kappa0 only)")
        top = [r for r in k0 if kap_pos and float(r["kappa0"]) == kap_pos[-1]]
        if len(kap_pos) > 1 and top and top[0]["rel_error_std"] > 0:
            ax2.plot(kap_pos, top[0]["rel_error_std"] * np.sqrt(np.array(kap_pos) / kap_pos[-1]), "k:",
                     label="∝ sqrt(kappa0)")
    lin = kap_pos[0] if kap_pos else 1e-4
    for a in (ax, ax2):
        a.set_xscale("symlog", linthresh=lin)  # kappa0 = 0 (no programmed noise) stays on the axis
        a.set_xlabel("kappa0")
        a.grid(True, which="both", alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.set_yscale("log")
            a.legend(fontsize=7)
    if not ax2.get_legend_handles_labels()[0]:
        ax2.text(0.5, 0.5, "no spread (one seed, or no noise)", ha="center", transform=ax2.transAxes)
    ax.set_ylabel(f"relative error ||x - x*|| / ||x*|| at t = {spec['t_tau']:g} tau")
    ax2.set_ylabel(f"spread of the error over {spec['seeds']} seeds (std)")
    fig.suptitle(_title(spec), fontsize=9)
    fig.savefig(path, dpi=110)


def plot_tolerance(rows, spec, path):
    fig, (ax, ax2) = _new(2)
    summ = summary_rows("tolerance", rows)
    for tc in sorted({float(r["tol_c"]) for r in rows}):
        pts = [r for r in _ok(rows) if float(r["tol_c"]) == tc]
        s = [r for r in summ if float(r["tol_c"]) == tc and r["n_ok"]]
        tr = np.array([float(r["tol_r"]) for r in s])
        line, = ax.plot(tr, _positive([r["rel_error_rms"] for r in s]), "o-",
                        label=f"ngspice rms, tol_c = {tc:g}")
        ax.plot(_f(pts, "tol_r"), _positive(_f(pts, "rel_error")), ".", color=line.get_color(), alpha=0.4)
        ax.plot(tr, _positive([r["asbuilt_error_mean"] for r in s]), "x--", color=line.get_color(),
                label=f"as-built steady state (mean), tol_c = {tc:g}")
        st = _f(pts, "settle_tau")
        ax2.plot(_f(pts, "tol_r"), np.where(np.isfinite(st), st, np.nan), "o", color=line.get_color(),
                 alpha=0.6, label=f"tol_c = {tc:g}")
    ax.set_xscale("symlog", linthresh=min([v for v in spec["grid"]["tol_r"] if v > 0] or [1e-3]))
    ax.set_yscale("log")
    ax.set_xlabel("tol_r (relative sigma of every R)")
    ax.set_ylabel("relative error ||x - x*|| / ||x*||")
    ax2.set_xscale("symlog", linthresh=min([v for v in spec["grid"]["tol_r"] if v > 0] or [1e-3]))
    ax2.set_xlabel("tol_r")
    ax2.set_ylabel(f"settling time to {spec['settle_tol']:g} (tau)")
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(_title(spec) + f"; {spec['seeds']} draws per point", fontsize=9)
    fig.savefig(path, dpi=110)


def plot_bits(rows, spec, path):
    fig, (ax,) = _new(1)
    names = {"r": "resistors", "dac": "DAC", "adc": "ADC", "all": "all three"}
    bits_all = sorted({int(r["bits"]) for r in rows})
    for tg in spec["grid"]["target"]:
        pts = [r for r in _ok(rows) if r["target"] == tg]
        if pts:
            ax.plot(_f(pts, "bits"), _positive(_f(pts, "rel_error")), "o-", label=f"{names[tg]} (ngspice)")
    if bits_all:
        b = np.array(bits_all, float)
        ax.plot(b, 2.0 ** -b, "k:", label="2^-bits")
    ax.axvline(8, color="grey", ls="--", lw=0.8)
    ax.text(8, ax.get_ylim()[1], " 8 bits", va="top", fontsize=7, color="grey")
    ax.set_yscale("log")
    ax.set_xlabel("resolution (bits)")
    ax.set_ylabel(f"relative error ||x - x*|| / ||x*|| at t = {spec['t_tau']:g} tau")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.suptitle(_title(spec), fontsize=9)
    fig.savefig(path, dpi=110)


def plot_opamp(rows, spec, path):
    fig, (ax, ax2) = _new(2)
    ok = _ok(rows)
    gains = sorted({float(r["gain"]) for r in ok})
    finite = [g for g in gains if math.isfinite(g)]
    ideal_x = (max(finite) * 10) if finite else 1e9
    gx = lambda g: ideal_x if math.isinf(g) else g  # noqa: E731
    for gbw in sorted({float(r["gbw_hz"]) for r in rows}):
        pts = sorted([r for r in ok if float(r["gbw_hz"]) == gbw], key=lambda r: float(r["gain"]))
        lab = "no pole" if math.isinf(gbw) else f"GBW = {gbw:.3g} Hz"
        if not pts:
            continue
        g = [gx(float(r["gain"])) for r in pts]
        ax.plot(g, _positive(_f(pts, "rel_error")), "o-", label=lab)
        st = _f(pts, "settle_tau")
        ax2.plot(g, np.where(np.isfinite(st), st, np.nan), "o-", label=lab)
    bad = [r for r in rows if r["status"] != "ok"]
    for r in bad:
        e = float(r["rel_error"])
        if math.isfinite(e) and e > 0:
            ax.plot(gx(float(r["gain"])), e, "rx")
        ax2.plot(gx(float(r["gain"])), 0, "rx")
    if bad:
        for a in (ax, ax2):
            a.plot([], [], "rx", label="unstable / unsettled / failed (GBW too low?)")
    if ok:
        ax2.axhline(float(ok[0]["ideal_settle_tau"]), color="k", ls="--", lw=0.8, label="ideal op-amps")
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlabel(f"op-amp DC gain (ideal drawn at {ideal_x:.0e})")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel(f"relative error at t = {spec['t_tau']:g} tau")
    ax2.set_ylabel(f"settling time to {spec['settle_tol']:g} (tau)")
    fig.suptitle(_title(spec), fontsize=9)
    fig.savefig(path, dpi=110)


def plot_time(rows, spec, path):
    fig, (ax,) = _new(1)
    ok = _ok(rows)
    lam = spec["lambda_min"]
    ax.plot(_f(ok, "t_tau"), _positive(_f(ok, "rel_error")), "o", label=f"{spec['backend']}")
    summ = [r for r in summary_rows("time", rows) if r["n_ok"]]
    t = np.array([float(r["t_tau"]) for r in summ])
    ax.plot(t, [r["theory_error_mean"] for r in summ], "k-", lw=1,
            label="exact OU: sqrt(||exp(-At) x*||^2 + noise) / ||x*||")
    tt = np.linspace(0, t.max() if t.size else 1, 200)
    ax.plot(tt, np.exp(-lam * tt), "r--", label=f"exp(-lambda_min t), lambda_min = {lam:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("analog time t (tau)")
    ax.set_ylabel("relative error ||x(t) - x*|| / ||x*||, x(0) = 0")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    k = spec.get("kappa0", 0.0)
    fig.suptitle(_title(spec) + (f"; kappa0 = {k:g}" if k else ""), fontsize=9)
    fig.savefig(path, dpi=110)


PLOTS = {"noise": plot_noise, "tolerance": plot_tolerance, "bits": plot_bits, "opamp": plot_opamp, "time": plot_time}


def plot_sweep(kind: str, rows: list[dict[str, str]], spec: dict, path: str) -> None:
    PLOTS[kind](rows, spec, path)
