"""Tests of spu.ngspice.run and spu.ngspice.rawfile against the real ngspice (nothing here mocks ngspice's
results; one test uses a stub executable that kills itself, to check crash handling)."""

from __future__ import annotations

import os
import shutil
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from spu.core.errors import NgspiceError, NgspiceNotFound, NgspiceTimeout, ThermospiceError
from spu.ngspice.rawfile import RawData, read_raw, read_raw_all
from spu.ngspice.run import ENV_VAR, NgspiceRun, find_ngspice, ngspice_version, run_ngspice

HAVE_NGSPICE = shutil.which(os.environ.get(ENV_VAR) or "ngspice") is not None
needs_ngspice = pytest.mark.skipif(not HAVE_NGSPICE, reason="ngspice not installed (apt-get install ngspice)")


def rc_netlist(r=1e3, c=1e-6, v0=1.0, tstop=5e-3, tmax=10e-6, extra=""):
    """RC discharge from v0 (uic): v(x1) = v0 exp(-t/RC)."""
    return (
        f"rc discharge\nR1 x1 0 {r:g}\nC1 x1 0 {c:g} IC={v0:g}\n{extra}.tran {tmax:g} {tstop:g} 0 {tmax:g} uic\n.end\n"
    )


def _own_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains marker."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            pids.append(int(d))
    return pids


# --------------------------------------------------------------------------------------- runner


@needs_ngspice
def test_version():
    v = ngspice_version()
    assert v.split(".")[0].isdigit(), v


@needs_ngspice
def test_rc_discharge_matches_exponential_to_integrator_accuracy():
    rc = 1e-3
    errs = []
    for tmax in (rc / 100, rc / 1000):
        run = run_ngspice(rc_netlist(tmax=tmax))
        assert isinstance(run, NgspiceRun) and isinstance(run.raw, RawData)
        assert run.raw.variables == ["time", "v(x1)"]
        assert run.raw.plotname == "Transient Analysis"
        t, v = run.raw["time"], run.raw["x1"]
        assert np.array_equal(v, run.raw["v(x1)"]) and np.array_equal(v, run.raw["V(X1)"])
        assert np.all(np.diff(t) > 0) and t[-1] == pytest.approx(5e-3)
        assert np.max(np.diff(t)) <= tmax * (1 + 1e-9)
        errs.append(np.max(np.abs(v - np.exp(-t / rc))))
        assert run.workdir is None and run.netlist_path is None
        assert run.wall_time_s > 0 and run.returncode == 0
    # trapezoidal rule: error ~ h^2/12 * max|v''| ~ 1e-5 at h = RC/100, and second order in h
    assert errs[0] < 1e-5, errs
    assert errs[1] < errs[0] / 50, errs


@needs_ngspice
def test_save_selects_variables():
    net = "save test\nV1 a 0 1\nR1 a x1 1k\nC1 x1 0 1u\nR2 x1 y 1k\nC2 y 0 1u\n.save v(x1) i(v1)\n.tran 10u 1m\n.end\n"
    run = run_ngspice(net)
    assert run.raw.variables == ["time", "v(x1)", "i(v1)"]
    assert "x1" in run.raw and "y" not in run.raw and "v1#branch" in run.raw
    with pytest.raises(KeyError, match="no variable 'y'"):
        run.raw["y"]
    with pytest.raises(NgspiceError):
        run.raw["a"]


@needs_ngspice
def test_malformed_netlist_raises_with_useful_message():
    net = "bad\nR1 x1 0 1k\nC1 x1 0 1u IC=1\nQ1 a b\n.tran 10u 1m 0 10u uic\n.end\n"
    with pytest.raises(NgspiceError) as ei:
        run_ngspice(net)
    msg = str(ei.value)
    assert "'bad'" in msg  # names the netlist by its title
    assert "line 4" in msg and "q1 a b" in msg.lower()
    assert "DRAM" not in msg and len(msg.splitlines()) <= 14


@needs_ngspice
def test_errors_when_ngspice_exits_zero():
    # no analysis: exit 0, no raw file
    with pytest.raises(NgspiceError, match="no raw file"):
        run_ngspice("no analysis\nR1 a 0 1k\nI1 0 a 1m\n.end\n")
    # failing operating point: "simulation(s) aborted"
    with pytest.raises(NgspiceError, match="(?i)timestep too small|aborted"):
        run_ngspice("loop\nV1 a 0 1\nV2 a 0 2\nR1 a 0 1k\n.tran 1u 10u\n.end\n")
    # complex (.ac) data is reported as unsupported, not misread
    with pytest.raises(NgspiceError, match="complex"):
        run_ngspice("ac\nV1 a 0 dc 0 ac 1\nR1 a x 1k\nC1 x 0 1u\n.ac dec 5 1 1k\n.end\n")


def test_missing_executable_env(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "/nonexistent/ngspice")
    with pytest.raises(NgspiceNotFound, match="apt-get install ngspice") as ei:
        run_ngspice(rc_netlist())
    assert "/nonexistent/ngspice" in str(ei.value)
    assert isinstance(ei.value, ThermospiceError)
    with pytest.raises(NgspiceNotFound):
        ngspice_version()


def test_missing_executable_argument():
    with pytest.raises(NgspiceNotFound, match="no-such-ngspice.*not found on PATH"):
        run_ngspice(rc_netlist(), ngspice="no-such-ngspice")
    with pytest.raises(NgspiceNotFound):
        find_ngspice("no-such-ngspice")


@needs_ngspice
def test_env_var_points_to_ngspice(monkeypatch):
    monkeypatch.setenv(ENV_VAR, shutil.which("ngspice"))
    assert find_ngspice() == os.path.abspath(shutil.which("ngspice"))
    assert run_ngspice(rc_netlist(tstop=1e-4)).raw.npoints > 5


@needs_ngspice
def test_timeout_kills_ngspice(tmp_path):
    # ~1e10 time points: runs for hours unless killed
    net = "endless\nR1 x1 0 1k\nC1 x1 0 1u IC=1\n.tran 1n 10 0 1n uic\n.end\n"
    t0 = time.monotonic()
    with pytest.raises(NgspiceTimeout, match=r"ran \d+\.\d+ s .*timeout of 0\.5 s"):
        run_ngspice(net, timeout=0.5, workdir=tmp_path)
    assert time.monotonic() - t0 < 5
    assert _own_processes(str(tmp_path)) == []  # process group killed and reaped
    assert os.listdir(tmp_path) == []  # run directory removed


def test_crash_is_reported_not_propagated(tmp_path):
    """A stub 'ngspice' that dies from SIGSEGV (as ngspice can): NgspiceError, caller survives."""
    stub = tmp_path / "crashing-ngspice"
    stub.write_text("#!/bin/sh\necho 'Circuit: x'\nkill -SEGV $$\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(NgspiceError, match="signal SIGSEGV"):
        run_ngspice(rc_netlist(), ngspice=str(stub))


@needs_ngspice
def test_keep_and_cleanup(tmp_path):
    run = run_ngspice(rc_netlist(tstop=1e-4), workdir=tmp_path, keep=True)
    assert run.workdir and os.path.dirname(run.workdir) == str(tmp_path)
    assert os.path.isfile(run.netlist_path) and os.path.isfile(os.path.join(run.workdir, "out.raw"))
    again = read_raw(os.path.join(run.workdir, "out.raw"))
    assert np.array_equal(again.data, run.raw.data)
    shutil.rmtree(run.workdir)
    run = run_ngspice(rc_netlist(tstop=1e-4), workdir=tmp_path)
    assert run.workdir is None and os.listdir(tmp_path) == []
    # a failing run cleans up as well
    with pytest.raises(NgspiceError):
        run_ngspice("bad\nQ1 a b\n.tran 1u 1m\n.end\n", workdir=tmp_path)
    assert os.listdir(tmp_path) == []


@needs_ngspice
def test_netlist_path(tmp_path):
    p = tmp_path / "rc.cir"
    p.write_text(rc_netlist(tstop=1e-3))
    run = run_ngspice(p)
    assert run.netlist_path == str(p)
    assert np.allclose(run.raw["x1"], np.exp(-run.raw.time / 1e-3), atol=1e-5)
    with pytest.raises(NgspiceError, match="does not exist"):
        run_ngspice(str(tmp_path / "missing.cir"))
    # a netlist file is used in place, so relative .include paths resolve next to it
    (tmp_path / "part.inc").write_text("R1 x1 0 1k\n")
    top = tmp_path / "top.cir"
    top.write_text("inc\n.include part.inc\nC1 x1 0 1u IC=1\n.tran 10u 1m 0 10u uic\n.end\n")
    assert run_ngspice(top).raw["x1"][-1] == pytest.approx(np.exp(-1), abs=1e-5)


@needs_ngspice
def test_multiple_plots_returns_transient():
    net = "multi\nV1 a 0 1\nR1 a x1 1k\nC1 x1 0 1u\n.op\n.tran 10u 1m\n.end\n"
    run = run_ngspice(net)
    assert [p.plotname for p in run.plots] == ["Operating Point", "Transient Analysis"]
    assert run.raw is run.plots[-1]
    assert run.plots[0].data.shape == (1, 3) and run.plots[0]["x1"][0] == pytest.approx(1.0)


@needs_ngspice
def test_parallel_runs_are_independent():
    rs = [500.0, 1e3, 2e3, 4e3]
    nets = [rc_netlist(r=r, v0=1 + i, tstop=2e-3) for i, r in enumerate(rs)]
    with ThreadPoolExecutor(4) as ex:
        runs = list(ex.map(run_ngspice, nets))
    for i, (r, run) in enumerate(zip(rs, runs)):
        t, v = run.raw.time, run.raw["x1"]
        assert np.max(np.abs(v - (1 + i) * np.exp(-t / (r * 1e-6)))) < 1e-4 * (1 + i)
    # the same netlist 4 times at once gives identical results
    with ThreadPoolExecutor(4) as ex:
        same = list(ex.map(run_ngspice, [nets[1]] * 4))
    assert all(np.array_equal(s.raw.data, same[0].raw.data) for s in same)


@needs_ngspice
def test_ascii_raw_same_numbers(tmp_path):
    binary = run_ngspice(rc_netlist(), keep=True, workdir=tmp_path)
    assert open(os.path.join(binary.workdir, "out.raw"), "rb").read().find(b"\nBinary:\n") > 0
    for run in (
        run_ngspice(rc_netlist(), ascii=True, keep=True, workdir=tmp_path),
        run_ngspice(rc_netlist(extra=".options filetype=ascii\n"), keep=True, workdir=tmp_path),
    ):
        assert open(os.path.join(run.workdir, "out.raw"), "rb").read().find(b"\nValues:\n") > 0
        assert run.raw.variables == binary.raw.variables
        assert run.raw.data.shape == binary.raw.data.shape
        np.testing.assert_allclose(run.raw.data, binary.raw.data, rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------------- raw files


@pytest.fixture(scope="module")
def raw_files(tmp_path_factory):
    """A real binary and ascii raw file of a 2-plot run (.op + .tran)."""
    if not HAVE_NGSPICE:
        pytest.skip("ngspice not installed")
    d = tmp_path_factory.mktemp("raw")
    net = "multi\nV1 a 0 1\nR1 a x1 1k\nC1 x1 0 1u\n.op\n.tran 10u 1m\n.end\n"
    out = {}
    for kind, asc in (("binary", False), ("ascii", True)):
        run = run_ngspice(net, keep=True, ascii=asc, workdir=d)
        out[kind] = os.path.join(run.workdir, "out.raw")
    return out


@pytest.mark.parametrize("kind", ["binary", "ascii"])
def test_read_raw_all(raw_files, kind):
    plots = read_raw_all(raw_files[kind])
    assert [p.plotname for p in plots] == ["Operating Point", "Transient Analysis"]
    assert plots[1].variables == ["time", "v(a)", "v(x1)", "i(v1)"]
    assert plots[1].types == ["time", "voltage", "voltage", "current"]
    assert plots[1].title == "multi" and plots[1].flags == "real"
    assert read_raw(raw_files[kind]).plotname == "Transient Analysis"
    assert read_raw(raw_files[kind], plot="operating").data.shape == (1, 3)
    assert read_raw(raw_files[kind], plot=0).plotname == "Operating Point"


@pytest.mark.parametrize("kind", ["binary", "ascii"])
@pytest.mark.parametrize("cut", [1, 8, 100, 2000])
def test_truncated_raw_file(raw_files, kind, cut, tmp_path):
    data = open(raw_files[kind], "rb").read()
    p = tmp_path / "cut.raw"
    p.write_bytes(data[:-cut])
    with pytest.raises(NgspiceError) as ei:
        read_raw(p)
    msg = str(ei.value)
    assert str(p) in msg
    if cut >= 100:
        assert "truncated" in msg and "expected 108 points" in msg


def test_corrupt_raw_files(tmp_path):
    p = tmp_path / "x.raw"
    with pytest.raises(NgspiceError, match="does not exist"):
        read_raw(p)
    p.write_bytes(b"")
    with pytest.raises(NgspiceError, match="empty"):
        read_raw(p)
    hdr = (
        b"Title: t\nPlotname: Transient Analysis\nFlags: real\nNo. Variables: 2\nNo. Points: 3\n"
        b"Variables:\n\t0\ttime\ttime\n\t1\tv(a)\tvoltage\n"
    )
    p.write_bytes(hdr)  # ngspice stopped inside the header
    with pytest.raises(NgspiceError, match="no 'Binary:'"):
        read_raw(p)
    good = np.arange(6, dtype="<f8").tobytes()
    p.write_bytes(hdr + b"Binary:\n" + good)
    r = read_raw(p)
    assert r.data.tolist() == [[0, 1], [2, 3], [4, 5]] and r["a"].tolist() == [1, 3, 5]
    p.write_bytes(hdr + b"Binary:\n" + good + b"\x00" * 12)  # data longer than the header says
    with pytest.raises(NgspiceError, match="corrupt"):
        read_raw(p)
    p.write_bytes(hdr.replace(b"No. Variables: 2", b"No. Variables: 3") + b"Binary:\n" + good)
    with pytest.raises(NgspiceError, match="3 variables but lists 2"):
        read_raw(p)
    p.write_bytes(hdr.replace(b"Flags: real", b"Flags: complex") + b"Binary:\n" + good + good)
    with pytest.raises(NgspiceError, match="complex data"):
        read_raw(p)
    p.write_bytes(hdr + b"Values:\n0\t0\n\t1\n2\t2\n\t3\n2\t4\n\t5\n")  # bad point index
    with pytest.raises(NgspiceError, match="indices"):
        read_raw(p)


# --------------------------------------------------------------- TRRANDOM facts (spu/ngspice/run.py doc)


def _trrandom(seed, cap=False, tmax="1", nt="1m", tstop="20m"):
    load = "C1 a 0 1 IC=0\nR1 a 0 1e12\n" if cap else "R1 a 0 1\n"
    seedline = f".options seed={seed}\n" if seed is not None else ""
    return (
        f"trrandom\nI1 0 a TRRANDOM(2 {nt} 0 1 0)\n{load}{seedline}"
        f".tran 10u {tstop} 0 {tmax}{' uic' if cap else ''}\n.end\n"
    )


def _held_values(raw, nt=1e-3, n=20):
    t, v = raw.time, raw["a"]
    vals = []
    for k in range(n):
        seg = v[(t > k * nt * (1 + 1e-9)) & (t <= (k + 1) * nt * (1 + 1e-9))]
        assert len(seg) >= 2 and np.ptp(seg) == 0, f"interval {k} not constant: {seg}"
        vals.append(seg[0])
    return np.array(vals)


@needs_ngspice
def test_trrandom_is_held_constant_and_seeded():
    a = run_ngspice(_trrandom(7, tmax="10u")).raw
    vals = _held_values(a)  # piecewise constant over each NT interval
    assert a["a"][0] == 0.0  # 0 at the operating point t = 0
    assert len(set(vals)) == len(vals)
    b = run_ngspice(_trrandom(7, tmax="10u")).raw
    assert np.array_equal(a.data, b.data)  # same seed: bit-identical
    c = run_ngspice(_trrandom(8, tmax="10u")).raw
    assert not np.allclose(_held_values(c), vals)
    # integrated into 1 F: V(k NT) = NT * cumsum(held values), exactly, for any tmax
    for tmax in ("10u", "1"):
        cap = run_ngspice(_trrandom(7, cap=True, tmax=tmax)).raw
        ks = np.arange(1, 21) * 1e-3
        got = np.interp(ks, cap.time, cap["a"])
        assert np.all(np.isin(np.round(ks, 12), np.round(cap.time, 12)))  # breakpoints at k NT
        np.testing.assert_allclose(got, 1e-3 * np.cumsum(vals), rtol=0, atol=1e-14)
        if tmax == "1":  # large tmax: ~5-6 time points per NT interval after the first one
            per = [
                np.sum((cap.time > k * 1e-3 * (1 + 1e-9)) & (cap.time <= (k + 1) * 1e-3 * (1 + 1e-9)))
                for k in range(1, 20)
            ]
            assert 3 <= np.mean(per) <= 8, per
