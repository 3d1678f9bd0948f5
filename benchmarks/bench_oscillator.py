"""RC cells vs coupled oscillators: time to a given error against the condition number, error
against the number of samples and the sampling interval, and energy per solve.

    python benchmarks/bench_oscillator.py [--out DIR] [--quick] [--no-ngspice]

Conventions (the fair comparison): A is scaled so lambda_max(A) = 1, so the fastest mode of both
devices has the same time scale -- the RC cell relaxes it at rate 1/tau, the oscillator (m = 1,
L = R0^2 C) rings at 1 rad/tau. The condition number moves lambda_min down to 1/cond. Damping
ratios zeta refer to the SLOWEST mode (gamma = 2 zeta sqrt(m lambda_min)); faster modes are less
damped (zeta_k = zeta sqrt(lambda_min / lambda_k)).

* solve (noise off): t_eps = the time after which ||x(t) - A^-1 b|| <= eps ||A^-1 b|| for good,
  from x0 = 0 (exact modal solutions; spot-checked in ngspice).
* inverse (noise on): T_eps = the averaging time after which the rms relative Frobenius error of
  kappa^-1 * (sample covariance) is eps, in the long-window limit (spu.core.underdamped.continuous_time_errors:
  independent of kappa). Burn-in is not included (it is t_eps-like and small against T_eps).
* error vs K and interval: the exact finite-K theory (spu.core.underdamped.sampling_theory) with empirical
  points from the exact langevin backend and one ngspice run.
* b is scaled so that max |A^-1 b| = 5 (V at v_unit = 1 V), inside the +-15 V rails.
* energy: component report power (steady-state resistive dissipation + 1 mW per op-amp) x t_eps.

* damping sweep: t_eps and T_eps against zeta at cond 100.

Writes time_to_error.csv, ngspice_check.csv, error_vs_samples.csv, zeta_sweep.csv, energy.csv and
oscillator_vs_rc.png (default folder benchmarks/results/oscillator).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from circuits.design import Design  # noqa: E402
from circuits.report import component_report  # noqa: E402
from circuits.topologies import build  # noqa: E402
from spu import SPU, DenseProblem  # noqa: E402
from spu.backends.direct import solve as direct_solve  # noqa: E402
from spu.core.underdamped import OscillatorParams, continuous_time_errors, position_acf, sampling_theory  # noqa: E402

EPS_SOLVE = 1e-3
EPS_INV = 0.1
ZETAS = (0.25, 0.5, 1.0, 2.0)
X_PEAK = 5.0
INTERVALS = (1.0, 4.0, 16.0)


def make_problem(n: int, cond: float, seed: int) -> DenseProblem:
    """Mixed-sign SPD with eigenvalues geometric in [1/cond, 1] (extremes attained)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    w = np.geomspace(1.0 / cond, 1.0, n)
    A = 0.5 * ((Q * w) @ Q.T + ((Q * w) @ Q.T).T)
    b = rng.standard_normal(n)
    # Scale b so that the solution peaks at X_PEAK (volts at v_unit = 1 V): a designer sizes v_unit so the
    # states fit the rails, and the power estimate then compares like with like across conditions.
    b *= X_PEAK / np.abs(np.linalg.solve(A, b)).max()
    return DenseProblem(A, b)


def time_to_error(p: DenseProblem, zeta: float | None, eps: float = EPS_SOLVE) -> float:
    """First time after which the noiseless relative error stays <= eps, from x0 = 0 (exact, modal)."""
    w, Q = np.linalg.eigh(p.A)
    xs = np.linalg.solve(p.A, p.b)
    y0 = -(Q.T @ xs)
    norm = np.linalg.norm(xs)
    if zeta is None:
        # RC: monotone, bisection on exp(-w t).
        def err(t):
            return np.linalg.norm(np.exp(-w * t) * y0) / norm

        lo, hi = 0.0, 1.0
        while err(hi) > eps:
            hi *= 2
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if err(mid) > eps else (lo, mid)
        return hi
    gamma = 2 * zeta * math.sqrt(w[0])
    m, g = np.ones_like(w), np.full_like(w, gamma)
    rate = min(zeta, 1.0) * math.sqrt(w[0]) if zeta <= 1 else math.sqrt(w[0]) * (zeta - math.sqrt(zeta**2 - 1))
    t_max = 1.5 * (math.log(1e2 / eps) + 5) / rate
    step = min(0.05, t_max / 4000)
    t_last = 0.0
    start = 0.0
    while start < t_max:  # chunks keep memory bounded
        grid = start + step * np.arange(1, 20001)
        f = position_acf(m, w, g, grid)  # mode response from rest
        e = np.linalg.norm(f * y0[:, None], axis=0) / norm
        bad = np.flatnonzero(e > eps)
        if bad.size:
            t_last = grid[bad[-1]] + step
        start = grid[-1]
    return t_last


def inverse_time(p: DenseProblem, zeta: float | None) -> float:
    pb = DenseProblem(p.A, np.zeros(p.n))
    params = None if zeta is None else OscillatorParams(zeta=zeta)
    ct = continuous_time_errors(pb, params, 1.0)
    return ct["cov_err2_T"] / (EPS_INV**2 * ct["cov_norm"] ** 2)


def ngspice_time_to_error(p: DenseProblem, topology: str, zeta: float | None, t_end: float) -> tuple[float, float]:
    design = Design(dt_max=0.02)
    kw = {} if zeta is None else {"oscillator": OscillatorParams(zeta=zeta)}
    t0 = time.perf_counter()
    res = SPU("ngspice", topology=topology, design=design, **kw).run(p, t=t_end)
    wall = time.perf_counter() - t0
    s, X = res.extra["raw_times_tau"], res.extra["raw_states"]
    xs = np.linalg.solve(p.A, p.b)
    e = np.linalg.norm(X - xs, axis=1) / np.linalg.norm(xs)
    bad = np.flatnonzero(e > EPS_SOLVE)
    return (float(s[bad[-1] + 1]) if bad.size else 0.0), wall


def energy_rows(conds, n=16):
    rows = []
    design = Design(r_max=1e10)  # tiny entries of rotated matrices need large resistors; report says so
    for cond in conds:
        p = make_problem(n, cond, seed=0)
        for label, topology, zeta in (
            ("RC dense", "dense", None),
            ("oscillator zeta=1", "oscillator", 1.0),
            ("oscillator zeta=0.5", "oscillator", 0.5),
        ):
            t = time_to_error(p, zeta)
            kw = {} if zeta is None else {"oscillator": OscillatorParams(zeta=zeta)}
            circ = build(p, topology, design, t=t, **kw)
            rep = component_report(circ, p, t, x_star=direct_solve(p, p.b))
            P = rep["power"]["total_w"]
            rows.append(
                dict(
                    cond=cond,
                    device=label,
                    n=n,
                    op_amps=rep["counts"]["op_amps"],
                    inductors=rep["counts"].get("inductors", 0),
                    power_w=P,
                    t_solve_tau=t,
                    energy_solve_j=P * t * design.tau,
                    T_inverse_tau=inverse_time(p, zeta),
                    energy_inverse_j=P * inverse_time(p, zeta) * design.tau,
                )
            )
    return rows


def error_vs_samples(quick: bool, use_ngspice: bool, cond: float = 100.0):
    """Relative errors of solve (sample mean) and inverse (sample covariance / kappa) against K and the
    interval: exact theory lines, plus one long run of the exact backends and of ngspice (interval 1)."""
    n, kappa = 8, 0.1
    p = make_problem(n, cond, seed=4)
    xs = np.linalg.solve(p.A, p.b)
    Ainv = np.linalg.inv(p.A)
    Ks = np.unique(np.geomspace(10, 10000, 16).astype(int))
    rows = []
    for label, params in (
        ("RC", None),
        ("oscillator zeta=1", OscillatorParams(zeta=1.0)),
        ("oscillator zeta=0.5", OscillatorParams(zeta=0.5)),
    ):
        for dt in INTERVALS:
            for K in Ks:
                th = sampling_theory(p, params, kappa, int(K), dt)
                rows.append(
                    dict(
                        device=label,
                        interval_tau=dt,
                        K=int(K),
                        source="theory",
                        inverse_rel_err=math.sqrt(th["cov_err2"]) / np.linalg.norm(kappa * Ainv),
                        mean_rel_err=math.sqrt(th["mean_err2"]) / np.linalg.norm(xs),
                    )
                )

    def measured(X, K, label, src):
        C = np.cov(X[:K].T)
        return dict(
            device=label,
            interval_tau=1.0,
            K=int(K),
            source=src,
            inverse_rel_err=float(np.linalg.norm(C / kappa - Ainv) / np.linalg.norm(Ainv)),
            mean_rel_err=float(np.linalg.norm(X[:K].mean(0) - xs) / np.linalg.norm(xs)),
        )

    Kmax = 2000 if quick else 10000
    burn = 50.0 + 10 * math.log(10) * math.sqrt(cond)  # well past the oscillators' settling (RC: see below)
    for label, backend, kw in (("RC", "ou", {}), ("oscillator zeta=1", "langevin", {"zeta": 1.0})):
        b_in = burn if backend == "langevin" else 7 * cond
        times = b_in + np.arange(Kmax) * 1.0
        X = SPU(backend, kappa0=kappa, seed=1, **kw).run(p, t=float(times[-1]), x0=xs, times=times).trajectory
        rows += [measured(X, K, label, f"{backend} backend") for K in Ks[Ks <= Kmax]]
    if use_ngspice:
        Kng = 400 if quick else 1600
        times = burn + np.arange(Kng) * 1.0
        t0 = time.perf_counter()
        X = (
            SPU(
                "ngspice",
                topology="oscillator",
                design=Design(noise_dt=0.1, dt_max=0.1),
                kappa0=kappa,
                seed=8,
                oscillator=OscillatorParams(zeta=1.0),
            )
            .run(p, t=float(times[-1]), x0=xs, times=times)
            .trajectory
        )
        print(f"  ngspice oscillator, {Kng} samples: {time.perf_counter() - t0:.1f} s")
        rows += [measured(X, K, "oscillator zeta=1", "ngspice") for K in Ks[Ks <= Kng]]
    return rows


def zeta_sweep(cond: float = 100.0, n: int = 16):
    p = make_problem(n, cond, seed=0)
    rows = []
    for zeta in np.geomspace(0.1, 4.0, 17):
        rows.append(
            dict(
                cond=cond,
                zeta=float(zeta),
                t_solve_tau=time_to_error(p, float(zeta)),
                T_inverse_tau=inverse_time(p, float(zeta)),
            )
        )
    rows.append(dict(cond=cond, zeta="RC", t_solve_tau=time_to_error(p, None), T_inverse_tau=inverse_time(p, None)))
    return rows


def write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "oscillator"))
    ap.add_argument("--quick", action="store_true", help="fewer conditions and seeds")
    ap.add_argument("--no-ngspice", action="store_true", help="skip the ngspice spot checks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    conds = [3, 10, 30, 100, 300, 1000] if not args.quick else [10, 100, 1000]
    seeds = range(3) if not args.quick else range(1)
    n = 16

    print("time to error vs condition number (exact)")
    rows = []
    for cond in conds:
        for seed in seeds:
            p = make_problem(n, cond, seed)
            for zeta in (None, *ZETAS):
                rows.append(
                    dict(
                        cond=cond,
                        seed=seed,
                        device="RC" if zeta is None else "oscillator",
                        zeta=zeta if zeta is not None else "",
                        t_solve_tau=time_to_error(p, zeta),
                        T_inverse_tau=inverse_time(p, zeta),
                    )
                )
    write_csv(out / "time_to_error.csv", rows)

    def med(dev, zeta, key):
        return [
            float(
                np.median(
                    [
                        r[key]
                        for r in rows
                        if r["cond"] == c and r["device"] == dev and (r["zeta"] == (zeta if zeta is not None else ""))
                    ]
                )
            )
            for c in conds
        ]

    series = {"RC": (med("RC", None, "t_solve_tau"), med("RC", None, "T_inverse_tau"))}
    for z in ZETAS:
        series[f"oscillator zeta={z:g}"] = (med("oscillator", z, "t_solve_tau"), med("oscillator", z, "T_inverse_tau"))
    lc = np.log(conds)
    print(f"  {'device':<22}" + "".join(f"{c:>10g}" for c in conds) + "   slope(solve) slope(inverse)")
    for name, (ts, Ts) in series.items():
        s1 = np.polyfit(lc, np.log(ts), 1)[0]
        s2 = np.polyfit(lc, np.log(Ts), 1)[0]
        print(f"  {name:<22}" + "".join(f"{t:>10.4g}" for t in ts) + f"   {s1:10.2f} {s2:12.2f}")
        print(f"  {'  (inverse T_eps)':<22}" + "".join(f"{t:>10.4g}" for t in Ts))

    checks = []
    if not args.no_ngspice:
        print("ngspice spot checks (n = 8, noise off)")
        for cond in [10, 100] if not args.quick else [10]:
            p = make_problem(8, cond, seed=0)
            for label, topology, zeta in (
                ("RC", "dense", None),
                ("oscillator", "oscillator", 1.0),
                ("oscillator", "oscillator", 0.5),
            ):
                t_ex = time_to_error(p, zeta)
                t_ng, wall = ngspice_time_to_error(p, topology, zeta, t_end=1.3 * t_ex)
                checks.append(
                    dict(
                        cond=cond,
                        device=label,
                        zeta=zeta if zeta else "",
                        t_exact_tau=t_ex,
                        t_ngspice_tau=t_ng,
                        ngspice_wall_s=wall,
                    )
                )
                print(
                    f"  cond {cond:>5g} {label:<10} zeta {str(zeta):<5} exact {t_ex:8.2f} tau  ngspice {t_ng:8.2f} tau "
                    f"({wall:.1f} s)"
                )
        write_csv(out / "ngspice_check.csv", checks)

    print("error vs number of samples and interval (8x8, cond 100)")
    evs = error_vs_samples(args.quick, not args.no_ngspice)
    write_csv(out / "error_vs_samples.csv", evs)

    print("damping sweep (n = 16, cond 100)")
    zs = zeta_sweep()
    write_csv(out / "zeta_sweep.csv", zs)
    best_s = min((r for r in zs if r["zeta"] != "RC"), key=lambda r: r["t_solve_tau"])
    best_i = min((r for r in zs if r["zeta"] != "RC"), key=lambda r: r["T_inverse_tau"])
    print(
        f"  fastest solve at zeta = {best_s['zeta']:.3g} ({best_s['t_solve_tau']:.4g} tau), fastest inverse at "
        f"zeta = {best_i['zeta']:.3g} ({best_i['T_inverse_tau']:.4g} tau); RC {zs[-1]['t_solve_tau']:.4g} / "
        f"{zs[-1]['T_inverse_tau']:.4g} tau"
    )

    print("energy per solve (component report)")
    en = energy_rows([10, 100] if args.quick else [10, 100, 1000])
    write_csv(out / "energy.csv", en)
    for r in en:
        print(
            f"  cond {r['cond']:>5g} {r['device']:<22} op-amps {r['op_amps']:>3} P {r['power_w'] * 1e3:7.2f} mW  "
            f"t_solve {r['t_solve_tau']:8.1f} tau  E_solve {r['energy_solve_j'] * 1e9:9.2f} nJ  "
            f"E_inverse(10%) {r['energy_inverse_j'] * 1e6:9.3f} uJ"
        )
    plot(out, conds, series, checks, evs, zs, en)


COLORS = {
    "RC": "k",
    "oscillator zeta=0.25": "tab:red",
    "oscillator zeta=0.5": "tab:orange",
    "oscillator zeta=1": "tab:blue",
    "oscillator zeta=2": "tab:green",
}


def plot(out, conds, series, checks, evs, zs, en):
    fig, ax = plt.subplots(2, 3, figsize=(17, 9.5))
    for name, (ts, Ts) in series.items():
        ax[0, 0].loglog(conds, ts, "o-", color=COLORS[name], label=name)
        ax[0, 1].loglog(conds, Ts, "o-", color=COLORS[name], label=name)
    c = np.array(conds, float)
    ax[0, 0].loglog(c, series["RC"][0][0] * c / c[0], ":", color="gray", label="~ cond")
    ax[0, 0].loglog(c, series["oscillator zeta=1"][0][0] * np.sqrt(c / c[0]), "--", color="gray", label="~ sqrt(cond)")
    for r in checks:
        name = "RC" if r["device"] == "RC" else f"oscillator zeta={r['zeta']:g}"
        ax[0, 0].loglog(r["cond"], r["t_ngspice_tau"], "x", ms=12, mew=2, color=COLORS[name])
    ax[0, 0].set(
        xlabel="condition number of A (lambda_max = 1)",
        ylabel=f"time to rel. error {EPS_SOLVE:g} [tau]",
        title="(a) solve, noise off, n = 16 (x: ngspice, n = 8)",
    )
    ax[0, 1].set(
        xlabel="condition number of A",
        ylabel=f"averaging time to {EPS_INV:.0%} inverse error [tau]",
        title="(b) inverse by sampling, n = 16 (exact theory)",
    )
    ax[0, 0].legend(fontsize=8)
    ax[0, 1].legend(fontsize=8)
    z = [r for r in zs if r["zeta"] != "RC"]
    rc = zs[-1]
    zz = [r["zeta"] for r in z]
    ax[0, 2].loglog(zz, [r["t_solve_tau"] for r in z], "o-", color="tab:blue", label="oscillator: solve (noise off)")
    ax[0, 2].loglog(
        zz, [r["T_inverse_tau"] / 100 for r in z], "s-", color="tab:purple", label="oscillator: inverse / 100"
    )
    ax[0, 2].axhline(rc["t_solve_tau"], color="tab:blue", ls=":", label="RC: solve")
    ax[0, 2].axhline(rc["T_inverse_tau"] / 100, color="tab:purple", ls=":", label="RC: inverse / 100")
    ax[0, 2].set(
        xlabel="damping ratio of the slowest mode zeta",
        ylabel="time [tau]",
        title=f"(c) damping sweep, cond {rc['cond']:g}",
    )
    ax[0, 2].legend(fontsize=8)
    styles = {INTERVALS[0]: "-", INTERVALS[1]: "--", INTERVALS[2]: ":"}
    markers = {"ou backend": "s", "langevin backend": "^", "ngspice": "x"}
    for col, key, title in (
        (0, "mean_rel_err", "(d) solve = sample mean (kappa0 = 0.1)"),
        (1, "inverse_rel_err", "(e) inverse = sample covariance / kappa0"),
    ):
        a = ax[1, col]
        for dev in ("RC", "oscillator zeta=1", "oscillator zeta=0.5"):
            for dt, ls in styles.items():
                pts = [
                    (r["K"], r[key])
                    for r in evs
                    if r["device"] == dev and r["interval_tau"] == dt and r["source"] == "theory"
                ]
                K, e = np.array(pts).T
                a.loglog(K, e, ls, color=COLORS[dev], label=f"{dev}, interval {dt:g}")
        for src, mk in markers.items():
            pts = [(r["K"], r[key], r["device"]) for r in evs if r["source"] == src]
            if pts:
                a.loglog(
                    [q[0] for q in pts],
                    [q[1] for q in pts],
                    mk,
                    color=COLORS[pts[0][2]],
                    ms=6,
                    mfc="none",
                    label=f"{src} (interval 1)",
                )
        a.set(xlabel="number of samples K", ylabel="relative error", title=title + ", 8x8, cond 100")
        a.legend(fontsize=6.5, ncol=2)
    for dev, mk in (("RC dense", "o-"), ("oscillator zeta=1", "s-"), ("oscillator zeta=0.5", "^-")):
        pts = [(r["cond"], r["energy_solve_j"]) for r in en if r["device"] == dev]
        ax[1, 2].loglog(
            *np.array(pts).T,
            mk,
            color={"RC dense": "k", "oscillator zeta=1": "tab:blue", "oscillator zeta=0.5": "tab:orange"}[dev],
            label=dev,
        )
    ax[1, 2].set(
        xlabel="condition number of A",
        ylabel=f"energy to rel. error {EPS_SOLVE:g} [J]",
        title="(f) energy per solve, n = 16 (component report)",
    )
    ax[1, 2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "oscillator_vs_rc.png", dpi=100)
    print(
        f"wrote {out}/time_to_error.csv, ngspice_check.csv, error_vs_samples.csv, zeta_sweep.csv, energy.csv, "
        "oscillator_vs_rc.png"
    )


if __name__ == "__main__":
    main()
