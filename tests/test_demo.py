"""`thermospice demo --quick` end to end: every file the report promises, and the physics it shows.

The demo runs once (module fixture, about a minute on 2 cores): a small TNGD crossbar circuit in
ngspice against the exact OU solution and the direct solve, its component report, TNGD (ou) against
Adam on digits, and a few TNGD steps with ngspice in the loop.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil

import pytest

from analysis.cli import main

pytestmark = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buf = io.StringIO()
    capture.setattr(sys, "stdout", buf)
    try:
        rc = main(["demo", "--quick", "--out", str(out)])
    finally:
        capture.undo()
    return {"rc": rc, "out": str(out), "stdout": buf.getvalue()}


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_demo_runs_and_names_its_report(demo):
    assert demo["rc"] == 0
    report = os.path.join(demo["out"], "report.md")
    assert f"report written to {report}" in demo["stdout"]
    for step in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert step in demo["stdout"]
    text = open(report).read()
    assert text.startswith("# thermospice demo (quick)")
    for section in ("## 1.", "## 2. Component report", "## 3. Training", "## 4. ngspice in the loop"):
        assert section in text
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):  # every image the report links exists
        with open(os.path.join(demo["out"], image), "rb") as fh:
            assert fh.read(8) == PNG


def test_demo_files(demo):
    out = demo["out"]
    for png in ("circuit_trajectory.png", "training.png", "train_tngd/loss.png", "train_adam/loss.png"):
        with open(os.path.join(out, png), "rb") as fh:
            assert fh.read(8) == PNG, png
    netlist = open(os.path.join(out, "tngd_crossbar.cir")).read()
    assert ".tran" in netlist and netlist.rstrip().endswith(".end")
    report = json.load(open(os.path.join(out, "component_report.json")))
    assert report["topology"] == "crossbar" and report["n"] > 0 and report["counts"]["resistors"] > 0


def test_circuit_matches_direct_solve_and_exact_ou(demo):
    m = re.search(
        r"relative error ([0-9.e+-]+); trajectory vs exact OU: max relative error ([0-9.e+-]+)", demo["stdout"]
    )
    assert m, demo["stdout"]
    assert float(m.group(1)) < 1e-4 and float(m.group(2)) < 1e-2
    rows = _rows(os.path.join(demo["out"], "circuit_trajectory.csv"))
    assert len(rows) == 101 and float(rows[0]["t_tau"]) == 0.0
    ng_cols = [c for c in rows[0] if c.startswith("ngspice_x")]
    assert len(ng_cols) == 3
    # the plotted coordinates move (not weights on the always-blank corner pixels, stuck at 0)
    for c in ng_cols:
        values = [float(r[c]) for r in rows]
        assert max(values) - min(values) > 1e-6, c
        ou = [float(r["ou_" + c.split("_", 1)[1]]) for r in rows]
        scale = max(abs(v) for v in ou)
        assert max(abs(a - b) for a, b in zip(values, ou)) < 1e-2 * scale


def test_training_pair(demo):
    for name in ("tngd", "adam"):
        run = os.path.join(demo["out"], f"train_{name}")
        final = json.load(open(os.path.join(run, "final.json")))
        rows = _rows(os.path.join(run, "metrics.csv"))
        assert final["steps"] == len(rows) == 20 and final["optimizer"] == name
        assert float(rows[-1]["cumulative_estimated_s"]) > 0
    tngd = json.load(open(os.path.join(demo["out"], "train_tngd", "final.json")))
    first = float(_rows(os.path.join(demo["out"], "train_tngd", "metrics.csv"))[0]["train_loss"])
    assert tngd["final_train_loss"] < first  # TNGD learns


def test_demo_names_the_winner_on_both_axes(demo):
    """Tuned against tuned: the verdict printed at equal steps and at equal estimated runtime is the
    one the two metrics.csv files give (loss averaged over the last 10 % of the steps)."""
    runs = {}
    for name in ("tngd", "adam"):
        rows = _rows(os.path.join(demo["out"], f"train_{name}", "metrics.csv"))
        runs[name] = ([float(r["train_loss"]) for r in rows], [float(r["cumulative_estimated_s"]) for r in rows])
    window = 2  # 20 steps

    def tail(losses, k):  # mean of the `window` losses up to step k (1-based)
        return sum(losses[max(0, k - window) : k]) / min(k, window)

    at_steps = {n: tail(l, 20) for n, (l, _) in runs.items()}
    T = min(t[-1] for _, t in runs.values())
    # A run whose first step already ends after T (its estimated step outlasts the other run) is read
    # at step 1, whose loss is taken before any update: the loss it has at T.
    at_time = {
        n: tail(l, max([i + 1 for i, x in enumerate(t) if x <= T * (1 + 1e-12)], default=1))
        for n, (l, t) in runs.items()
    }
    who = {"tngd": "TNGD", "adam": "Adam"}
    m = re.search(
        r"at equal steps \(20; loss averaged over the last 2\): TNGD ([0-9.]+), Adam ([0-9.]+): (\w+) wins",
        demo["stdout"],
    )
    assert m, demo["stdout"]
    assert float(m.group(1)) == pytest.approx(at_steps["tngd"], abs=1e-4)
    assert float(m.group(2)) == pytest.approx(at_steps["adam"], abs=1e-4)
    assert m.group(3) == who[min(at_steps, key=at_steps.get)]
    m = re.search(
        r"at equal estimated runtime \(([0-9.e+-]+) s\): TNGD ([0-9.]+) .*, Adam ([0-9.]+) .*: (\w+) wins",
        demo["stdout"],
    )
    assert m, demo["stdout"]
    assert float(m.group(1)) == pytest.approx(T, rel=1e-2)
    assert float(m.group(2)) == pytest.approx(at_time["tngd"], abs=1e-4)
    assert m.group(4) == who[min(at_time, key=at_time.get)]
    report = open(os.path.join(demo["out"], "report.md")).read()
    assert f"| **{m.group(4)}** |" in report and "tuned against tuned" in report


def test_ngspice_in_the_loop_agrees_with_ou(demo):
    rows = _rows(os.path.join(demo["out"], "ngspice_in_the_loop.csv"))
    assert len(rows) == 3 and [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(float(r["rel_diff"]) < 1e-3 for r in rows)


def test_demo_unwritable_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["demo", "--quick", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thermospice: error: cannot write the demo report to") and "Traceback" not in err


def test_verdict_averages_seeds(tmp_path):
    """Two seeds per method: the curves are the means of the smoothed losses and of the estimated
    times; the slower method is judged at the faster one's total time."""
    from analysis.demo_verdict import verdict

    def write(name, losses, dt):
        path = tmp_path / f"{name}.csv"
        rows = ["step,train_loss,cumulative_estimated_s"]
        rows += [f"{k + 1},{v},{dt * (k + 1)}" for k, v in enumerate(losses)]
        path.write_text("\n".join(rows) + "\n")
        return str(path)

    steps = 20  # window 2
    fast = [write("a0", [1.0] * steps, 0.1), write("a1", [3.0] * steps, 0.1)]  # mean 2.0, T = 2.0
    slow = [write("b0", [4.0 - 0.2 * k for k in range(steps)], 1.0), write("b1", [0.1] * steps, 1.0)]
    v = verdict({"adam": fast, "tngd": slow})
    assert v["seeds"] == 2 and v["steps"]["window"] == 2
    b0_tail = (4.0 - 0.2 * 18 + 4.0 - 0.2 * 19) / 2
    assert v["steps"]["loss"]["tngd"] == pytest.approx((b0_tail + 0.1) / 2)
    assert v["steps"]["loss"]["adam"] == pytest.approx(2.0) and v["steps"]["winner"] == "tngd"
    # at T = 2.0 s the slow method has done 2 steps: smoothed b0 = (4.0 + 3.8) / 2, b1 = 0.1
    assert v["runtime"]["time_s"] == pytest.approx(2.0) and v["runtime"]["step"]["tngd"] == 2
    assert v["runtime"]["loss"]["tngd"] == pytest.approx(((4.0 + 3.8) / 2 + 0.1) / 2)
    assert v["runtime"]["winner"] == "adam"
