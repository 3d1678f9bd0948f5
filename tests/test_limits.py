"""Resource limits: a command that would need more memory, time steps or sweep points than its
limit is refused before it allocates or starts ngspice, in one line giving the estimate, the limit
and the option that raises it (spu/limits.py, analysis/limit_args.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from cases import assert_one_line_error, call

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST_S = 1.0  # in-process, after the first import: the refusal comes from an estimate, not from work


@pytest.fixture
def small(tmp_path):
    """A 2 x 2 SPD system as .npy files: (A path, b path)."""
    A, b = tmp_path / "A.npy", tmp_path / "b.npy"
    np.save(A, np.array([[2.0, 0.5], [0.5, 1.5]]))
    np.save(b, np.array([1.0, -1.0]))
    return str(A), str(b)


def timed(capsys, *args):
    from analysis.cli import build_parser

    build_parser()  # the imports, out of the timing
    start = time.perf_counter()
    rc, out, err = call(capsys, *args)
    return rc, out, err, time.perf_counter() - start


# -- (a) a dense --A too large --------------------------------------------------------------------
def test_huge_npy_is_refused_from_its_header(tmp_path, small, capsys):
    """A .npy whose header says 2e6 x 2e6 (32 TB) is refused from the header alone, by the default
    limit, without reading a byte of its data (there is none)."""
    huge = tmp_path / "huge.npy"
    with open(huge, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (2_000_000, 2_000_000)}
        )
    rc, out, err, wall = timed(capsys, "solve", "--A", huge, "--b", small[1])
    assert rc == 2
    assert_one_line_error(
        rc, out, err, r"--A \(4e\+12 entries\)", r"\d TB of memory", r"more than the limit", "--max-memory"
    )
    assert wall < FAST_S


def test_text_matrix_is_estimated_from_its_size(tmp_path, small, capsys):
    from analysis.problem_args import file_entries

    rng = np.random.default_rng(0)
    M = rng.standard_normal((60, 60))
    np.savetxt(tmp_path / "A.csv", M @ M.T + 60 * np.eye(60), delimiter=",")
    np.savetxt(tmp_path / "A.txt", M @ M.T + 60 * np.eye(60), header="a comment line")
    for name in ("A.csv", "A.txt"):
        assert file_entries(str(tmp_path / name)) == pytest.approx(3600, rel=0.05)
    np.save(tmp_path / "b.npy", np.ones(60))
    # 3600 entries x 8 bytes x 100 copies (a circuit build) = 2.7 MB
    rc, out, err, wall = timed(
        capsys, "report", "--A", tmp_path / "A.csv", "--b", tmp_path / "b.npy", "--max-memory", "1M"
    )
    assert_one_line_error(
        rc, out, err, r"--A \(3\.[56]\d*e\+03 entries\)", r"2\.\d+ MB of memory", r"limit 1 MB", "--max-memory"
    )
    assert rc == 2 and wall < FAST_S


def test_numeric_backends_count_fewer_copies(tmp_path, capsys):
    """The same matrix passes a limit under a numeric backend that a circuit build exceeds."""
    np.save(tmp_path / "A.npy", 4 * np.eye(40))
    np.save(tmp_path / "b.npy", np.ones(40))
    args = ("--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy", "--max-memory", "200K")
    rc, out, err = call(capsys, "solve", "--backend", "direct", *args)
    assert rc == 0, err
    rc, out, err = call(capsys, "netlist", "-o", tmp_path / "x.cir", *args)
    assert_one_line_error(rc, out, err, r"1\.2\d MB of memory", "200 KB")
    assert not (tmp_path / "x.cir").exists()


# -- (b) a transient too long ---------------------------------------------------------------------
def test_ngspice_transient_too_long_is_refused_before_ngspice(small):
    """--t 1e12 at the step cap 0.01 tau: 1e14 time points. Refused before ngspice starts (today's
    code ran into the 600 s timeout), from a real process: exit 2, one line, no traceback."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "solve", "--A", small[0], "--b", small[1], "--t", "1e12"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )
    assert time.perf_counter() - start < 30
    assert_one_line_error(
        proc.returncode,
        proc.stdout,
        proc.stderr,
        r"t = 1e\+12 tau",
        r"step cap 0\.01 tau",
        r"1e\+14 time steps",
        r"limit 1e\+08",
        "--max-steps",
    )
    assert proc.returncode == 2


def test_euler_steps_are_limited_and_the_exact_backends_are_not(small, capsys):
    A, b = small
    rc, out, err, wall = timed(capsys, "solve", "--backend", "euler", "--A", A, "--b", b, "--t", "1e12")
    assert_one_line_error(rc, out, err, r"euler", r"1e\+13 time steps", r"limit 1e\+08", "--max-steps")
    assert rc == 2 and wall < FAST_S
    rc, out, err = call(capsys, "solve", "--backend", "ou", "--A", A, "--b", b, "--t", "1e12")
    assert rc == 0, err


def test_langevin_baoab_steps_are_limited(small):
    from spu.core.errors import LimitError
    from spu.core.problems import DenseProblem
    from spu.device import SPU
    from spu.limits import Limits

    problem = DenseProblem(*(np.load(p) for p in small))
    spu = SPU("langevin", method="baoab", dt=0.05, limits=Limits(steps=1000))
    with pytest.raises(LimitError, match=r"baoab .* 2e\+03 time steps, more than the limit 1e\+03"):
        spu.run(problem, t=100.0)
    assert spu.run(problem, t=10.0).x.shape == (2,)


# -- (c) too many samples -------------------------------------------------------------------------
def test_samples_over_the_memory_limit_are_refused(small, capsys):
    A, b = small
    rc, out, err, wall = timed(capsys, "sample", "--backend", "ou", "--A", A, "--b", b, "--samples", "1000000000000")
    assert_one_line_error(rc, out, err, r"1000000000000 samples of n = 2", r"\d TB of memory", "--max-memory")
    assert rc == 2 and wall < FAST_S
    # 1e5 samples x 3 x 8 bytes x 12 copies = 27 MB
    rc, out, err = call(
        capsys, "sample", "--backend", "ou", "--A", A, "--b", b, "--samples", "100000", "--max-memory", "10M"
    )
    assert_one_line_error(rc, out, err, r"27\.\d MB of memory", r"limit 10 MB")


# -- (d) a sweep grid too large -------------------------------------------------------------------
def test_sweep_grid_over_the_limit_is_refused_before_it_is_made(tmp_path, capsys):
    """lin:1:40:1000000000 would make a list of 1e9 floats; it is counted, not made."""
    rc, out, err, wall = timed(
        capsys, "sweep", "time", "--t", "lin:1:40:1000000000", "--out", tmp_path, "--no-progress"
    )
    assert_one_line_error(rc, out, err, "sweep time", r"1e\+09 points", r"limit 1e\+05", "--max-points")
    assert rc == 2 and wall < FAST_S
    # The product of the ranges and the seeds counts: 400 kappa0 x 2 temperatures x 200 seeds.
    rc, out, err = call(
        capsys, "sweep", "noise", "--kappa0", "lin:0:1:400", "--seeds", "200", "--out", tmp_path, "--no-progress"
    )
    assert_one_line_error(rc, out, err, r"1\.6e\+05 points", "--max-points")
    assert not list(tmp_path.iterdir())


def test_training_sweep_settings_over_the_limit_are_refused(tmp_path, capsys):
    """The training sweeps' settings are counted too: 1e9 bit widths x 3 seeds, refused before a
    list of them is made; --max-points governs them."""
    rc, out, err, wall = timed(
        capsys, "sweep", "train-bits", "--bits", "lin:1:8:1000000000", "--out", tmp_path, "--no-progress"
    )
    assert_one_line_error(rc, out, err, "sweep train-bits", r"3e\+09 points", r"limit 1e\+05", "--max-points")
    assert rc == 2 and wall < FAST_S
    # 2 temperatures x the 3 default kappa0 x 1 seed, over a limit of 5
    args = "sweep train-noise --temperature 0,300 --seeds 1 --max-points 5 --no-progress".split()
    rc, out, err = call(capsys, *args, "--out", tmp_path)
    assert_one_line_error(rc, out, err, "sweep train-noise", r"6 points", r"limit 5", "--max-points")
    assert not list(tmp_path.iterdir())


def test_sweep_transient_over_the_step_limit_is_refused(tmp_path, capsys):
    rc, out, err, wall = timed(capsys, "sweep", "noise", "--quick", "--t", "1e12", "--out", tmp_path, "--no-progress")
    assert_one_line_error(rc, out, err, r"t = 1e\+12 tau", r"time steps", r"limit 1e\+08", "--max-steps")
    assert rc == 2 and wall < 5 * FAST_S  # the test problem is made and built once first


def test_range_count_does_not_make_the_values():
    from analysis.ranges import count, parse_range

    assert count("lin:1:40:1000000000") == 10**9
    assert (
        count(["1,2", "log:1e-3:1:4", "ideal"]) == 7 == len(parse_range("x", ["1,2", "log:1e-3:1:4", "0"], sort=False))
    )
    assert count((0.125, 0.25)) == 2 and count(3.0) == 1
    assert count("lin:a:b:c") == 1  # parse_range names the bad item


# -- (e) the options raise the limits -------------------------------------------------------------
def test_raising_the_limits_lets_the_same_command_run(tmp_path, small, capsys):
    args = ("sweep", "time", "--quick", "--backend", "ou", "--workers", "1", "--out", tmp_path, "--no-progress")
    rc, out, err = call(capsys, *args, "--max-points", "4")
    assert_one_line_error(rc, out, err, r"has 5 points, more than the limit 4", "--max-points")
    rc, out, err = call(capsys, *args, "--max-points", "5")
    assert rc == 0, err
    assert "sweep time: 5 points" in out
    A, b = small
    euler = ("solve", "--backend", "euler", "--A", A, "--b", b, "--t", "1000")
    rc, out, err = call(capsys, *euler, "--max-steps", "100")
    assert_one_line_error(rc, out, err, r"1e\+04 time steps, more than the limit 100")
    rc, out, err = call(capsys, *euler, "--max-steps", "1e4")
    assert rc == 0, err


def test_limit_options_reject_bad_values(small, capsys):
    A, b = small
    for flag, value in (("--max-memory", "lots"), ("--max-memory", "0"), ("--max-steps", "0"), ("--max-steps", "nan")):
        rc, out, err = call(capsys, "solve", "--backend", "ou", "--A", A, "--b", b, flag, value)
        assert_one_line_error(rc, out, err, flag)


# -- the module ------------------------------------------------------------------------------------
def test_sizes_and_the_default_memory_limit():
    from spu.limits import Limits, available_memory, format_size, parse_size

    assert parse_size("8G") == 8 * 2**30 and parse_size("512M") == 512 * 2**20
    assert parse_size("1.5k") == 1536 and parse_size("100") == 100 and parse_size("2GiB") == 2 * 2**30
    for bad in ("", "G", "-1G", "1X", "0.1"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(3 * 2**30) == "3 GB" and format_size(10) == "10 B"
    free = available_memory()
    assert free is not None and free > 0
    limit, how = Limits().memory_limit()
    assert 0 < limit <= free and "--max-memory" in how
    assert Limits(memory=2**20).memory_limit() == (2.0**20, "set by --max-memory; raise it to run this")


def test_train_takes_the_step_limit_for_its_ngspice_solves(tmp_path, capsys):
    """train --max-steps reaches the SPU: a limit below one solve's transient refuses the first
    step in one line, before ngspice runs."""
    args = "train --optimizer tngd --backend ngspice --model mlp --width 3 --batch-size 4 --steps 1 --json"
    rc, out, err = call(capsys, *args.split(), "--max-steps", "10", "--out", tmp_path / "run")
    assert_one_line_error(rc, out, err, "time steps", r"limit 10\b", "--max-steps")
