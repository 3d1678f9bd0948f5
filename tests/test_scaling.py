"""Issue 12 (automatic scaling, ill-conditioned systems, t = "auto") and issue 10 item 1 (open cells),
checked with real ngspice against the direct solve and the theory of the settling time."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cases import random_ggn_problem
from physics import sampled_mean_cov_sigma
from scipy import stats

from analysis.cli import main
from circuits.design import BOLTZMANN, Design
from circuits.report import component_report
from circuits.topologies import TOPOLOGIES, build
from spu import SPU, DenseProblem, DesignError, FactoredProblem, GGNProblem
from spu.core.softmax import random_softmax_hessian
from spu.core.spectral import MODE_DECAY_TOL

pytestmark = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")

CONDS = (1e2, 1e3, 1e4)


def _with_slow_solution(A_of, n, rng, make):
    """b such that x* lies mostly along the slowest mode (component 0.96): the measured settling
    time then reads the slowest mode's decay, which is what the report predicts."""
    A = A_of()
    w, V = np.linalg.eigh(A)
    g = rng.normal(size=n)
    x = V[:, 0] + 0.3 * g / np.linalg.norm(g)
    return make(A @ x)


def conditioned(topology: str, cond: float, n: int = 6, seed: int = 0):
    """A problem of condition number `cond` in the form the topology builds, with entries too large
    for the resistor range (every case needs the scale s > 1 once cond >= 1e3)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    if topology in ("ideal", "dense", "oscillator"):
        A = Q @ np.diag(np.logspace(0, np.log10(cond), n)) @ Q.T
        A = (A + A.T) / 2
        return _with_slow_solution(lambda: A, n, rng, lambda b: DenseProblem(A, b))
    lam = 200.0  # R0/lam = 5 ohm < r_min: the lam resistors alone need the scale
    if topology == "factored":
        m = n // 2
        s = lam * (cond - 1) * np.logspace(-1, 0, m)
        U = Q[:, :m] * np.sqrt(s)
        return _with_slow_solution(lambda: lam * np.eye(n) + U @ U.T, n, rng, lambda b: FactoredProblem(U, lam, b))
    H = random_softmax_hessian(rng, 2, 3)  # m = 6 < n = 8: lam is the smallest eigenvalue
    J = rng.normal(size=(6, n))
    J *= np.sqrt(lam * (cond - 1) / np.linalg.eigvalsh(J.T @ H @ J)[-1])
    return _with_slow_solution(lambda: J.T @ H @ J + lam * np.eye(n), n, rng, lambda b: GGNProblem(J, H, lam, b))


def _rel(x, xs):
    return float(np.linalg.norm(x - xs) / np.linalg.norm(xs))


def measured_settling(times, X, xs, tol=MODE_DECAY_TOL) -> float:
    """First time after which ||x(s) - x*|| <= tol ||x*|| for good."""
    err = np.linalg.norm(X - xs, axis=1) / np.linalg.norm(xs)
    above = np.flatnonzero(err > tol)
    assert above.size and above[-1] < len(times) - 1, "never settled within the run"
    k = above[-1]  # linear interpolation of log(err) between the last point above and the next
    e0, e1 = np.log(err[k]), np.log(err[k + 1])
    return float(times[k] + (np.log(tol) - e0) / (e1 - e0) * (times[k + 1] - times[k]))


@pytest.mark.parametrize("cond", CONDS)
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_ill_conditioned_systems_settle_as_the_report_predicts(topology, cond):
    p = conditioned(topology, cond, n=8 if topology == "crossbar" else 6)
    xs = np.linalg.solve(p.matrix(), p.b)
    # The step: 1 % of the slowest mode's time constant in circuit tau, at most the default 0.01 tau
    # of the well-conditioned cases. (0.01 tau throughout costs ~5e6 steps, 5 minutes, at cond 1e4;
    # the fast modes such a step cannot follow are damped by gear, circuits.circuit.finish_transient.)
    probe = build(p, topology, t=1.0)
    lam_c = p.eig_extremes()[0] / probe.scale
    spu = SPU("ngspice", topology=topology, design=Design(dt_max=max(0.01, 0.01 / lam_c)))
    t_settle = spu.settling_time(p)
    # One run past the predicted settling time; ngspice's raw points (every internal step) give
    # the state at t_settle and the measured settling time.
    res = spu.run(p, t=1.3 * t_settle)
    rep = res.report["timing"]
    assert t_settle == pytest.approx(rep["settling_time_tau"], rel=1e-12)
    times, X = res.extra["raw_times_tau"], res.extra["raw_states"]
    x_at = np.array([np.interp(t_settle, times, X[:, i]) for i in range(p.n)])
    # 1. at the report's settling time: the steady state within 1e-6 of the direct solve.
    assert _rel(x_at, xs) <= 1e-6, f"{topology} cond {cond:g}: error {_rel(x_at, xs):.3g} at t = {t_settle:.4g}"
    assert _rel(res.x, xs) <= 1e-6
    s = rep["scale"]
    if cond >= 1e3:
        assert s > 1.0
    # The report's times in both units, and the physical analog time is s times the problem's.
    assert rep["settling_time_circuit_tau"] == pytest.approx(s * t_settle)
    assert rep["settling_time_s"] == pytest.approx(s * t_settle * 1e-6)
    assert res.analog_time_s == pytest.approx(s * res.t * 1e-6)
    assert times[-1] == pytest.approx(res.t, rel=1e-9)
    # 2. the settling time measured on the ngspice trajectory is the predicted one within 20 %.
    measured = measured_settling(times, X, xs)
    assert abs(measured / t_settle - 1) <= 0.2, (
        f"{topology} cond {cond:g}: measured {measured:.4g}, predicted {t_settle:.4g}"
    )


def test_scaled_noise_keeps_kappa0_A_inverse():
    """kappa0 keeps its meaning whatever s is: the physics test's matrix times 500 (scale 500, so
    the circuit is that test's, its noise kappa0/500), and the samples are N(x*, kappa0 A^-1) in
    problem time."""
    s = 500.0
    A = s * np.array([[1.0, -0.4], [-0.4, 0.8]])
    b = s * np.array([0.5, -1.0])
    p = DenseProblem(A, b)
    kappa, T, burn, dt = 0.05, 1500.0 / s, 20.0 / s, 0.25 / s
    design = Design(noise_dt=0.05 / s, dt_max=0.05)  # noise_dt in problem tau, dt_max in circuit tau
    res = SPU("ngspice", topology="dense", design=design, kappa0=kappa, seed=11).run(
        p, t=T, x0=np.linalg.solve(A, b), times=np.arange(burn, T, dt)
    )
    assert res.report["timing"]["scale"] == s
    X = res.trajectory
    mean_cov, cov_sigma = sampled_mean_cov_sigma(A, kappa, dt, len(X))
    err = X.mean(0) - np.linalg.solve(A, b)
    assert err @ np.linalg.solve(mean_cov, err) < stats.chi2.ppf(1 - 1e-4, df=2)
    z = (np.cov(X.T) - kappa * np.linalg.inv(A)) / cov_sigma
    assert np.abs(z).max() < 4.0, f"sample covariance z-scores {z}"
    # Tight enough to matter: a kappa 30 % off (kappa0 instead of kappa0/s would be 500x) fails it.
    assert np.abs((np.cov(X.T) - 1.3 * kappa * np.linalg.inv(A)) / cov_sigma).max() > 4.0


def test_johnson_noise_is_reported_in_problem_units():
    """Ideal cells with a diagonal A: cell i is C with R0 s / A_ii to ground, whose Johnson current
    gives kappa_i = k T A_ii / (C v_unit^2) in problem units, the same scaled or not."""
    a = np.array([400.0, 4.0])
    p = DenseProblem(np.diag(a), np.ones(2))
    d = Design(temperature=300.0)
    expect = BOLTZMANN * 300.0 * a / (d.C * d.v_unit**2)
    for design in (d, d.with_(autoscale=False, r_min=1.0)):
        c = build(p, "ideal", design)
        noise = component_report(c, p, 1.0, x_star=p.b / a)["noise"]
        assert noise["johnson_kappa0_max"] == pytest.approx(expect.max(), rel=1e-12)
        assert noise["johnson_kappa0_min"] == pytest.approx(expect.min(), rel=1e-12)
    assert build(p, "ideal", d).scale == 400.0  # the largest entry at R0


@pytest.mark.parametrize("backend", ["ngspice", "ou", "euler", "direct", "langevin"])
def test_t_auto_works_for_every_backend(backend):
    p = conditioned("dense", 1e2)
    xs = np.linalg.solve(p.A, p.b)
    spu = SPU(backend, **({"dt": 1e-4} if backend == "euler" else {}))
    res = spu.run(p, t="auto", settle_tol=1e-4)
    assert res.t == pytest.approx(spu.settling_time(p, 1e-4))
    if backend != "langevin":
        assert res.t == pytest.approx(np.log(1e4) / np.linalg.eigvalsh(p.A)[0])
    assert _rel(res.x, xs) <= 1e-4 * 1.05


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_acceptance_issue_12_cond_1e3_with_t_auto(capsys, tmp_path):
    """The issue's command, unchanged apart from --t auto: 6x6, eigenvalues 1 .. 1000, random b."""
    rng = np.random.default_rng(12)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    A = Q @ np.diag(np.logspace(0, 3, 6)) @ Q.T
    A = (A + A.T) / 2
    b = rng.normal(size=6)
    np.save(tmp_path / "A.npy", A)
    np.save(tmp_path / "b.npy", b)
    xs = np.linalg.solve(A, b)
    for topology in ("dense", "ideal", "oscillator"):
        rc, out, err = _cli(
            capsys,
            "solve",
            "--A",
            tmp_path / "A.npy",
            "--b",
            tmp_path / "b.npy",
            "--backend",
            "ngspice",
            "--topology",
            topology,
            "--t",
            "auto",
            "--kappa0",
            "0",
            "--json",
        )
        assert rc == 0, err
        x = np.array(json.loads(out)["x"])
        # --t auto settles the slowest mode to 1e-6 of its start: a relative bound on ||x - x*||.
        assert _rel(x, xs) <= 1e-6, (topology, _rel(x, xs))
    # Without scaling the same command is the old error, still one line.
    rc, out, err = _cli(
        capsys,
        "solve",
        "--A",
        tmp_path / "A.npy",
        "--b",
        tmp_path / "b.npy",
        "--topology",
        "dense",
        "--t",
        "auto",
        "--no-autoscale",
    )
    assert rc != 0 and "below r_min" in err and len(err.strip().splitlines()) == 1


def test_no_fitting_scale_and_too_wide_a_range_are_one_line_errors(capsys, tmp_path):
    np.save(tmp_path / "b.npy", np.ones(2))
    # The entries span 1e8 > r_max/r_min = 1e7: the small one would be open and A singular.
    np.save(tmp_path / "wide.npy", np.diag([1.0, 1e-8]))
    rc, out, err = _cli(capsys, "solve", "--A", tmp_path / "wide.npy", "--b", tmp_path / "b.npy")
    assert rc != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "the entries span 1e+08" in err and "ratio >= 1e+08" in err, err
    # A needs s >= 1e4 (largest entry at r_min) but a DAC for b = 1e-6 cannot go below s = 1e-2.
    np.save(tmp_path / "big.npy", 1e6 * np.eye(2))
    np.save(tmp_path / "tiny_b.npy", 1e-6 * np.ones(2))
    rc, out, err = _cli(capsys, "report", "--A", tmp_path / "big.npy", "--b", tmp_path / "tiny_b.npy")
    assert rc != 0 and len(err.strip().splitlines()) == 1
    assert "no circuit scale fits: max |A| = 1e+06 needs s >= 1e+04" in err and "s <= 0.01" in err, err


def test_acceptance_issue_10_factored_accepts_a_softmax_ggn_factor(capsys, tmp_path):
    """U = J^T S with S the full square root of a softmax Hessian: each sample's null direction gives
    a column of ~1e-9 entries (sqrt of a round-off eigenvalue), which used to fail as 'above r_max'."""
    rng = np.random.default_rng(10)
    g = random_ggn_problem(8, 2, 4, 0.1, rng)
    w, V = np.linalg.eigh(g.H)
    U = g.J.T @ (V * np.sqrt(np.clip(w, 0, None)))  # all 8 columns, the null ones included
    assert (np.abs(U).max(axis=0) < 1e-6).sum() >= 2
    np.save(tmp_path / "U.npy", U)
    np.save(tmp_path / "b.npy", g.b)
    rc, out, err = _cli(
        capsys,
        "solve",
        "--U",
        tmp_path / "U.npy",
        "--lam",
        "0.1",
        "--b",
        tmp_path / "b.npy",
        "--topology",
        "factored",
        "--backend",
        "ngspice",
        "--t",
        "auto",
        "--json",
    )
    assert rc == 0, err
    res = json.loads(out)
    rep = res["report"]
    xs = np.linalg.solve(0.1 * np.eye(8) + U @ U.T, g.b)
    assert rep["open_cells"]["columns_dropped"] >= 2
    predicted = rep["quantisation"]["steady_state_rel_error"]  # as built: the open cells only here
    assert predicted == pytest.approx(
        rep["open_cells"]["steady_state_rel_error"], rel=1e-6, abs=1e-12
    )  # both round-off here
    assert predicted <= rep["open_cells"]["bound"]
    # ngspice against the direct solve: within the predicted error plus the transient (<= 1e-6).
    assert _rel(np.array(res["x"]), xs) <= predicted + 1e-6


def test_open_cells_in_every_array_are_counted_and_bounded():
    """A tiny entry in every programmed array of the crossbar is left open; the report counts it
    and its error, and a bound below that error turns it into the one-line failure."""
    rng = np.random.default_rng(3)
    J = rng.normal(size=(6, 5))
    J[0, 0] = 1e-7 * np.abs(J).max()
    H = np.eye(6) + 0.1 * (np.eye(6, k=1) + np.eye(6, k=-1))
    H[0, 2] = H[2, 0] = 1e-8
    p = GGNProblem(J, H, 0.5, rng.normal(size=5))
    c = build(p, "crossbar")
    opened = {k: a.opened for k, a in c.record.arrays.items()}
    assert opened["J"] == 1 and opened["Jt"] == 1 and opened["H"] == 2, opened
    rep = SPU("ngspice", topology="crossbar").run(p, t="auto").report
    assert rep["open_cells"]["count"] == 4
    err = rep["open_cells"]["steady_state_rel_error"]
    assert 0 < err < 1e-6
    with pytest.raises(DesignError, match="left open"):
        build(p, "crossbar", Design(open_error_max=err / 2))
