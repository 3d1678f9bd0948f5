"""`thermospice sweep KIND`: outputs, documented columns, resume, Dask, errors, and physics.

Each quick sweep runs once (module fixture, local worker processes) and several tests read it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from analysis.executors import SchedulerError
from analysis.io import OutputFolderError, read_csv
from analysis.ranges import parse_range
from analysis.sweep_errors import (
    EmptyRangeError,
    SweepInterrupted,
    SweepMismatchError,
    SweepOptionError,
    UnknownKindError,
)
from analysis.sweep_kinds import SWEEP_KINDS
from analysis.sweep_point import growing, settle_time
from analysis.sweep_spec import columns, columns_help
from analysis.sweeps import run_sweep

pytestmark = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Every kind in quick mode, on 2 local worker processes, into one shared folder."""
    out = tmp_path_factory.mktemp("quick")
    return {kind: run_sweep(kind, str(out), quick=True, workers=2, progress=False) for kind in SWEEP_KINDS}


@pytest.fixture
def cli(monkeypatch):
    """analysis.cli.main with only the sweep command registered: the same parser and error handling,
    without importing torch for the training commands (seconds per process)."""
    import analysis.cli

    monkeypatch.setattr(analysis.cli, "COMMANDS", ("analysis.cmd_sweep",))
    return analysis.cli.main


def _floats(rows, col):
    return np.array([float(r[col]) for r in rows])


# -- outputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(SWEEP_KINDS))
def test_quick_sweep_writes_documented_csv_and_png(quick, kind):
    res = quick[kind]
    with open(res.csv_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == [c for c, _ in SWEEP_KINDS[kind].columns]
    rows = read_csv(res.csv_path)
    assert len(rows) == res.total == res.computed > 0 and res.skipped == 0
    assert [int(r["point"]) for r in rows] == list(range(res.total))  # sorted by point id
    assert all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    assert all(math.isfinite(float(r["rel_error"])) for r in rows)
    with open(res.png_path, "rb") as fh:
        assert fh.read(8) == PNG
    assert os.path.getsize(res.png_path) > 5000
    manifest = json.load(open(res.manifest_path))
    assert manifest["kind"] == kind and manifest["columns"] == header and manifest["points"] == res.total
    if SWEEP_KINDS[kind].summary:
        summ = read_csv(res.summary_path)
        assert summ and set(SWEEP_KINDS[kind].summary.keys) <= set(summ[0])
    # Timings live apart from the deterministic CSV: one line per evaluated point.
    timings = read_csv(os.path.join(res.out, f"{kind}.timings.csv"))
    assert sorted(int(r["point"]) for r in timings) == list(range(res.total))


@pytest.mark.parametrize("kind", list(SWEEP_KINDS))
def test_columns_are_documented_in_help(kind, capsys, cli):
    with pytest.raises(SystemExit) as exc:
        cli(["sweep", kind, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for col in columns(kind):
        assert f"\n  {col} " in text, col
    assert all(c in columns_help() for c in columns(kind))


def test_cli_runs_a_sweep_and_resumes(tmp_path, capsys, cli):
    args = ["sweep", "time", "--quick", "--out", str(tmp_path), "--workers", "1", "--no-progress", "--t", "1,3"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "2 points (2 computed, 0 already done" in out and str(tmp_path / "time.png") in out
    assert cli(args) == 0
    assert "(0 computed, 2 already done" in capsys.readouterr().out


# -- resume ---------------------------------------------------------------------------------------
def test_interrupted_sweep_resumes_to_the_same_csv_without_recomputing(quick, tmp_path):
    ref = quick["bits"]
    k = 4
    with pytest.raises(SweepInterrupted) as exc:
        run_sweep("bits", str(tmp_path), quick=True, workers=1, progress=False, stop_after=k)
    first = exc.value.result
    assert first.computed == k
    csv_path = tmp_path / "bits.csv"
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 1 + k  # header + the k points written before the interruption
    assert not (tmp_path / "bits.png").exists()
    # A crash in the middle of writing a row leaves half a line: it must be dropped, not trusted.
    with open(csv_path, "a") as fh:
        fh.write("7,adc,12,0.00")
    second = run_sweep("bits", str(tmp_path), quick=True, workers=2, progress=False)
    assert (second.skipped, second.computed) == (k, ref.total - k)
    assert csv_path.read_bytes() == open(ref.csv_path, "rb").read()
    # Each point was evaluated exactly once over both runs.
    timings = read_csv(tmp_path / "bits.timings.csv")
    assert sorted(int(r["point"]) for r in timings) == list(range(ref.total))
    # A third run finds everything done and computes nothing.
    third = run_sweep("bits", str(tmp_path), quick=True, workers=2, progress=False)
    assert (third.skipped, third.computed) == (ref.total, 0)
    assert csv_path.read_bytes() == open(ref.csv_path, "rb").read()


def test_sweep_killed_by_ctrl_c_resumes_to_the_same_csv(tmp_path):
    """A real interruption: SIGINT to the running command, then the same command again."""
    out = tmp_path / "run"
    opts = ["--quick", "--workers", "2", "--t", "lin:5:15:16", "--no-progress"]
    # The `thermospice` entry point, with only the sweep command loaded (the others import torch,
    # seconds of start-up that this test does not need).
    entry = "import sys, analysis.cli as c; c.COMMANDS = ('analysis.cmd_sweep',); sys.exit(c.main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", entry, "sweep", "time", *opts, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "time.csv").exists() and (out / "time.csv").read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    written = (out / "time.csv").read_text().count("\n") - 1
    assert 2 <= written < 16
    resumed = run_sweep("time", str(out), quick=True, workers=2, progress=False, t="lin:5:15:16")
    assert (resumed.skipped, resumed.computed) == (written, 16 - written)
    ref = run_sweep("time", str(tmp_path / "ref"), quick=True, workers=2, progress=False, t="lin:5:15:16")
    assert (out / "time.csv").read_bytes() == open(ref.csv_path, "rb").read()


def test_folder_with_another_sweeps_results_is_refused(quick, tmp_path):
    run_sweep("time", str(tmp_path), quick=True, workers=1, progress=False, t="1,2")
    before = (tmp_path / "time.csv").read_bytes()
    with pytest.raises(SweepMismatchError, match=r"different time sweep.*grid\.t_tau"):
        run_sweep("time", str(tmp_path), quick=True, workers=1, progress=False, t="1,2,4")
    with pytest.raises(SweepMismatchError, match="problem.n"):
        run_sweep("time", str(tmp_path), quick=True, workers=1, progress=False, t="1,2", n=5)
    assert (tmp_path / "time.csv").read_bytes() == before
    # A CSV without its manifest is not ours to overwrite.
    (tmp_path / "noise.csv").write_text("point,something\n0,1\n")
    with pytest.raises(SweepMismatchError, match="manifest"):
        run_sweep("noise", str(tmp_path), quick=True, workers=1, progress=False)


# -- Dask -----------------------------------------------------------------------------------------
def test_dask_cluster_gives_the_same_csv_as_local_processes(quick, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        res = run_sweep("opamp", str(tmp_path), quick=True, scheduler=cluster.scheduler_address, progress=False)
    assert res.computed == quick["opamp"].total
    assert (tmp_path / "opamp.csv").read_bytes() == open(quick["opamp"].csv_path, "rb").read()
    # The work really ran on the cluster's worker processes, not here.
    pids = {r["pid"] for r in read_csv(tmp_path / "opamp.timings.csv")}
    assert str(os.getpid()) not in pids


def test_unreachable_scheduler_is_a_short_clear_error(tmp_path):
    with pytest.raises(SchedulerError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
        run_sweep(
            "time", str(tmp_path / "o"), quick=True, scheduler="tcp://127.0.0.1:1", scheduler_timeout=1, progress=False
        )
    assert not (tmp_path / "o" / "time.manifest.json").exists()


# -- bad options ----------------------------------------------------------------------------------
def test_bad_options_raise_clear_errors(tmp_path):
    with pytest.raises(UnknownKindError, match="unknown sweep kind 'heat'; choose one of noise, tolerance"):
        run_sweep("heat", str(tmp_path))
    with pytest.raises(EmptyRangeError, match="--kappa0: empty range"):
        run_sweep("noise", str(tmp_path), kappa0="")
    with pytest.raises(EmptyRangeError, match="--kappa0: empty range"):
        run_sweep("noise", str(tmp_path), kappa0=[])
    with pytest.raises(EmptyRangeError, match=r"START 0.1 > STOP 0.01"):
        run_sweep("noise", str(tmp_path), kappa0="log:0.1:0.01:3")
    with pytest.raises(EmptyRangeError, match="NUM must be >= 1"):
        run_sweep("tolerance", str(tmp_path), tol_r="lin:0:0.1:0")
    with pytest.raises(SweepOptionError, match="--tol-r: 0.7 is out of range"):
        run_sweep("tolerance", str(tmp_path), tol_r="0.1,0.7")
    with pytest.raises(SweepOptionError, match="--bits: 4.5 is not an integer"):
        run_sweep("bits", str(tmp_path), bits="4.5")
    with pytest.raises(SweepOptionError, match="--kappa0 does not apply to sweep bits"):
        run_sweep("bits", str(tmp_path), kappa0="0.1")
    with pytest.raises(SweepOptionError, match="--workers must be an integer >= 1"):
        run_sweep("time", str(tmp_path), quick=True, workers=0)
    with pytest.raises(SweepOptionError, match="--temperature > 0"):
        run_sweep("noise", str(tmp_path), backend="ou", temperature="300")
    with pytest.raises(SweepOptionError, match="runs on backend ngspice"):
        run_sweep("bits", str(tmp_path), backend="ou")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputFolderError, match="cannot write sweep results"):
        run_sweep("time", str(blocker / "sub"), quick=True)
    with pytest.raises(OutputFolderError, match="is a file"):
        run_sweep("time", str(blocker), quick=True)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sweep", "heat"], "invalid choice: 'heat'"),
        (["sweep", "noise", "--kappa0", ""], "--kappa0: empty range"),
        (["sweep", "opamp", "--gain", "lin:1e5:1e3:3"], "--gain: 'lin:1e5:1e3:3' is empty"),
        (["sweep", "time", "--quick", "--out", "/dev/null/x"], "cannot write sweep results to folder /dev/null/x"),
        (["sweep", "time", "--quick", "--workers", "0"], "--workers must be an integer >= 1"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys, cli):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("thermospice: error: ") and message in err, err


# -- helpers --------------------------------------------------------------------------------------
def test_ranges_parse_lists_lin_and_log_stably():
    assert parse_range("x", "log:1e-3:1e-1:3") == [0.001, 0.01, 0.1]
    assert parse_range("x", ["0.3,0.1", "lin:0.1:0.3:3"]) == [0.1, 0.2, 0.3]  # sorted, deduplicated
    assert parse_range("gain", "1e3,ideal", words={"ideal": math.inf}) == [1000.0, math.inf]
    assert parse_range("bits", "lin:4:8:3", integer=True) == [4, 6, 8]


def test_settle_time_and_instability_detection():
    t = np.linspace(0, 20, 2001)
    x = (1 - np.exp(-t))[:, None] * np.ones((1, 2))
    assert settle_time(t, x, 1e-3) == pytest.approx(np.log(1e3), abs=0.02)
    assert not growing(t, x - 1)
    osc = 1 + (np.exp(0.1 * t) * np.sin(3 * t))[:, None] * np.ones((1, 2))
    assert settle_time(t, osc, 1e-3) == math.inf and growing(t, osc - 1)


# -- physics --------------------------------------------------------------------------------------
def test_time_sweep_error_follows_exp_minus_lambda_min_t(quick):
    rows = read_csv(quick["time"].csv_path)
    lam = quick["time"].spec["lambda_min"]
    t, err, theory, bound = (_floats(rows, c) for c in ("t_tau", "rel_error", "theory_error", "bound_error"))
    assert np.allclose(bound, np.exp(-lam * t))
    # The circuit follows the exact OU mean to ngspice's accuracy ...
    assert np.all(np.abs(err - theory) <= 1e-4 * theory + 1e-6), np.c_[t, err, theory]
    # ... which never exceeds the slowest mode's decay and stays within a factor of it.
    ratio = err / bound
    assert np.all(ratio <= 1.0 + 1e-4) and np.all(ratio >= 0.3), ratio
    assert t.max() * lam >= 4  # the range spans several decay times, so a wrong rate would show


def test_bits_error_falls_with_resolution(quick):
    rows = read_csv(quick["bits"].csv_path)
    for target in ("r", "dac", "adc"):
        rs = sorted((r for r in rows if r["target"] == target), key=lambda r: int(r["bits"]))
        bits, err = _floats(rs, "bits"), _floats(rs, "rel_error")
        assert list(bits) == [4, 8, 12]
        # Each 4 more bits cut the quantisation error by 2^4 = 16 in expectation; ask for > 5.
        assert np.all(err[:-1] / err[1:] > 5), (target, err)
        if target != "adc":  # the as-built model (no simulation) predicts what ngspice measures
            asb = _floats(rs, "asbuilt_error")
            assert np.all(np.abs(err - asb) <= 0.01 * asb + 1e-6), (target, err, asb)
    at8 = {r["target"]: float(r["rel_error"]) for r in rows if r["bits"] == "8"}
    assert max(at8.values()) > 1e-3  # 8 bits is where the error becomes visible (percent level for the ADC)


def test_noise_error_scales_like_sqrt_kappa0_in_ngspice(quick):
    rows = [r for r in read_csv(quick["noise"].csv_path) if r["temperature_k"] == "0"]
    by = {(r["kappa0"], r["seed_index"]): float(r["rel_error"]) for r in rows}
    seeds = {r["seed_index"] for r in rows}
    # Same noise seed at both kappa0 (common random numbers): the error scales by sqrt(10) exactly,
    # up to the deterministic residual after t (1e-6).
    for s in seeds:
        assert by[("0.01", s)] / by[("0.001", s)] == pytest.approx(math.sqrt(10), rel=0.02)


@pytest.mark.parametrize("backend, kappa0, seeds", [("ngspice", "1e-2", 12), ("ou", "1e-3,1e-2", 48)])
def test_noise_spread_matches_the_ou_theory(tmp_path, backend, kappa0, seeds):
    res = run_sweep(
        "noise",
        str(tmp_path),
        quick=True,
        workers=2,
        progress=False,
        backend=backend,
        kappa0=kappa0,
        temperature="0",
        seeds=seeds,
    )
    summ = read_csv(res.summary_path)
    rms = _floats(summ, "rel_error_rms")
    theory = _floats(summ, "theory_rms_error_mean")
    # E||x - x*||^2 = kappa0 tr(A^-1) + tiny residual: the rms over seeds estimates it (about 10-20%
    # sampling error at these seed counts; the seeds are fixed, so this is not flaky).
    assert np.all(np.abs(rms / theory - 1) < 0.3), (rms, theory)
    if len(summ) == 2:  # independent of the above: the spread over seeds grows like sqrt(kappa0)
        std = _floats(summ, "rel_error_std")
        assert std[1] / std[0] == pytest.approx(math.sqrt(10), rel=0.05)


def test_opamp_gain_sets_the_error_and_the_ideal_part_settles_like_theory(quick):
    rows = read_csv(quick["opamp"].csv_path)
    err = {(r["gain"], r["gbw_hz"]): float(r["rel_error"]) for r in rows}
    # Finite DC gain leaves a static error ~ 1/gain: 100x the gain, ~100x less error.
    ratio = err[("1000", "inf")] / err[("100000", "inf")]
    assert 30 < ratio < 300, ratio
    for r in rows:
        assert float(r["settle_tau"]) == pytest.approx(float(r["ideal_settle_tau"]), rel=0.05)


def test_tolerance_error_matches_the_as_built_circuit_and_grows_with_sigma(quick):
    rows = read_csv(quick["tolerance"].csv_path)
    err, asb = _floats(rows, "rel_error"), _floats(rows, "asbuilt_error")
    assert np.all(np.abs(err - asb) <= 1e-3 * asb + 1e-6)
    summ = {(r["tol_r"], r["tol_c"]): float(r["rel_error_rms"]) for r in read_csv(quick["tolerance"].summary_path)}
    for tc in ("0", "0.05"):
        assert 2 < summ[("0.05", tc)] / summ[("0.01", tc)] < 10  # ~linear in sigma (5x)
