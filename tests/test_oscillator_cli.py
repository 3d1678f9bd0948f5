"""Command line of the oscillator SPU: `solve/netlist/report --topology oscillator`, `solve --backend
langevin` and `thermospice sample`. In-process through analysis.cli.main, plus one subprocess call
of the installed script; every error is one line on stderr without a traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cases import assert_one_line_error, call, needs_ngspice

from spu import DenseProblem
from spu.core.underdamped import OscillatorParams
from spu.sampling import theory


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(1)
    M = rng.uniform(-1, 1, (4, 4))
    A = M @ M.T / 4 + 0.5 * np.eye(4)
    assert (A < 0).any()
    paths = {"dir": str(tmp_path)}
    for name, arr in (
        ("A", A),
        ("b", np.array([0.7, -1.2, 0.3, 0.9])),
        ("b0", np.zeros(3)),
        ("Acap", np.array([[1.0, -0.3, -0.2], [-0.3, 0.9, -0.4], [-0.2, -0.4, 1.1]])),
        ("U", rng.uniform(-1, 1, (4, 2))),
    ):
        np.save(tmp_path / f"{name}.npy", arr)
        paths[name] = str(tmp_path / f"{name}.npy")
    return paths


@needs_ngspice
def test_solve_topology_oscillator_json(capsys, files):
    A, b = np.load(files["A"]), np.load(files["b"])
    rc, out, err = call(
        capsys,
        "solve",
        "--A",
        files["A"],
        "--b",
        files["b"],
        "--topology",
        "oscillator",
        "--zeta",
        "0.8",
        "--t",
        "80",
        "--json",
    )
    assert rc == 0, err
    res = json.loads(out)
    assert res["topology"] == "oscillator"
    np.testing.assert_allclose(res["x"], np.linalg.solve(A, b), rtol=1e-6)
    assert res["report"]["timing"]["zeta_max"] == pytest.approx(0.8)


@needs_ngspice
def test_solve_factored_form_on_oscillator_and_langevin_backend(capsys, files):
    U, b = np.load(files["U"]), np.load(files["b"])
    A = 0.5 * np.eye(4) + U @ U.T
    rc, out, err = call(
        capsys,
        "solve",
        "--U",
        files["U"],
        "--lam",
        "0.5",
        "--b",
        files["b"],
        "--topology",
        "oscillator",
        "--t",
        "80",
        "--json",
    )
    assert rc == 0, err
    np.testing.assert_allclose(json.loads(out)["x"], np.linalg.solve(A, b), rtol=1e-6)
    rc, out, err = call(
        capsys,
        "solve",
        "--U",
        files["U"],
        "--lam",
        "0.5",
        "--b",
        files["b"],
        "--backend",
        "langevin",
        "--gamma",
        "0.3",
        "--t",
        "inf",
        "--json",
    )
    assert rc == 0, err
    np.testing.assert_allclose(json.loads(out)["x"], np.linalg.solve(A, b), rtol=1e-10)


@needs_ngspice
def test_netlist_and_report_take_the_oscillator_options(capsys, files, tmp_path):
    out_cir = tmp_path / "osc.cir"
    rc, out, err = call(
        capsys,
        "netlist",
        "--A",
        files["A"],
        "--b",
        files["b"],
        "--topology",
        "oscillator",
        "--mass",
        "2",
        "--zeta",
        "0.5",
        "-o",
        out_cir,
    )
    assert rc == 0, err
    text = out_cir.read_text()
    assert re.search(r"^L0 r0 s0 0\.002\b", text, re.MULTILINE)  # L = m R0^2 C = 2 mH
    p = subprocess.run(["ngspice", "-b", str(out_cir)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "error" not in (p.stdout + p.stderr).lower()
    rc, out, err = call(
        capsys, "report", "--A", files["A"], "--b", files["b"], "--topology", "oscillator", "--zeta", "0.3"
    )
    assert rc == 0 and "oscillator (resistive coupling)" in out and "damping ratio" in out


def test_sample_langevin_json_matches_theory(capsys, files):
    """Mean and inverse errors within 5 rms of their exact expectations (rms from sampling theory)."""
    A, b = np.load(files["A"]), np.load(files["b"])
    K = 3000
    rc, out, err = call(
        capsys,
        "sample",
        "--A",
        files["A"],
        "--b",
        files["b"],
        "--backend",
        "langevin",
        "--samples",
        K,
        "--kappa0",
        "0.1",
        "--seed",
        "3",
        "--theory",
        "--json",
    )
    assert rc == 0, err
    res = json.loads(out)
    th = theory(DenseProblem(A, b), OscillatorParams(), 0.1, K, res["interval_tau"])
    assert res["theory"]["inverse_rel_rms"] == pytest.approx(th["inverse_rel"])
    x = np.linalg.solve(A, b)
    assert np.linalg.norm(np.array(res["mean"]) - x) / np.linalg.norm(x) < 5 * th["mean_rel"]
    inv = np.array(res["inverse"])
    assert np.linalg.norm(inv - np.linalg.inv(A)) / np.linalg.norm(np.linalg.inv(A)) < 5 * th["inverse_rel"]
    assert len(res["ess"]) == 4 and min(res["ess"]) > 100
    assert res["dynamics"] == "oscillator-resistive"


def test_sample_writes_npy_files(capsys, files, tmp_path):
    prefix = tmp_path / "run"
    rc, out, err = call(
        capsys,
        "sample",
        "--A",
        files["A"],
        "--b",
        files["b"],
        "--backend",
        "langevin",
        "--method",
        "baoab",
        "--dt",
        "0.1",
        "--samples",
        200,
        "--interval",
        "0.5",
        "--burn-in",
        "10",
        "-o",
        prefix,
    )
    assert rc == 0, err
    for name, shape in (("mean", (4,)), ("cov", (4, 4)), ("inverse", (4, 4)), ("samples", (200, 4)), ("times", (200,))):
        arr = np.load(f"{prefix}_{name}.npy")
        assert arr.shape == shape
    times = np.load(f"{prefix}_times.npy")
    np.testing.assert_allclose(times, 10 + 0.5 * np.arange(200))
    assert "inverse = covariance / kappa0" in out and "effective sample size" in out


def test_sample_rc_backend_and_capacitive_coupling(capsys, files):
    rc, out, err = call(
        capsys, "sample", "--A", files["A"], "--b", files["b"], "--backend", "ou", "--samples", 100, "--json"
    )
    assert rc == 0, err
    assert json.loads(out)["dynamics"] == "rc"
    rc, out, err = call(
        capsys,
        "sample",
        "--A",
        files["Acap"],
        "--b",
        files["b0"],
        "--backend",
        "langevin",
        "--coupling",
        "capacitive",
        "--samples",
        500,
        "--json",
    )
    assert rc == 0, err
    res = json.loads(out)
    assert res["dynamics"] == "oscillator-capacitive"
    Ainv = np.linalg.inv(np.load(files["Acap"]))
    assert np.linalg.norm(np.array(res["inverse"]) - Ainv) / np.linalg.norm(Ainv) < 0.5


@needs_ngspice
def test_sample_ngspice_oscillator_subprocess(files):
    """The installed script, as a user runs it: a short ngspice run of the oscillator circuit."""
    exe = shutil.which("thermospice")
    cmd = ([exe] if exe else [sys.executable, "-m", "analysis.cli"]) + [
        "sample",
        "--A",
        files["A"],
        "--b",
        files["b"],
        "--topology",
        "oscillator",
        "--samples",
        "60",
        "--interval",
        "1",
        "--burn-in",
        "20",
        "--noise-dt",
        "0.1",
        "--dt-max",
        "0.1",
        "--seed",
        "5",
        "--json",
    ]
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "THERMOSPICE_DEBUG"},
    )
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["backend"] == "ngspice" and res["topology"] == "oscillator" and res["samples"] == 60
    assert res["t_tau"] == pytest.approx(79.0)
    # 60 samples of a law with spread sqrt(0.1 * diag(A^-1)): the mean lies within a few spreads.
    A, b = np.load(files["A"]), np.load(files["b"])
    assert np.abs(np.array(res["mean"]) - np.linalg.solve(A, b)).max() < 1.0


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--kappa0", "0"], "kappa0 must be > 0"),
        (["--samples", "1"], "samples must be an integer >= 2"),
        (["--interval", "-1"], "interval"),
        (["--burn-in", "nan"], "burn_in"),
        (["--backend", "ou", "--zeta", "0.5"], "only apply to --topology oscillator"),
        (["--backend", "ou", "--topology", "oscillator"], "topology only applies"),
        (["--backend", "ou", "--method", "baoab"], "--method applies"),
        (["--backend", "direct", "--dt", "0.1"], "--dt applies"),
        (["--backend", "langevin", "--zeta", "-1"], "zeta must be"),
        (["--backend", "langevin", "--gamma", "1", "--zeta", "1"], "not both"),
        (["--backend", "langevin", "--coupling", "capacitive"], "cannot solve A x = b"),
        (["--backend", "langevin", "-o", "/nonexistent/dir/x"], "does not exist"),
    ],
)
def test_sample_errors_are_one_line(capsys, files, extra, needle):
    base = ["sample", "--A", files["A"], "--b", files["b"], "--samples", "10"]
    if "--samples" in extra:
        base = base[:-2]
    if "--backend" not in extra:
        base += ["--backend", "langevin"]
    rc, out, err = call(capsys, *base, *extra)
    assert_one_line_error(rc, out, err, needle)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--topology", "dense", "--zeta", "0.5"], "only apply to --topology oscillator"),
        (["--topology", "oscillator", "--coupling", "capacitive"], "cannot encode b"),
        (["--topology", "oscillator", "--mass", "1e5"], "inductor range"),
        (["--topology", "oscillator", "--gamma", "0.001"], "damping resistor"),
    ],
)
@needs_ngspice
def test_solve_oscillator_errors_are_one_line(capsys, files, extra, needle):
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"], *extra)
    assert_one_line_error(rc, out, err, needle)
