"""Messages that used to mislead (issue 21 item 6): each refusal says what is wrong, and where it
gives advice, following the advice works."""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import numpy as np
import pytest
from cases import assert_one_line_error, call

from circuits.design import Design
from circuits.topologies import build
from spu import SPU, DenseProblem, ProblemError
from spu.core.errors import NgspiceTimeout
from spu.ngspice.session import NgspiceSession

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")


def spanning(smallest: float, n: int = 6, seed: int = 0) -> DenseProblem:
    """Diagonally dominant SPD (condition 100) whose entries span 1e3/smallest: the diagonal from
    10 to 1e3, off-diagonal magnitudes from `smallest` to 0.1, both signs."""
    rng = np.random.default_rng(seed)
    A = np.zeros((n, n))
    iu = np.triu_indices(n, 1)
    mags = np.logspace(np.log10(smallest), -1, len(iu[0]))
    rng.shuffle(mags)
    A[iu] = mags * rng.choice([-1.0, 1.0], len(mags))
    A = A + A.T
    A[np.diag_indices(n)] = np.logspace(1, 3, n)
    return DenseProblem(A, rng.normal(size=n))


def _rel(x, xs) -> float:
    return float(np.linalg.norm(x - xs) / np.linalg.norm(xs))


@needs_ngspice
@pytest.mark.parametrize("topology", ["dense", "oscillator"])
def test_entries_spanning_less_than_the_range_are_placed_by_a_smaller_scale(topology):
    """Entries spanning 1e6 in a range of 1e7: the largest at R0 (s = 1000) would leave the smallest
    open (R0 * 1e6 > r_max) at an error of 8e-5; s = 100 places them all, with a step cap 10x
    smaller so that ngspice resolves the 10x faster circuit, and the run settles to the direct
    solve within its settling tolerance."""
    p = spanning(1e-3)
    c = build(p, topology)
    assert c.scale == pytest.approx(100.0) and c.record.open_count() == 0
    assert c.record.step == pytest.approx(0.1)
    spu = SPU("ngspice", topology=topology)
    res = spu.run(p, t=spu.settling_time(p))
    assert res.report["timing"]["scale"] == pytest.approx(100.0)
    assert _rel(res.x, np.linalg.solve(p.A, p.b)) <= 1.5e-6  # settle_tol 1e-6 from the slowest mode
    # A problem that already fit keeps its scale and step (its netlist is unchanged).
    ok = spanning(1e-2)
    assert build(ok, topology).scale == 1000.0 and build(ok, topology).record.step == 1.0


@needs_ngspice
def test_entries_spanning_more_than_the_range_get_advice_that_works(capsys, tmp_path):
    """Entries spanning 1e8 > r_max/r_min = 1e7: the one-line error names both bounds that would
    place them, and either one, followed, solves the system."""
    p = spanning(1e-5)
    np.save(tmp_path / "A.npy", p.A)
    np.save(tmp_path / "b.npy", p.b)
    args = ["--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy", "--t", "auto", "--json"]
    rc, out, err = call(capsys, "solve", *args)
    advice = r"the entries span 1e\+08, r_max/r_min = 1e\+07\): widen \[r_min, r_max\] to a ratio >= 1e\+08: lower r_min to (\S+) or raise r_max to (\S+) "
    assert_one_line_error(rc, out, err, r"left open", advice)
    r_min, r_max = re.search(advice, err).groups()
    xs = np.linalg.solve(p.A, p.b)
    for bound in (["--r-min", r_min], ["--r-max", r_max]):
        rc, out, err = call(capsys, "solve", *args, *bound)
        assert rc == 0, err
        assert _rel(np.array(json.loads(out)["x"]), xs) <= 1.5e-6
    assert build(p, "dense", Design(r_min=float(r_min))).record.open_count() == 0


@pytest.mark.parametrize("command", [["solve"], ["report"], ["solve", "--topology", "oscillator"]])
def test_resistors_quantised_to_a_singular_system_are_refused(capsys, tmp_path, command):
    """bits_r = 1 leaves one conductance step: A/2 = [[1, -0.25], [-0.25, 0.5]] rounds to
    [[1, 0], [0, 0]], which has no steady state (was: "Singular matrix" after the whole run)."""
    np.save(tmp_path / "A.npy", np.array([[2.0, -0.5], [-0.5, 1.0]]))
    np.save(tmp_path / "b.npy", np.ones(2))
    args = [*command, "--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy"]
    rc, out, err = call(capsys, *args, "--bits-r", "1")
    assert_one_line_error(
        rc,
        out,
        err,
        r"bits_r = 1 quantises each array to 1 conductance step.*3 nonzero entries "
        r"round to 0 .*singular; raise bits_r",
    )
    rc, out, err = call(capsys, *args, "--bits-r", "2")
    assert rc == 0, err


@pytest.mark.parametrize(
    "content, says",
    [
        ("npz", r"z\.npy: it is an \.npz archive \(a zip of arrays\), not an \.npy file"),
        (b"1 0\n0 1\n", r"t\.npy: it is a text file, not an \.npy file: name it \.txt or \.csv"),
        (b"", r"t\.npy: it is empty"),
        (b"\x80\x04\x95 pickle", r"t\.npy: it is pickled Python data"),
        (bytes(range(256)), r"t\.npy: it is not an \.npy file \(no NumPy header\)"),
    ],
    ids=["npz", "text", "empty", "pickle", "binary"],
)
def test_a_file_named_npy_that_is_not_one_is_called_what_it_is(capsys, tmp_path, content, says):
    """np.load opens a zip as an .npz archive (was: "A holds <U1 data") and calls any other
    non-.npy file pickled (was: a text file "contains pickled (object) data")."""
    np.save(tmp_path / "b.npy", np.ones(2))
    if content == "npz":
        np.savez(tmp_path / "z.npz", A=np.eye(2))
        path = (tmp_path / "z.npz").rename(tmp_path / "z.npy")
    else:
        path = tmp_path / "t.npy"
        path.write_bytes(content)
    rc, out, err = call(capsys, "solve", "--A", path, "--b", tmp_path / "b.npy")
    assert_one_line_error(rc, out, err, r"--A: cannot read .*" + says)
    assert "pickled (object)" not in err and "<U1" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_output_file_is_named(capsys, tmp_path):
    """A write error carries no file name (was: "[Errno 28] No space left on device")."""
    np.save(tmp_path / "A.npy", np.array([[2.0, -0.5], [-0.5, 1.0]]))
    np.save(tmp_path / "b.npy", np.ones(2))
    problem = ["--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy"]
    rc, out, err = call(capsys, "netlist", *problem, "-o", "/dev/full")
    assert rc == 2
    assert_one_line_error(rc, out, err, r"cannot write /dev/full: No space left on device")
    # sample writes PREFIX_NAME.npy: the first of them a link to /dev/full.
    (tmp_path / "s_mean.npy").symlink_to("/dev/full")
    rc, out, err = call(capsys, "sample", *problem, "--backend", "ou", "--samples", "10", "-o", tmp_path / "s")
    assert rc == 2
    assert_one_line_error(rc, out, err, r"cannot write .*s_mean\.npy: No space left on device")


@pytest.mark.parametrize("command", ["solve", "report", "netlist"])
@pytest.mark.parametrize("value", ["5", "0", "1", "nan"])
def test_settle_tol_is_checked_whatever_t_is(capsys, tmp_path, command, value):
    """--settle-tol outside (0, 1) was ignored unless --t auto read it."""
    np.save(tmp_path / "A.npy", np.array([[2.0, -0.5], [-0.5, 1.0]]))
    np.save(tmp_path / "b.npy", np.ones(2))
    args = [command, "--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy", "--t", "10", "--settle-tol", value]
    if command == "netlist":
        args += ["-o", tmp_path / "x.cir"]
    rc, out, err = call(capsys, *args)
    assert rc == 2
    assert_one_line_error(rc, out, err, r"--settle-tol: must be a fraction in \(0, 1\), got '" + re.escape(value))


def test_settle_tol_is_checked_by_the_library_too():
    p = DenseProblem(np.array([[2.0, -0.5], [-0.5, 1.0]]), np.ones(2))
    with pytest.raises(ProblemError, match=r"settling tolerance must be in \(0, 1\), got 5"):
        SPU("direct").run(p, t=10.0, settle_tol=5)
    assert SPU("direct").run(p, t=10.0, settle_tol=0.5).x.shape == (2,)


def test_session_start_up_waits_no_longer_than_its_timeout(tmp_path):
    """The start-up wait was 30 s whatever the session's timeout: a child that never answers is
    now killed after the timeout when that is shorter, with a message saying it did not start."""
    fake = tmp_path / "ngspice"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    session = NgspiceSession(timeout=0.5, ngspice=str(fake))
    try:
        start = time.monotonic()
        with pytest.raises(NgspiceTimeout, match=r"did not answer within 0.5 s of starting .* was killed"):
            session.load("* nothing\n.end\n")
        assert time.monotonic() - start < 5.0
        assert not session.alive
    finally:
        session.close()


@needs_ngspice
def test_real_ngspice_starts_within_a_short_timeout():
    with NgspiceSession(timeout=5.0) as session:
        session.load("* divider\nV1 a 0 1\nR1 a b 1k\nR2 b 0 1k\n.end\n")
        run = session.tran(1e-6, 1e-5, 1e-6)
        assert np.allclose(run.raw["b"], 0.5)


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--opamp-slew", "-1"], r"^thermospice: error: --opamp-slew \(V/s\) must be a finite number > 0, got -1"),
        (["--opamp-offset", "20"], r"--opamp-offset \(20 V\) is not below the output range \(\+-15 V\)"),
        (["--opamp-swing", "1", "--opamp-offset", "2"], r"--opamp-offset \(2 V\) is not below .*\+-1 V"),
        (["--opamp-swing", "20"], r"--opamp-swing \(20 V\) exceeds the rails"),
        (["--opamp-bias", "-2"], r"--opamp-bias \(A\) must be"),
        (["--opamp-flicker-corner", "10"], r"--opamp-flicker-corner needs --opamp-noise > 0"),
        (["--opamp-noise=-1e-9"], r"--opamp-noise \(V/sqrt\(Hz\)\) must be"),
        (["--dac-inl", "1"], r"--dac-inl is in LSB: set --bits-dac too"),
        (["--adc-gain-error", "0.7"], r"--adc-gain-error \(relative sigma\) must be .* <= 0.5, got 0.7"),
        (["--dac-offset", "11"], r"--dac-offset \(11 V\) is not below the full scale \(10 V\)"),
        (["--preset", "opamp-fast", "--opamp-swing", "13"], r"--opamp-swing \(13 V\) exceeds the rails \(\+-12 V\)"),
        (
            ["--preset", "opamp-precision,nope"],
            r"argument --preset: unknown preset 'nope'; choose from opamp-precision, ",
        ),
        (["--tol-r", "0.6"], r"--tol-r must be a relative tolerance"),
    ],
)
@pytest.mark.parametrize("command", ["solve", "train"])
def test_bad_design_options_name_the_option(capsys, tmp_path, extra, says, command):
    """A bad value of an issue-17 option, alone or against another (the rails, the swing, the
    bits), is one line naming the option as it is typed, not the Design field behind it."""
    if command == "train":
        args = ["train", "--backend", "asbuilt", "--steps", "1", "--out", tmp_path / "run"]
    else:
        np.save(tmp_path / "A.npy", np.array([[2.0, -0.5], [-0.5, 1.0]]))
        np.save(tmp_path / "b.npy", np.ones(2))
        args = ["solve", "--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy"]
    rc, out, err = call(capsys, *args, *extra)
    line = assert_one_line_error(rc, out, err, says)
    assert not re.search(r"opamp (slew|offset|swing|bias)|flicker_corner|gain_error|dac inl", line), line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content, says",
    [
        ('{"opamp": {"slw": 1}}', r"design file \S+d\.json: unknown key 'opamp\.slw'; the opamp keys are gain, gbw"),
        ('{"bits": 8}', r"unknown key 'bits'; the keys are R0, C, r_min"),
        ('{"opamp": 3}', r"opamp must be an object of its fields, got 3"),
        ('{"autoscale": "no"}', r"autoscale must be true or false, got 'no'"),
        ('{"opamp": {"slew": -3}}', r"design file \S+d\.json: key 'opamp\.slew' \(V/s\) must be a finite number > 0"),
        ('{"dac": {"inl": 2}}', r"key 'dac\.inl' is in LSB: set key 'bits_dac' too"),
        ("__import__('os')", r"design file \S+d\.json is not JSON"),
        ("[1, 2]", r"expected an object of design fields, got list"),
    ],
)
def test_bad_design_files_name_the_key(capsys, tmp_path, content, says):
    """A design file is data: JSON only (never run), every key checked, each error naming it."""
    (tmp_path / "d.json").write_text(content)
    np.save(tmp_path / "A.npy", np.array([[2.0, -0.5], [-0.5, 1.0]]))
    np.save(tmp_path / "b.npy", np.ones(2))
    args = ["report", "--A", tmp_path / "A.npy", "--b", tmp_path / "b.npy", "--design-file", tmp_path / "d.json"]
    rc, out, err = call(capsys, *args)
    assert_one_line_error(rc, out, err, says)
