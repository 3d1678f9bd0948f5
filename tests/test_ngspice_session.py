"""The long-lived ngspice session: same results as a fresh batch run, survives crashes and hangs,
and nothing but composed commands ever reaches its control channel (real ngspice throughout)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from test_netlist_safety import INJECTIONS

from circuits.design import Design
from circuits.topologies import build
from spu.core.errors import DesignError, NgspiceError, NgspiceTimeout
from spu.core.problems import FactoredProblem
from spu.ngspice.run import run_ngspice
from spu.ngspice.session import NgspiceSession

TRAN = (5e-9, 1e-6, 1e-8)  # 1 tau of the default design


def _circuit(b5: float | None = None):
    rng = np.random.default_rng(0)
    U = rng.uniform(-0.3, 0.3, (6, 2))
    return build(FactoredProblem(U, 1.0, rng.uniform(-1, 1, 6)), "factored", Design(), t=1.0)


def _with_line(text: str, prefix: str, new: str) -> str:
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return text.replace(line, new)


@pytest.fixture
def session():
    s = NgspiceSession(timeout=60)
    yield s
    s.close()


def test_session_matches_fresh_batch_run(session):
    text = _circuit().text()
    session.load(text)
    a = session.tran(*TRAN).raw
    b = run_ngspice(text).raw
    assert a.npoints == b.npoints
    for x in ("x0", "x5"):
        np.testing.assert_allclose(a[x], b[x], rtol=0, atol=1e-12)
    again = session.tran(*TRAN).raw  # re-running leaves no state behind
    np.testing.assert_array_equal(again["x3"], a["x3"])
    # Nor does another circuit in between: the same bits whatever the child ran before (sweeps
    # resume on that). (Against batch mode the last bit may differ: atol above.)
    other = build(FactoredProblem(np.eye(3)[:, :1], 2.0, np.ones(3)), "factored", Design(), t=1.0)
    session.load(other.text())
    session.tran(*TRAN)
    session.load(text)
    np.testing.assert_array_equal(session.tran(*TRAN).raw.data, a.data)


def test_alter_equals_a_fresh_netlist_with_the_new_values(session):
    text = _circuit().text()
    session.load(text)
    session.alter([("Rb2", None, 2345.0), ("Vdac1", "dc", 0.25), ("C4", "ic", -0.5)])
    a = session.tran(*TRAN).raw
    changed = _with_line(text, "Rb2 ", "Rb2 d2 s2 2345.0")
    changed = _with_line(changed, "Vdac1 ", "Vdac1 d1 0 DC 0.25")
    changed = _with_line(changed, "C4 ", "C4 s4 x4 1e-09 ic=-0.5")
    b = run_ngspice(changed).raw
    for x in ("x1", "x2", "x4"):
        np.testing.assert_allclose(a[x], b[x], rtol=0, atol=1e-12)
    assert abs(a["x4"][0] - 0.5) < 1e-4  # ic is V(s) - V(x): x4 starts at +0.5


def test_crash_between_and_during_runs_restarts_and_gives_the_same_result(session):
    text = _circuit().text()
    session.load(text)
    session.alter([("Rb2", None, 2345.0)])
    want = session.tran(*TRAN).raw["x2"]
    os.kill(session.pid, signal.SIGKILL)  # between runs
    time.sleep(0.05)
    run = session.tran(*TRAN)
    assert run.restarted and session.restarts == 1
    np.testing.assert_array_equal(run.raw["x2"], want)  # the alteration was replayed
    pid = session.pid
    # During a run: a longer transient, killed after it has started.
    long = (5e-9, 2e-4, 1e-9)
    threading.Timer(0.3, lambda: os.kill(pid, signal.SIGKILL)).start()
    run = session.tran(*long)
    assert run.restarted and session.restarts == 2 and session.pid != pid
    assert run.raw["time"][-1] == pytest.approx(2e-4)


def test_hang_is_killed_with_a_clear_error_and_the_next_run_works(session):
    session.load(_circuit().text())
    want = session.tran(*TRAN).raw["x1"]
    pid = session.pid
    session.timeout = 0.2
    with pytest.raises(NgspiceTimeout, match="timeout of 0.2 s and the child was killed"):
        session.tran(5e-9, 1e-2, 1e-10)  # ~1e8 steps: far past 0.2 s
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child is gone, not left running
    session.timeout = 60
    np.testing.assert_array_equal(session.tran(*TRAN).raw["x1"], want)


def test_bad_netlist_is_a_clear_error_and_the_session_stays_usable(session):
    with pytest.raises(NgspiceError, match="could not load"):
        session.load("bad\nR1 a 0 notanumber\n.end\n")
    with pytest.raises(NgspiceError, match="no circuit loaded"):
        session.tran(*TRAN)
    session.load(_circuit().text())
    assert session.tran(*TRAN).raw.npoints > 10


def test_close_stops_the_child_and_removes_its_directory():
    s = NgspiceSession(timeout=60)
    s.load(_circuit().text())
    s.tran(*TRAN)
    pid, directory = s.pid, s.dir
    s.close()
    assert not os.path.exists(directory)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- the control channel ------------------------------------------------------------------------
BAD_NUMBERS = [float("nan"), float("inf"), "1k", "1\nshell id", "1; shell id", True, None, [1.0], 1j]


@pytest.mark.parametrize("bad", INJECTIONS + ["R1;shell id", "R1 shell", "shell", "1R", ""])
def test_injected_names_params_and_files_are_refused(session, bad):
    session.load(_circuit().text())
    with pytest.raises(DesignError):
        session.alter([(bad, None, 1.0)])
    with pytest.raises(DesignError):
        session.alter([("Rb2", bad, 1.0)])
    with pytest.raises(DesignError):
        session.set_files({bad: b"0 0\n"})
    if not re.match(r"^[a-z][a-z0-9_]*$", bad):  # "shell.txt" is a harmless file name
        with pytest.raises(DesignError):
            session.set_files({bad + ".txt": b"0 0\n"})
    for path in ("../x.txt", "/tmp/x.txt", "circuit.cir", "out.raw"):
        with pytest.raises(DesignError):
            session.set_files({path: b"0 0\n"})


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_injected_numbers_are_refused(session, bad):
    session.load(_circuit().text())
    with pytest.raises(DesignError):
        session.alter([("Rb2", None, bad)])
    for k in range(3):
        args = list(TRAN)
        args[k] = bad
        with pytest.raises(DesignError):
            session.tran(*args)


NUMBER = r"-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+|inf)"
ALLOWED = re.compile(
    r"^(?:set filetype=binary|destroy all|remcirc|source circuit\.cir|write out\.raw|rusage all|echo TSDONE\d+"
    rf"|alter [RCLEGIVAB][A-Za-z0-9_]{{0,64}}(?: (?:dc|ic))? = {NUMBER}"
    rf"|tran {NUMBER} {NUMBER} 0 {NUMBER}(?: uic)?)$"
)


def test_every_line_sent_to_the_channel_is_on_the_allow_list(session, monkeypatch):
    sent: list[str] = []
    real = NgspiceSession._command

    def spy(self, lines, timeout, check=True):
        sent.extend(lines)
        return real(self, lines, timeout, check)

    monkeypatch.setattr(NgspiceSession, "_command", spy)
    session.load(_circuit().text(), files={"noise.txt": b"0 0\n"})
    session.alter([("Rb2", None, 2345.0), ("Vdac1", "dc", -0.25), ("C4", "ic", 1e-300)])
    session.tran(*TRAN)
    os.kill(session.pid, signal.SIGKILL)
    session.tran(*TRAN)  # restart path: reload + replayed alterations
    session.rusage()
    assert sent and all(ALLOWED.match(line) for line in sent), [ln for ln in sent if not ALLOWED.match(ln)]
