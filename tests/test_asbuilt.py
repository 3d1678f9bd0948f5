"""The asbuilt backend against ngspice (same design, same seed), against ou (ideal design), and its
noise against theory: the realised system's own stationary law (Lyapunov) and ngspice's samples."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from physics import asbuilt_against_ngspice, problem, sampled_mean_cov_sigma
from scipy import stats
from scipy.linalg import solve_continuous_lyapunov

from circuits.design import Design, OpAmp
from circuits.realised import realise
from circuits.topologies import build
from spu import SPU
from spu.backends.asbuilt import transition
from spu.core.errors import DesignError, ThermospiceError, UnstableCircuitError
from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem

KIND = {"factored": "factored", "crossbar": "ggn"}
DESIGNS = {
    "quantised": Design(bits_r=6, bits_dac=6, bits_adc=14),
    "toleranced": Design(tol_r=0.05, tol_c=0.05, component_seed=3),
    "finite-gain": Design(opamp=OpAmp(gain=100.0)),
    "all": Design(bits_r=5, tol_r=0.03, tol_c=0.03, opamp=OpAmp(gain=300.0), component_seed=1),
}


def realised_matrix(rs):
    """The realised drift W^-1 (D + P Q), dense (small test circuits only)."""
    return (np.diag(rs.D) + rs.P @ rs.Q) / rs.w[:, None]


@pytest.mark.parametrize("topology", ["factored", "crossbar"])
def test_values_are_the_netlists(topology):
    """The value builder places exactly the netlist's components: same quantisation, same seeded
    tolerance draws, in the same order."""
    p = problem(KIND[topology], 10, seed=2)
    d = Design(bits_r=7, tol_r=0.02, tol_c=0.02, component_seed=5)
    rs_builder = build(p, topology, d, builder=__import__("circuits.realised", fromlist=["ValueBuilder"]).ValueBuilder)
    net = build(p, topology, d)
    assert rs_builder.record.resistor_roles == net.record.resistor_roles
    for a, b in zip(rs_builder.record.resistors, net.record.resistors):
        assert np.array_equal(a, b)
    assert np.array_equal(rs_builder.record.capacitors, net.record.capacitors)
    # With ideal op-amps the realised drift is the circuit's own AsBuilt matrix.
    rs = realise(p, topology, d)
    assert np.allclose(np.diag(rs.D) + rs.P @ rs.Q, net.as_built.matrix(), rtol=0, atol=1e-12)
    # Independent tolerances of the two arrays: not symmetric, and not symmetrised.
    A = rs.P @ rs.Q
    assert np.abs(A - A.T).max() > 1e-3 * np.abs(A).max()


@pytest.mark.parametrize("topology", ["factored", "crossbar"])
def test_ideal_design_equals_ou(topology):
    p = problem(KIND[topology], 12, seed=3)
    x0 = np.random.default_rng(1).normal(size=p.n)
    times = np.linspace(0.0, 5.0, 11)
    a = SPU("asbuilt", topology=topology).run(p, t=5.0, x0=x0, times=times)
    o = SPU("ou").run(p, t=5.0, x0=x0, times=times)
    assert a.extra["exact"]
    assert np.abs(a.trajectory - o.trajectory).max() < 1e-10
    assert np.abs(a.x - o.x).max() < 1e-10


def test_scaled_circuit_runs_in_problem_time():
    """lam = 400 does not fit [r_min, r_max] at scale 1: the circuit realises (A/s) x = b/s with
    s circuit tau per problem tau (circuits/scaling.py); asbuilt still equals ou in problem time."""
    from spu.core.problems import FactoredProblem

    rng = np.random.default_rng(0)
    p = FactoredProblem(rng.normal(size=(10, 3)) * 30, 400.0, rng.normal(size=10) * 50)
    assert build(p, "factored").scale > 1
    x0 = rng.normal(size=10)
    times = np.linspace(0.0, 0.05, 6)
    a = SPU("asbuilt", topology="factored").run(p, t=0.05, x0=x0, times=times)
    o = SPU("ou").run(p, t=0.05, x0=x0, times=times)
    assert np.abs(a.trajectory - o.trajectory).max() < 1e-10 * np.abs(o.trajectory).max()


@pytest.mark.parametrize("topology", ["factored", "crossbar"])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_trajectory_matches_ngspice(topology, name):
    design = DESIGNS[name]
    p = problem(KIND[topology], 8, seed=4)
    x0 = np.random.default_rng(2).normal(size=p.n)
    times = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    ab, ng, bound, ideal = asbuilt_against_ngspice(p, topology, design, x0, times, 4.0)
    err = np.abs(ab - ng).max(axis=1)
    assert (err <= bound).all(), f"{name} {topology}: |asbuilt - ngspice| {err} > bound {bound}"
    # Power: the design's errors are far larger than the tolerance, so a backend that ignored
    # them (the ideal ou) fails the same comparison once the start has decayed.
    assert np.abs(ideal[-1] - ng[-1]).max() > 10 * bound[-1]


def _independent_samples(prop, K, gap, rng, x_start):
    X = np.empty((K, x_start.shape[0]))
    x = x_start
    for k in range(K):
        x = prop.advance(x, gap, rng)
        X[k] = x
    return X


def test_stationary_noise_matches_lyapunov_with_chain_johnson_noise():
    """Johnson noise inside the chain (summers, inverters) plus kappa0, tolerances and finite gain:
    the sample covariance of (nearly) independent states against the Lyapunov solution of the
    realised system, with the sampling sigma of K independent Gaussian samples."""
    # A small C and v_unit make kT/(C v_unit^2) ~ 0.4: Johnson noise as large as kappa0.
    d = Design(
        tol_r=0.1,
        tol_c=0.1,
        opamp=OpAmp(gain=30.0),
        temperature=300.0,
        C=1e-12,
        R0=1e6,
        v_unit=1e-4,
        r_max=1e12,
        v_fullscale=1e-3,
        component_seed=2,
    )
    p = problem("factored", 4, seed=6)
    rs, prop = transition(p, "factored", d, 0.05)
    assert rs.Sn is not None and np.diag(rs.Sn).max() > 0.1 * rs.q_cell.max()  # the chain noise matters
    A = realised_matrix(rs)
    noise = (np.diag(rs.q_cell) + rs.Wn @ rs.Sn @ rs.Wn.T) / np.outer(rs.w, rs.w)
    S = solve_continuous_lyapunov(A, noise)
    lam_min = np.linalg.eigvals(A).real.min()
    K = 3000
    X = _independent_samples(prop, K, 8.0 / lam_min, np.random.default_rng(0), prop.mean)
    sigma = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / K)
    z = (np.cov(X.T) - S) / sigma
    assert np.abs(z).max() < 4.5, f"covariance z-scores {np.abs(z).max():.2f}"
    # Power: leaving the chain noise out would be visible.
    S0 = solve_continuous_lyapunov(A, np.diag(rs.q_cell) / rs.w**2)
    assert np.abs((np.cov(X.T) - S0) / sigma).max() > 4.5
    chi2 = (X.mean(0) - prop.mean) @ np.linalg.solve(S / K, X.mean(0) - prop.mean)
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=p.n)


def test_noise_statistics_match_ngspice():
    """kappa0 noise on a quantised factored circuit (6-bit arrays: A_eff = D + U_q U_q^T stays
    symmetric): asbuilt and ngspice samples both against kappa0 A_eff^-1, and against each other."""
    p = problem("factored", 3, seed=8)
    d = Design(bits_r=6, noise_dt=0.05, dt_max=0.05)
    rs = realise(p, "factored", d)
    A = realised_matrix(rs)
    assert np.abs(A - A.T).max() < 1e-12
    kappa, T, burn, dt = 0.05, 600.0, 20.0, 0.25
    times = np.arange(burn, T, dt)
    x_star = np.linalg.solve(A, rs.b)
    # ngspice with held (TRRANDOM) noise: white up to the hold. Its table noise (linear between
    # knots, the i8engine default) read C_00 4.7 sigma low at this seed (one run, not investigated:
    # reported to the engine's owners).
    runs = {
        "ngspice": SPU("ngspice", topology="factored", design=d, kappa0=kappa, seed=7, noise="held").run(
            p, t=T, x0=x_star, times=times
        ),
        "asbuilt": SPU("asbuilt", topology="factored", design=d, kappa0=kappa, seed=7).run(
            p, t=T, x0=x_star, times=times
        ),
    }
    mean_cov, cov_sigma = sampled_mean_cov_sigma(A, kappa, dt, len(times))
    C = {b: np.cov(r.trajectory.T) for b, r in runs.items()}
    for b, r in runs.items():
        err = r.trajectory.mean(0) - x_star
        assert err @ np.linalg.solve(mean_cov, err) < stats.chi2.ppf(1 - 1e-4, df=p.n), b
        z = (C[b] - kappa * np.linalg.inv(A)) / cov_sigma
        assert np.abs(z).max() < 4.0, f"{b}: covariance z-scores {np.abs(z).max():.2f}"
    # Two independent estimates: their difference has sigma sqrt(2) cov_sigma.
    assert np.abs((C["ngspice"] - C["asbuilt"]) / (np.sqrt(2) * cov_sigma)).max() < 4.0
    # Power: a 20 % wrong kappa would fail.
    assert np.abs((C["asbuilt"] - 1.2 * kappa * np.linalg.inv(A)) / cov_sigma).max() > 4.0


def test_unstable_circuit_is_a_clear_error():
    """A crossbar whose quantised H is no longer positive semi-definite has a growing mode."""
    J = np.hstack([np.eye(2), np.zeros((2, 2))])
    H = np.array([[1.0, -0.6], [-0.6, 0.4]])  # PSD (det 0.04); 2 bits round it to det 1/3 - 4/9 < 0
    p = GGNProblem(J, H, 1e-3, np.ones(4))
    with pytest.raises(UnstableCircuitError, match="unstable"):
        SPU("asbuilt", topology="crossbar", design=Design(bits_r=2)).run(p, t=1.0)


def test_bad_requests_name_the_problem():
    p = problem("factored", 4, seed=1)
    with pytest.raises(ThermospiceError, match="dense"):
        SPU("asbuilt").run(DenseProblem(np.eye(3), np.ones(3)), t=1.0)
    with pytest.raises(DesignError, match="bandwidth"):
        SPU("asbuilt", design=Design(opamp=OpAmp(gain=1e4, gbw=1e7))).run(p, t=1.0)
    with pytest.raises(ThermospiceError, match="topolog"):
        SPU("asbuilt", topology="dense").run(p, t=1.0)


def test_cli_solve_asbuilt(tmp_path):
    p = problem("factored", 6, seed=9)
    np.save(tmp_path / "U.npy", p.U)
    np.save(tmp_path / "b.npy", p.b)
    cmd = [
        sys.executable,
        "-m",
        "analysis.cli",
        "solve",
        "--backend",
        "asbuilt",
        "--topology",
        "factored",
        "--U",
        str(tmp_path / "U.npy"),
        "--lam",
        str(p.lam),
        "--b",
        str(tmp_path / "b.npy"),
        "--t",
        "3",
        "--bits-r",
        "8",
        "--bits-dac",
        "8",
        "--bits-adc",
        "10",
        "--tol-r",
        "0.01",
        "--tol-c",
        "0.01",
        "--opamp-gain",
        "1e4",
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    x = np.array(json.loads(out.stdout)["x"])
    d = Design(bits_r=8, bits_dac=8, bits_adc=10, tol_r=0.01, tol_c=0.01, opamp=OpAmp(gain=1e4))
    want = SPU("asbuilt", topology="factored", design=d).run(p, t=3.0).x
    assert np.array_equal(x, want)


def test_train_sweep_writes_rows_and_resumes(tmp_path):
    """One TNGD step per run keeps it short: the asbuilt run, the ou and Adam references, CSV and
    PNG; a rerun finds every run done; a bad setting is refused before any run starts."""
    from analysis.train_sweeps import run_train_sweep
    from spu.core.errors import ThermospiceError as TE

    res = run_train_sweep("train-bits", str(tmp_path), settings=[8], seeds=1, steps=1, workers=1, progress=False)
    rows = list(csv_rows(res["csv"]))
    assert {r["run"] for r in rows} == {"asbuilt", "ou", "adam"}
    assert all(r["status"] == "ok" and np.isfinite(float(r["final_train_loss"])) for r in rows)
    assert (tmp_path / "train-bits.png").stat().st_size > 0
    again = run_train_sweep("train-bits", str(tmp_path), settings=[8], seeds=1, steps=1, workers=1, progress=False)
    assert again["computed"] == 0
    with pytest.raises(TE):
        run_train_sweep("train-bits", str(tmp_path / "bad"), settings=[40], seeds=1, steps=1, workers=1)


def csv_rows(path):
    import csv

    with open(path) as fh:
        yield from csv.DictReader(fh)


def test_every_column_dropped_leaves_the_diagonal_alone():
    """A saturated softmax can make every column of U negligible: the circuit then has no chain
    (rank 0) and asbuilt must relax to b/lam, not fail on an empty m x m eigenproblem."""
    n = 30
    b = np.random.default_rng(0).standard_normal(n)
    p = FactoredProblem(np.full((n, 3), 1e-14), 1.0, b)
    d = Design(bits_r=16, r_max=1e9, open_error_max=1e-2)
    r = SPU("asbuilt", design=d).run(p, t=50.0, x0=np.zeros(n))
    assert r.extra["rank"] == 0
    np.testing.assert_allclose(r.x, b, rtol=1e-9, atol=1e-12)  # e^-50 of the start is left
