"""The command-line contract of `thermospice solve | netlist | report`.

Checked from the outside (a subprocess running the installed `thermospice` script) where the exit
status, stderr or environment matter, and in-process through analysis.cli.main (same code, ~1 s
less per call) for the long list of bad inputs. Every error must be: exit status != 0, exactly one
line on stderr that names the problem, no traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from cases import assert_one_line_error, call, needs_ngspice
from scipy.linalg import expm

from circuits.design import Design
from spu.core.softmax import softmax, softmax_ce_hessian

pytestmark = needs_ngspice

TAU = 1e-6
JSON_KEYS = {"x", "backend", "topology", "analog_time_s", "wall_time_s", "device_time_s"}
# What plain `ngspice -b` prints when something is wrong (it may still exit 0).
NGSPICE_BAD = re.compile(
    r"^\s*error\b|warning|aborted|fatal|no simulations run|not parsed|unknown|"
    r"can't find|cannot",
    re.IGNORECASE | re.MULTILINE,
)


# -- problems -------------------------------------------------------------------------------------
def spd_mixed(n: int, seed: int) -> np.ndarray:
    """SPD with both signs off the diagonal and entries well inside the resistor range."""
    rng = np.random.default_rng(seed)
    M = rng.uniform(-1, 1, (n, n))
    A = M @ M.T / n + np.eye(n)
    assert (A < 0).any() and (A > 0).any()
    return A


def softmax_ggn(n: int = 5, batch: int = 2, dz: int = 3, lam: float = 0.5, seed: int = 0):
    """A tiny TNGD system: J (batch*dz x n), H = blockdiag(diag(p) - p p^T), lam, b."""
    rng = np.random.default_rng(seed)
    J = rng.uniform(-1, 1, (batch * dz, n))
    H = softmax_ce_hessian([softmax(rng.standard_normal(dz)) for _ in range(batch)])
    b = rng.uniform(-1, 1, n)
    return J, H, lam, b


@pytest.fixture
def files(tmp_path):
    """Write the arrays of a dense, a factored and a GGN problem; return name -> path."""
    paths = {}

    def save(name, arr):
        path = tmp_path / f"{name}.npy"
        np.save(path, arr)
        paths[name] = str(path)
        return str(path)

    A = spd_mixed(4, 1)
    save("A", A)
    save("b", np.array([0.7, -1.2, 0.3, 0.9]))
    save("x0", np.array([1.0, -0.5, 0.25, 0.0]))
    rng = np.random.default_rng(2)
    save("U", rng.uniform(-1, 1, (4, 2)))
    J, H, lam, b5 = softmax_ggn()
    save("J", J)
    save("H", H)
    save("b5", b5)
    paths["lam_ggn"] = str(lam)
    paths["dir"] = str(tmp_path)
    return paths


def run_cli(*args, env=None, timeout=120):
    """The installed console script, as an outside user calls it."""
    exe = shutil.which("thermospice") or None
    cmd = [exe, *args] if exe else [sys.executable, "-m", "analysis.cli", *args]
    full_env = dict(os.environ)
    full_env.pop("THERMOSPICE_DEBUG", None)
    full_env.update(env or {})
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return p.returncode, p.stdout, p.stderr


def solve_json(capsys, *args):
    rc, out, err = call(capsys, "solve", *args, "--json")
    assert rc == 0, err
    res = json.loads(out)  # stdout is exactly one JSON object
    assert JSON_KEYS <= set(res), set(res)
    assert all(isinstance(v, float) for v in res["x"])
    return res


# -- solve: the JSON contract and the answer ------------------------------------------------------
def test_solve_json_subprocess_matches_numpy(files):
    rc, out, err = run_cli("solve", "--A", files["A"], "--b", files["b"], "--json")
    assert rc == 0, err
    assert "Traceback" not in err
    res = json.loads(out)
    assert JSON_KEYS <= set(res)
    x_ref = np.linalg.solve(np.load(files["A"]), np.load(files["b"]))
    np.testing.assert_allclose(res["x"], x_ref, rtol=1e-6, atol=1e-9)
    assert res["backend"] == "ngspice" and res["topology"] == "dense"
    assert res["analog_time_s"] == pytest.approx(50 * TAU)
    assert res["wall_time_s"] > 0 and res["device_time_s"] >= res["analog_time_s"]


@pytest.mark.parametrize("backend", ["ngspice", "ou", "euler", "direct"])
def test_every_backend_solves_dense(capsys, files, backend):
    res = solve_json(capsys, "--A", files["A"], "--b", files["b"], "--backend", backend, "--t", "60")
    x_ref = np.linalg.solve(np.load(files["A"]), np.load(files["b"]))
    np.testing.assert_allclose(res["x"], x_ref, rtol=1e-6, atol=1e-9)
    assert res["backend"] == backend
    assert res["analog_time_s"] == pytest.approx(60 * TAU)


@pytest.mark.parametrize("topology", ["ideal", "dense"])
def test_dense_topologies(capsys, files, topology):
    res = solve_json(capsys, "--A", files["A"], "--b", files["b"], "--topology", topology)
    assert res["topology"] == topology
    np.testing.assert_allclose(
        res["x"], np.linalg.solve(np.load(files["A"]), np.load(files["b"])), rtol=1e-6, atol=1e-9
    )


@pytest.mark.parametrize("topology", [None, "factored", "dense", "ideal"])
def test_factored_form(capsys, files, topology):
    U, b, lam = np.load(files["U"]), np.load(files["b"]), 0.4
    args = ["--U", files["U"], "--lam", lam, "--b", files["b"]]
    res = solve_json(capsys, *args, *(["--topology", topology] if topology else []))
    assert res["topology"] == (topology or "factored")
    A = lam * np.eye(4) + U @ U.T
    np.testing.assert_allclose(res["x"], np.linalg.solve(A, b), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("topology", [None, "crossbar", "factored", "dense"])
def test_ggn_form(capsys, files, topology):
    J, H, lam = np.load(files["J"]), np.load(files["H"]), float(files["lam_ggn"])
    b = np.load(files["b5"])
    args = ["--J", files["J"], "--H", files["H"], "--lam", lam, "--b", files["b5"]]
    res = solve_json(capsys, *args, *(["--topology", topology] if topology else []))
    assert res["topology"] == (topology or "crossbar")
    A = J.T @ H @ J + lam * np.eye(J.shape[1])
    np.testing.assert_allclose(res["x"], np.linalg.solve(A, b), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backend", ["ngspice", "ou"])
def test_x0_and_short_time_follow_the_mean_trajectory(capsys, files, backend):
    A, b, x0 = np.load(files["A"]), np.load(files["b"]), np.load(files["x0"])
    t = 0.5
    res = solve_json(capsys, "--A", files["A"], "--b", files["b"], "--x0", files["x0"], "--t", t, "--backend", backend)
    xs = np.linalg.solve(A, b)
    ref = expm(-A * t) @ (x0 - xs) + xs
    # ngspice: within its time-step error (dt_max = 0.01 tau); ou is exact.
    np.testing.assert_allclose(res["x"], ref, atol=1e-3 if backend == "ngspice" else 1e-10)
    assert res["analog_time_s"] == pytest.approx(t * TAU)


def test_t_zero_returns_x0(capsys, files):
    res = solve_json(capsys, "--A", files["A"], "--b", files["b"], "--x0", files["x0"], "--t", 0)
    np.testing.assert_array_equal(res["x"], np.load(files["x0"]))


def test_noise_seed_reproducible_including_seed_zero(capsys, files):
    base = ["--A", files["A"], "--b", files["b"], "--t", 5, "--kappa0", 0.05]
    x = {s: solve_json(capsys, *base, "--seed", s)["x"] for s in (0, 7)}
    assert solve_json(capsys, *base, "--seed", 0)["x"] == x[0]  # ngspice skips seed=0: must be mapped
    assert solve_json(capsys, *base, "--seed", 7)["x"] == x[7]
    assert x[0] != x[7]
    # The noise is real and of the right order (stationary sd ~ sqrt(kappa0 / lambda)).
    dev = np.abs(np.array(x[7]) - np.linalg.solve(np.load(files["A"]), np.load(files["b"])))
    assert 1e-4 < dev.max() < 2.0


def test_temperature_adds_tiny_johnson_noise(capsys, files):
    base = ["--A", files["A"], "--b", files["b"], "--t", 5, "--seed", 3]
    hot = np.array(solve_json(capsys, *base, "--temperature", 300)["x"])
    cold = np.array(solve_json(capsys, *base)["x"])
    # kT/C at 1 nF is ~(2 uV)^2: visible, but far below the signal.
    assert 0 < np.abs(hot - cold).max() < 1e-3


def test_plain_text_output(capsys, files):
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"], "--backend", "direct")
    assert rc == 0, err
    assert "x = [" in out and "backend direct" in out


# -- impossible pairings --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "form, topology, needle",
    [
        ("A", "crossbar", "crossbar.*GGN"),
        ("A", "factored", "factored.*(U|GGN)"),
        ("U", "crossbar", "crossbar.*GGN"),
    ],
)
def test_impossible_topology_pairings(capsys, files, form, topology, needle):
    args = {"A": ["--A", files["A"]], "U": ["--U", files["U"], "--lam", 0.3]}[form]
    rc, out, err = call(capsys, "solve", *args, "--b", files["b"], "--topology", topology)
    assert_one_line_error(rc, out, err, needle)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--U", "U", "--lam", "0.3"], "exactly one problem form"),
        (["--lam", "0.3"], "--lam"),
        (["--backend", "ou", "--topology", "dense"], "topology"),
        (["--topology", "tree"], "invalid choice"),
        (["--backend", "gpu"], "invalid choice"),
    ],
)
def test_bad_option_combinations(capsys, files, extra, needle):
    extra = [files["U"] if e == "U" else e for e in extra]
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"], *extra)
    assert_one_line_error(rc, out, err, re.escape(needle) if needle.startswith("-") else needle)


def test_ggn_form_needs_both_j_and_h(capsys, files):
    rc, out, err = call(capsys, "solve", "--J", files["J"], "--lam", 0.1, "--b", files["b5"])
    assert_one_line_error(rc, out, err, "--J and --H")


# -- bad input: every one exits non-zero with ONE line naming the problem -----------------------
def _bad_arrays(d):
    """name -> (array to save as A / b / x0 ..., regex the error must contain)."""
    A = spd_mixed(3, 5)
    nan, inf = A.copy(), A.copy()
    nan[1, 2] = nan[2, 1] = np.nan
    inf[0, 0] = np.inf
    nonsym = A.copy()
    nonsym[0, 1] += 0.5
    return {
        "nonsquare": (np.ones((3, 2)), r"square.*\(3, 2\)"),
        "nonsym": (nonsym, r"not symmetric.*A\[0,1\]"),
        "not_pd": (
            np.array([[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]]),
            r"not positive definite.*smallest eigenvalue is -1\b",
        ),
        "nan": (nan, r"A contains NaN.*\(1, 2\)"),
        "inf": (inf, r"A contains inf.*\(0, 0\)"),
        "3d": (np.ones((3, 3, 3)), r"2-D"),
        "complex": (A.astype(complex) + 1j, r"complex"),
        "text": (np.array([["1", "0", "0"], ["0", "1", "0"], ["0", "0", "1"]]), r"not numbers"),
    }


@pytest.mark.parametrize("case", ["nonsquare", "nonsym", "not_pd", "nan", "inf", "3d", "complex", "text"])
def test_bad_matrix(capsys, tmp_path, case):
    arr, needle = _bad_arrays(tmp_path)[case]
    np.save(tmp_path / "Abad.npy", arr)
    np.save(tmp_path / "b3.npy", np.ones(3))
    rc, out, err = call(capsys, "solve", "--A", tmp_path / "Abad.npy", "--b", tmp_path / "b3.npy")
    assert_one_line_error(rc, out, err, needle)


def test_not_pd_names_smallest_eigenvalue_value(capsys, tmp_path):
    A = np.diag([2.0, 1.0, -0.125])
    np.save(tmp_path / "Aneg.npy", A)
    np.save(tmp_path / "b3.npy", np.ones(3))
    rc, out, err = call(capsys, "solve", "--A", tmp_path / "Aneg.npy", "--b", tmp_path / "b3.npy")
    assert_one_line_error(rc, out, err, r"smallest eigenvalue is -0\.125")


@pytest.mark.parametrize(
    "case, needle",
    [
        ("b_length", r"b has length 5.*needs length 4"),
        ("b_nan", r"b contains NaN"),
        ("b_inf", r"b contains inf"),
        ("b_2d", r"b must be 1-D"),
        ("x0_length", r"x0 .*shape \(3,\).*n = 4"),
        ("x0_nan", r"x0 contains NaN"),
        ("x0_inf", r"x0 contains inf"),
    ],
)
def test_bad_vectors(capsys, files, tmp_path, case, needle):
    vec = {
        "b_length": np.ones(5),
        "b_nan": np.array([1, np.nan, 0, 0]),
        "b_inf": np.array([1, 0, -np.inf, 0]),
        "b_2d": np.ones((4, 1)),
        "x0_length": np.ones(3),
        "x0_nan": np.array([0, 0, 0, np.nan]),
        "x0_inf": np.array([np.inf, 0, 0, 0]),
    }[case]
    np.save(tmp_path / "v.npy", vec)
    if case.startswith("b"):
        args = ["--A", files["A"], "--b", tmp_path / "v.npy"]
    else:
        args = ["--A", files["A"], "--b", files["b"], "--x0", tmp_path / "v.npy"]
    rc, out, err = call(capsys, "solve", *args)
    assert_one_line_error(rc, out, err, needle)


@pytest.mark.parametrize(
    "case, needle",
    [
        ("H_vs_J", r"H has shape \(5, 5\).*J has 6 rows"),
        ("H_nonsym", r"H is not symmetric"),
        ("H_not_psd", r"H is not positive semidefinite.*smallest eigenvalue"),
        ("b_vs_J", r"b has length 4.*J of shape \(6, 5\)"),
        ("U_rows", r"b has length 4.*U of shape \(5, 2\)"),
        ("lam_zero", r"lam must be finite and > 0"),
    ],
)
def test_bad_factored_and_ggn(capsys, files, tmp_path, case, needle):
    H = np.load(files["H"])
    if case == "U_rows":
        np.save(tmp_path / "U5.npy", np.ones((5, 2)))
        args = ["--U", tmp_path / "U5.npy", "--lam", 0.3, "--b", files["b"]]
    else:
        b, lam = files["b5"], files["lam_ggn"]
        if case == "H_vs_J":
            H = np.eye(5)
        elif case == "H_nonsym":
            H = H.copy()
            H[0, 3] = 0.2
        elif case == "H_not_psd":
            H = -np.eye(6)
        elif case == "b_vs_J":
            b = files["b"]
        elif case == "lam_zero":
            lam = "0"
        np.save(tmp_path / "Hbad.npy", H)
        args = ["--J", files["J"], "--H", tmp_path / "Hbad.npy", "--lam", lam, "--b", b]
    rc, out, err = call(capsys, "solve", *args)
    assert_one_line_error(rc, out, err, needle)


def test_values_outside_resistor_range(capsys, tmp_path, files):
    # A tiny off-diagonal entry needs R = R0/|a| = 1e10 ohm > r_max = 1e8 ohm (default): it is left
    # open (issue 10), its 1e-7 error being within the default bound, and with a tighter bound it
    # is the one-line error naming it.
    A = np.eye(3)
    A[0, 1] = A[1, 0] = 1e-7
    np.save(tmp_path / "Atiny.npy", A)
    np.save(tmp_path / "b3.npy", np.ones(3))
    rc, out, err = call(capsys, "solve", "--A", tmp_path / "Atiny.npy", "--b", tmp_path / "b3.npy")
    assert rc == 0, err
    rc, out, err = call(
        capsys, "solve", "--A", tmp_path / "Atiny.npy", "--b", tmp_path / "b3.npy", "--open-error-max", "1e-9"
    )
    assert_one_line_error(rc, out, err, r"left open .*A\[0,1\] = 1e-07 \(R above r_max\)")
    # Ordinary entries (spanning 30) with a small --r-max: the scale that places them all (the
    # largest near r_min) solves it; with r_max/r_min = 15 too many cells are open, and the advice
    # names the bounds that place them.
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"], "--r-max", 1500, "--json")
    assert rc == 0, err
    x = np.linalg.solve(np.load(files["A"]), np.load(files["b"]))
    assert np.allclose(json.loads(out)["x"], x, rtol=0, atol=1e-6)
    narrow = ["--A", files["A"], "--b", files["b"], "--r-min", 100, "--r-max", 1500, "--json"]
    rc, out, err = call(capsys, "solve", *narrow)
    advice = r"span 30.4, r_max/r_min = 15\): widen \[r_min, r_max\] to a ratio >= 30.4: lower r_min to (\S+) or raise r_max to (\S+) "
    assert_one_line_error(rc, out, err, r"left open .*R above r_max", advice)
    r_min, r_max = re.search(advice, err).groups()
    for followed in (narrow + ["--r-min", r_min], narrow + ["--r-max", r_max]):
        rc, out, err = call(capsys, "solve", *followed)
        assert rc == 0, err
        assert np.allclose(json.loads(out)["x"], x, rtol=0, atol=1e-6)
    # A large --r-min: the scale fits the entries; without it, the entry is below r_min.
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"], "--r-min", 900, "--no-autoscale")
    assert_one_line_error(rc, out, err, r"below r_min")
    # The same through the report and netlist commands.
    np.save(tmp_path / "Awide.npy", np.diag([1.0, 1e-8, 1.0]))
    for cmd in (["report"], ["netlist", "-o", tmp_path / "x.cir"]):
        rc, out, err = call(capsys, *cmd, "--A", tmp_path / "Awide.npy", "--b", tmp_path / "b3.npy")
        assert_one_line_error(rc, out, err, r"left open .*R above r_max")


@pytest.mark.parametrize(
    "opt, value, needle",
    [
        ("--t", "-1", r"t must be >= 0"),
        ("--t", "nan", r"t must be >= 0"),
        ("--t", "inf", r"t = inf is only possible with"),
        ("--kappa0", "-0.1", r"kappa0"),
        ("--kappa0", "inf", r"kappa0"),
        ("--seed", "-3", r"seed must be a non-negative integer"),
        ("--temperature", "-5", r"temperature"),
        ("--timeout", "0", r"--timeout"),
        ("--t", "abc", r"--t: must be a number of tau or 'auto'"),
    ],
)
def test_bad_scalar_options(capsys, files, opt, value, needle):
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"], opt, value)
    assert_one_line_error(rc, out, err, needle)


def _unreadable(tmp_path):
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY\x09\x09 not really")
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.npy"
    np.save(trunc, np.eye(40))
    trunc.write_bytes(trunc.read_bytes()[:300])
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    text = tmp_path / "bad.txt"
    text.write_text("1 2\nthree 4\n")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)))
    return {
        "garbage": garbage,
        "empty": empty,
        "trunc": trunc,
        "pickled": pickled,
        "text": text,
        "binary": binary,
        "dir": tmp_path,
        "missing": tmp_path / "nope.npy",
    }


@pytest.mark.parametrize("case", ["garbage", "empty", "trunc", "pickled", "text", "binary", "dir", "missing"])
@pytest.mark.parametrize("which", ["A", "b"])
def test_missing_and_unreadable_files(capsys, files, tmp_path, case, which):
    path = _unreadable(tmp_path)[case]
    args = {"A": ["--A", path, "--b", files["b"]], "b": ["--A", files["A"], "--b", path]}[which]
    rc, out, err = call(capsys, "solve", *args)
    line = assert_one_line_error(rc, out, err, rf"--{which}\b")
    assert ("not found" in line) if case == "missing" else ("cannot read" in line)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_file_without_read_permission(capsys, files, tmp_path):
    p = tmp_path / "secret.npy"
    np.save(p, np.eye(4))
    p.chmod(0)
    rc, out, err = call(capsys, "solve", "--A", p, "--b", files["b"])
    assert_one_line_error(rc, out, err, "--A.*cannot read")


# -- ngspice itself missing, failing, hanging -----------------------------------------------------
def test_ngspice_not_installed(files):
    rc, out, err = run_cli(
        "solve", "--A", files["A"], "--b", files["b"], env={"THERMOSPICE_NGSPICE": "/nonexistent/ngspice"}
    )
    assert_one_line_error(rc, out, err, r"ngspice.*/nonexistent/ngspice.*(not|install)")


def test_ngspice_not_installed_does_not_matter_for_numeric_backends(capsys, files, monkeypatch):
    monkeypatch.setenv("THERMOSPICE_NGSPICE", "/nonexistent/ngspice")
    res = solve_json(capsys, "--A", files["A"], "--b", files["b"], "--backend", "ou")
    assert res["backend"] == "ou"


@pytest.mark.parametrize(
    "script, needle",
    [
        (
            "#!/bin/sh\necho 'Error: fake ngspice refuses this circuit' >&2\nexit 3\n",
            r"exit code 3.*fake ngspice refuses",
        ),
        ("#!/bin/sh\necho 'Error: no such vector v(x0)'\nexit 0\n", r"reported errors.*no such vector"),
        ("#!/bin/sh\nexit 0\n", r"no raw file"),
        ("#!/bin/sh\nkill -SEGV $$\n", r"signal SIGSEGV"),
    ],
)
def test_ngspice_failing(capsys, files, tmp_path, monkeypatch, script, needle):
    fake = tmp_path / "ngspice"
    fake.write_text(script)
    fake.chmod(0o755)
    monkeypatch.setenv("THERMOSPICE_NGSPICE", str(fake))
    rc, out, err = call(capsys, "solve", "--A", files["A"], "--b", files["b"])
    assert_one_line_error(rc, out, err, "ngspice", needle)


def test_ngspice_failing_subprocess(files):
    rc, out, err = run_cli(
        "solve",
        "--A",
        files["A"],
        "--b",
        files["b"],
        env={"THERMOSPICE_NGSPICE": shutil.which("false") or "/bin/false"},
    )
    assert_one_line_error(rc, out, err, r"ngspice failed with exit code 1")


def test_ngspice_timeout(files):
    # 1e6 tau at dt_max = 0.01 tau is 1e8 steps: ngspice would run for hours.
    t0 = time.monotonic()
    rc, out, err = run_cli("solve", "--A", files["A"], "--b", files["b"], "--t", "1e6", "--timeout", "1.5")
    elapsed = time.monotonic() - t0
    assert_one_line_error(rc, out, err, r"past the timeout of 1.5 s.*killed")
    assert elapsed < 30


def test_timeout_not_reached(capsys, files):
    res = solve_json(capsys, "--A", files["A"], "--b", files["b"], "--timeout", 60)
    np.testing.assert_allclose(res["x"], np.linalg.solve(np.load(files["A"]), np.load(files["b"])), rtol=1e-6)


def test_debug_env_shows_traceback_only_when_asked(files):
    rc, out, err = run_cli("solve", "--A", files["A"] + ".missing", "--b", files["b"])
    assert_one_line_error(rc, out, err, "not found")
    rc, out, err = run_cli("solve", "--A", files["A"] + ".missing", "--b", files["b"], env={"THERMOSPICE_DEBUG": "1"})
    assert rc != 0 and "Traceback" in err


# -- netlist: runs as it is in plain `ngspice -b` -------------------------------------------------
def last_printed_row(stdout: str, n: int) -> np.ndarray:
    """The final state from ngspice's `.print tran` table(s): the last row of each table, in order
    (a long .print list is split over several lines, each giving its own table)."""
    tables, cur = [], None
    for line in stdout.splitlines():
        if line.startswith("Index"):
            cur = {"cols": line.split()[2:], "last": None}
            tables.append(cur)
        elif cur is not None and re.match(r"^\d+\t", line):
            cur["last"] = [float(v) for v in line.split()[2:]]
    values = {}
    for tab in tables:
        values.update(zip(tab["cols"], tab["last"]))
    return np.array([values[f"v(x{i})"] for i in range(n)])


def run_plain_ngspice(path) -> str:
    p = subprocess.run(
        ["ngspice", "-b", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(str(path)),
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, f"ngspice -b exited {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    bad = NGSPICE_BAD.findall(p.stdout + "\n" + p.stderr)
    assert not bad, f"ngspice printed {bad}:\n{p.stderr[-2000:]}"
    return p.stdout


@pytest.mark.parametrize(
    "form, topology",
    [
        ("A", "ideal"),
        ("A", "dense"),
        ("U", "factored"),
        ("GGN", "crossbar"),
        ("GGN", "factored"),
    ],
)
def test_netlist_runs_in_plain_ngspice(capsys, files, tmp_path, form, topology):
    args = {
        "A": ["--A", files["A"], "--b", files["b"]],
        "U": ["--U", files["U"], "--lam", 0.4, "--b", files["b"]],
        "GGN": ["--J", files["J"], "--H", files["H"], "--lam", files["lam_ggn"], "--b", files["b5"]],
    }[form]
    out_path = tmp_path / "spu.cir"
    rc, out, err = call(capsys, "netlist", *args, "--topology", topology, "--t", 40, "-o", out_path)
    assert rc == 0, err
    assert str(out_path) in out and topology in out
    text = out_path.read_text()
    assert text.rstrip().endswith(".end")
    stdout = run_plain_ngspice(out_path)
    if form == "A":
        A, b = np.load(files["A"]), np.load(files["b"])
    elif form == "U":
        U, b = np.load(files["U"]), np.load(files["b"])
        A = 0.4 * np.eye(4) + U @ U.T
    else:
        J, H, b = np.load(files["J"]), np.load(files["H"]), np.load(files["b5"])
        A = J.T @ H @ J + float(files["lam_ggn"]) * np.eye(J.shape[1])
    # .print writes ~7 significant digits.
    np.testing.assert_allclose(last_printed_row(stdout, len(b)), np.linalg.solve(A, b), rtol=2e-5, atol=1e-6)


def test_netlist_with_noise_and_johnson_runs_in_plain_ngspice(files, tmp_path):
    out_path = tmp_path / "noisy.cir"
    rc, out, err = run_cli(
        "netlist",
        "--A",
        files["A"],
        "--b",
        files["b"],
        "--kappa0",
        "0.01",
        "--seed",
        "5",
        "--temperature",
        "300",
        "--t",
        "5",
        "--title",
        "noisy SPU (test)",
        "-o",
        str(out_path),
    )
    assert rc == 0, err
    text = out_path.read_text()
    assert text.splitlines()[0] == "noisy SPU (test)"
    assert "TRRANDOM" in text and ".options seed=5 " in text
    run_plain_ngspice(out_path)


@pytest.mark.parametrize(
    "title", ["x\n.control\nshell touch /tmp/thermospice_pwned\n.endc", ".control", "a\rb", "caf\u00e9", "x" * 500]
)
def test_netlist_rejects_bad_titles(capsys, files, tmp_path, title):
    out_path = tmp_path / "t.cir"
    rc, out, err = call(capsys, "netlist", "--A", files["A"], "--b", files["b"], "--title", title, "-o", out_path)
    assert_one_line_error(rc, out, err, "title")
    assert not out_path.exists()


def test_netlist_output_errors(capsys, files, tmp_path):
    rc, out, err = call(capsys, "netlist", "--A", files["A"], "--b", files["b"], "-o", tmp_path / "no" / "x.cir")
    assert_one_line_error(rc, out, err, "does not exist")
    rc, out, err = call(capsys, "netlist", "--A", files["A"], "--b", files["b"], "-o", tmp_path)
    assert_one_line_error(rc, out, err, "directory")
    rc, out, err = call(capsys, "netlist", "--A", files["A"], "--b", files["b"])
    assert_one_line_error(rc, out, err, "-o")


# -- report ---------------------------------------------------------------------------------------
def test_report_text_and_json(files):
    rc, out, err = run_cli(
        "report", "--J", files["J"], "--H", files["H"], "--lam", files["lam_ggn"], "--b", files["b5"], "--json"
    )
    assert rc == 0, err
    rep = json.loads(out)
    assert rep["topology"] == "crossbar" and rep["n"] == 5
    for key in ("counts", "ranges", "quantisation", "timing", "voltages", "power"):
        assert key in rep
    assert rep["counts"]["resistors"] > 0 and rep["ranges"]["resistance_ohm"]["within"] is True
    rc, out, err = run_cli("report", "--A", files["A"], "--b", files["b"], "--bits-r", "6")
    assert rc == 0, err
    assert out.startswith("Component report: topology dense, n = 4")
    assert "quantisation" in out and "settling" in out and "power" in out


def test_report_bad_input(capsys, files):
    rc, out, err = call(capsys, "report", "--A", files["A"], "--b", files["b"], "--topology", "crossbar")
    assert_one_line_error(rc, out, err, "crossbar")


# -- the design: presets, design files, and the options over them ---------------------------------
def test_design_file_round_trip(capsys, files, tmp_path):
    """netlist writes NAME.design.json beside NAME.cir with every field; --design-file rebuilds the
    same netlist byte for byte; an option given with it overrides the file; --save-design writes
    the same file."""
    base = ["--U", files["U"], "--lam", 0.4, "--b", files["b"]]
    chosen = ["--bits-dac", 12, "--dac-offset", 0.01, "--dac-inl", 1, "--adc-gain-error", 1e-3, "--tol-r", 0.01]
    rc, out, err = call(capsys, "netlist", *base, *chosen, "--component-seed", 4, "-o", tmp_path / "a.cir")
    assert rc == 0, err
    assert "a.design.json" in out
    saved = json.loads((tmp_path / "a.design.json").read_text())
    assert saved["dac"] == {"offset": 0.01, "gain_error": 0.0, "inl": 1.0} and saved["component_seed"] == 4
    assert set(saved) == set(Design.__dataclass_fields__)
    rc, out, err = call(capsys, "netlist", *base, "--design-file", tmp_path / "a.design.json", "-o", tmp_path / "b.cir")
    assert rc == 0, err
    assert (tmp_path / "b.cir").read_bytes() == (tmp_path / "a.cir").read_bytes()
    assert (tmp_path / "b.design.json").read_bytes() == (tmp_path / "a.design.json").read_bytes()
    over = ["--design-file", tmp_path / "a.design.json", "--dac-offset", 0.02, "--save-design", tmp_path / "s.json"]
    rc, out, err = call(capsys, "report", *base, *over, "--json")
    assert rc == 0, err
    assert json.loads(out)["design"]["dac"]["offset"] == 0.02
    assert json.loads((tmp_path / "s.json").read_text()) == {**saved, "dac": {**saved["dac"], "offset": 0.02}}


def test_design_presets_combine_and_options_override_them(capsys, files):
    """--preset applies its fields in order (repeated or comma-separated); an option given wins."""
    from circuits.presets import PRESETS

    base = ["--U", files["U"], "--lam", 0.4, "--b", files["b"], "--json"]

    def design(*extra):
        rc, out, err = call(capsys, "report", *base, *extra)
        assert rc == 0, err
        return json.loads(out)["design"]

    d = design("--preset", "opamp-general,converter-16bit", "--preset", "opamp-precision", "--dac-inl", 3)
    assert d["opamp"] == {**Design().as_dict()["opamp"], **PRESETS["opamp-precision"].fields["opamp"]}
    assert d["bits_dac"] == d["bits_adc"] == 16 and d["dac"]["inl"] == 3.0 and d["adc"]["inl"] == 2.0
    for preset in PRESETS.values():  # every preset is a valid design, without a bandwidth
        assert design("--preset", preset.name)["opamp"]["gbw"] is None
