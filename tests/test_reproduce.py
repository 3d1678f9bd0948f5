"""`thermospice reproduce FIG`: documented CSV columns, PNGs, resume, errors, and the physics / ML
each figure is about.

Each figure runs once (module fixture) at sizes smaller than --quick (the `overrides` of
analysis.reproduce.reproduce; training is deterministic for fixed seeds on one thread), and several
tests read it. One test runs the documented `reproduce fig2 --quick` command itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time

import numpy as np
import pytest

from analysis.cli import main
from analysis.io import OutputFolderError, read_csv
from analysis.reproduce import (
    CURVE_COLUMNS,
    FIGURES,
    SUMMARY_COLUMNS,
    ReproduceError,
    ReproduceMismatchError,
    UnknownFigureError,
    reproduce,
)
from analysis.reproduce_fig2 import FIG2_COLUMNS, METHODS, scaling_exponent

PNG = b"\x89PNG\r\n\x1a\n"

# Smaller than --quick, for the test suite only.
TINY = {
    "fig2": {
        "batch": 16,
        "widths": [8, 16, 32],
        "dz_values": [2, 10],
        "n_target": 1000,
        "ngd_max_n": 2500,
        "cg_iters": 20,
        "reps": 15,
        "budget_s": 0.3,
    },
    "fig3": {"width": 8, "batch": 16, "seeds": 2, "tngd_steps": 24, "adam_steps": 48},
    "fig4": {"seeds": 1, "steps": 30, "t_values": [1.0, 5.0, 200.0], "td_values": [0.0, 5.0]},
    "fig7": {"seeds": 2, "steps": 30, "kappa0_values": [0.0, 0.1]},
}
# fig5 (a transformer) has its own end-to-end test in tests/test_lm.py.
DIGITS_FIGURES = tuple(f for f in FIGURES if f != "fig5")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("reproduce")
    return {
        fig: reproduce(fig, str(base / fig), quick=True, progress=False, overrides=TINY[fig]) for fig in DIGITS_FIGURES
    }


def _f(v) -> float:
    return float(v) if v not in ("", None) else math.nan


def _summary(res, label_start, panel=None):
    rows = [
        r
        for r in read_csv(res.summary_path)
        if r["label"].startswith(label_start) and (panel is None or r["panel"] == panel)
    ]
    assert len(rows) == 1, (label_start, [r["label"] for r in read_csv(res.summary_path)])
    return {k: (_f(v) if k not in ("figure", "panel", "label", "optimizer") else v) for k, v in rows[0].items()}


# -- outputs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("fig", DIGITS_FIGURES)
def test_writes_documented_csv_and_png(runs, fig):
    res = runs[fig]
    assert res.computed > 0 and res.skipped == 0
    with open(res.csv_path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header == [c for c, _ in (FIG2_COLUMNS if fig == "fig2" else CURVE_COLUMNS)]
    rows = read_csv(res.csv_path)
    assert rows
    with open(res.png_path, "rb") as fh:
        assert fh.read(8) == PNG
    assert os.path.getsize(res.png_path) > 5000
    manifest = json.load(open(res.manifest_path))
    assert manifest["figure"] == fig and manifest["quick"] is True
    if fig == "fig2":
        assert res.summary_path is None
        ok = [r for r in rows if r["status"] == "ok"]
        assert all(_f(r["seconds_per_iter"]) > 0 and int(r["reps"]) >= 2 for r in ok)
        assert {r["method"] for r in rows} == set(METHODS)
        return
    with open(res.summary_path, newline="") as fh:
        assert next(csv.reader(fh)) == [c for c, _ in SUMMARY_COLUMNS]
    summary = read_csv(res.summary_path)
    labels = list(dict.fromkeys((r["panel"], r["label"]) for r in rows))
    assert len(summary) == len(labels)
    for s in summary:
        steps = int(s["steps"])
        curve = [r for r in rows if (r["panel"], r["label"]) == (s["panel"], s["label"])]
        assert [int(r["step"]) for r in curve] == list(range(1, steps + 1))
        assert all(math.isfinite(_f(r["train_loss_mean"])) and _f(r["train_loss_std"]) >= 0 for r in curve)
        est = [_f(r["estimated_s_mean"]) for r in curve]
        assert est[0] > 0 and all(np.diff(est) > 0), "cumulative estimated runtime must grow every step"
        assert math.isfinite(_f(s["final_test_loss_mean"])) and 0 <= _f(s["final_test_error_mean"]) <= 1


# -- Fig. 2 ---------------------------------------------------------------------------------------
def test_fig2_tngd_time_is_digital_plus_modelled_device(runs):
    rows = [r for r in read_csv(runs["fig2"].csv_path) if r["method"] == "tngd"]
    assert rows
    for r in rows:
        assert _f(r["seconds_per_iter"]) == pytest.approx(_f(r["digital_s"]) + _f(r["device_s"]), rel=1e-6)
        # 50 tau = 50 us of analog time plus the link, DACs and ADCs: tens of microseconds to a millisecond
        assert 50e-6 <= _f(r["device_s"]) < 5e-3
        assert _f(r["t_tau"]) == 50.0
    for r in read_csv(runs["fig2"].csv_path):
        if r["method"] != "tngd":
            assert _f(r["device_s"]) == 0


def test_fig2_dense_ngd_scales_much_worse_than_tngd(runs):
    rows = read_csv(runs["fig2"].csv_path)
    # Dense NGD forms N x N and factorises it (N^2 m + N^3); TNGD's digital part is linear in N.
    ngd, tngd = scaling_exponent(rows, "N", "ngd"), scaling_exponent(rows, "N", "tngd")
    assert ngd > 1.5 and ngd > tngd + 0.5, (ngd, tngd)
    big = max(int(r["N"]) for r in rows if r["sweep"] == "N" and r["method"] == "ngd" and r["status"] == "ok")
    t = {r["method"]: _f(r["seconds_per_iter"]) for r in rows if r["sweep"] == "N" and int(r["N"]) == big}
    assert t["tngd"] < t["ngd"] / 3 and t["tngd"] < t["ngd-cg"]


def test_fig2_skips_dense_ngd_above_its_limit(tmp_path):
    res = reproduce(
        "fig2",
        str(tmp_path),
        quick=True,
        progress=False,
        overrides={**TINY["fig2"], "widths": [8, 64], "dz_values": [2], "ngd_max_n": 1000},
    )
    rows = read_csv(res.csv_path)
    big = [r for r in rows if r["method"] == "ngd" and int(r["N"]) > 1000]
    assert big and all(r["status"].startswith("skipped") and r["seconds_per_iter"] == "" for r in big)
    assert read_csv(res.csv_path)  # the plot skips the blanks


# -- Fig. 3 ---------------------------------------------------------------------------------------
def test_fig3_tngd_beats_adam_per_iteration_and_costs_more_per_iteration(runs):
    res = runs["fig3"]
    rows = read_csv(res.csv_path)
    tngd, adam = _summary(res, "TNGD"), _summary(res, "Adam")
    assert tngd["seeds"] == adam["seeds"] == 2
    k = int(tngd["steps"])
    at_k = {r["optimizer"]: _f(r["test_loss_mean"]) for r in rows if int(r["step"]) == k}
    assert at_k["tngd"] < at_k["adam"] - 0.02, at_k  # natural gradient: more progress per step
    assert tngd["estimated_s_per_step"] > adam["estimated_s_per_step"]  # ... for more work per step
    # both curves are compared at the shorter run's total estimated time
    assert tngd["common_time_s"] == adam["common_time_s"] == min(tngd["estimated_s_mean"], adam["estimated_s_mean"])
    assert math.isfinite(tngd["test_loss_at_common_time"]) and math.isfinite(adam["test_loss_at_common_time"])


# -- Fig. 4 ---------------------------------------------------------------------------------------
def test_fig4a_natural_gradient_beats_sgd_and_tngd_finishes(runs):
    res = runs["fig4"]
    ngd = _summary(res, "NGD", "a")["final_test_loss_mean"]
    sgd = _summary(res, "SGD", "a")["final_test_loss_mean"]
    short = _summary(res, "TNGD t = 1 tau", "a")["final_test_loss_mean"]
    long_ = _summary(res, "TNGD t = 200 tau", "a")["final_test_loss_mean"]
    assert ngd < sgd - 0.1  # the natural gradient helps at all
    # How close t = 200 tau comes to NGD (and t = tau does not) is an empirical figure, measured by
    # benchmarks/bench_fig4_analog_time.py: no margin for it follows from theory.
    assert math.isfinite(short) and math.isfinite(long_)


def test_fig4b_delay_keeps_tngd_between_its_no_delay_run_and_stays_finite(runs):
    res = runs["fig4"]
    no_delay = _summary(res, "TNGD td = 0 tau (t = 5 tau)", "b")
    delayed = _summary(res, "TNGD td = 5 tau (t = 5 tau)", "b")
    assert no_delay["t_tau"] == delayed["t_tau"] == 5.0 and delayed["td_tau"] == 5.0
    # The delay keeps the device integrating towards the previous natural gradient: it moves the
    # estimate further from g towards A^-1 g, so at t = 5 tau it trains at least as fast as no delay.
    assert delayed["final_test_loss_mean"] <= no_delay["final_test_loss_mean"] + 0.01
    # Equal settings are one run, shared by both panels: TNGD t = 5 tau without delay, and NGD.
    # a: SGD, t = 1, 5, 200, NGD; b: td = 0 (= a's t = 5), td = 5, NGD (= a's): 6 runs, not 8.
    names = os.listdir(os.path.join(res.out, "runs"))
    assert sum(n.startswith("tngd-t5-td0-") for n in names) == 1
    assert len(names) == res.computed == 6
    a5 = _summary(res, "TNGD t = 5 tau", "a")
    assert a5["final_test_loss_mean"] == no_delay["final_test_loss_mean"]


# -- Fig. 7 ---------------------------------------------------------------------------------------
def test_fig7_large_noise_does_not_help_and_is_erratic(runs):
    res = runs["fig7"]
    clean, noisy = _summary(res, "kappa0 = 0 "), _summary(res, "kappa0 = 0.1")
    assert noisy["kappa0"] == 0.1 and clean["kappa0"] == 0.0
    assert noisy["final_test_loss_mean"] > clean["final_test_loss_mean"] - 0.02
    assert noisy["final_train_loss_mean"] > clean["final_train_loss_mean"] - 0.05
    assert noisy["final_test_error_mean"] > clean["final_test_error_mean"] - 0.02
    # The seeds differ in initial weights and batches; the noise adds its own spread on top, and it
    # kicks the test loss up between evaluations, where the noiseless small-step run only falls.
    assert noisy["final_test_loss_std"] > 2 * clean["final_test_loss_std"]
    assert clean["test_loss_rise_mean"] < 1e-3 and noisy["test_loss_rise_mean"] > clean["test_loss_rise_mean"]


# -- resume ---------------------------------------------------------------------------------------
def test_rerun_on_same_folder_reuses_every_run(runs):
    res = runs["fig7"]
    before = open(res.csv_path).read()
    again = reproduce("fig7", res.out, quick=True, progress=False, overrides=TINY["fig7"])
    assert again.computed == 0 and again.skipped == res.computed
    assert open(again.csv_path).read() == before


def test_interrupted_training_figure_recomputes_only_what_is_missing(tmp_path):
    over = {**TINY["fig7"], "steps": 12}
    first = reproduce("fig7", str(tmp_path), quick=True, progress=False, overrides=over)
    runs_dir = os.path.join(str(tmp_path), "runs")
    victim = sorted(os.listdir(runs_dir))[0]
    shutil.rmtree(os.path.join(runs_dir, victim))  # as if killed before this run started
    again = reproduce("fig7", str(tmp_path), quick=True, progress=False, overrides=over)
    assert again.computed == 1 and again.skipped == first.computed - 1
    cols = ("train_loss_mean", "test_loss_mean", "test_error_mean")  # deterministic; times are not
    a, b = read_csv(first.csv_path), read_csv(again.csv_path)
    assert [[r[c] for c in cols] for r in a] == [[r[c] for c in cols] for r in b]


def test_interrupted_fig2_times_only_missing_points(tmp_path):
    over = {**TINY["fig2"], "widths": [8], "dz_values": [2]}
    first = reproduce("fig2", str(tmp_path), quick=True, progress=False, overrides=over)
    lines = open(first.csv_path).read().splitlines()
    with open(first.csv_path, "w") as fh:  # keep 3 rows and half of the 4th, as after a kill
        fh.write("\n".join(lines[:4]) + "\n" + lines[4][: len(lines[4]) // 2])
    again = reproduce("fig2", str(tmp_path), quick=True, progress=False, overrides=over)
    assert again.skipped == 3 and again.computed == len(lines) - 1 - 3
    rows = read_csv(again.csv_path)
    assert [(r["sweep"], r["method"], r["N"]) for r in rows] == [
        tuple(l.split(",")[i] for i in (0, 1, 2)) for l in lines[1:]
    ]


# -- errors ---------------------------------------------------------------------------------------
def test_unknown_figure(capsys):
    with pytest.raises(UnknownFigureError, match="unknown figure 'fig6'; choose one of fig2, fig3, fig4, fig5, fig7"):
        reproduce("fig6")
    assert main(["reproduce", "fig6", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "unknown figure 'fig6'" in err and "fig2, fig3, fig4, fig5, fig7" in err and "Traceback" not in err


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputFolderError, match="it is a file"):
        reproduce("fig7", str(blocker), quick=True, progress=False, overrides=TINY["fig7"])
    with pytest.raises(OutputFolderError, match="cannot write results to folder"):
        reproduce("fig7", str(blocker / "sub"), quick=True, progress=False, overrides=TINY["fig7"])
    assert main(["reproduce", "fig7", "--quick", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thermospice: error: cannot write results to folder") and "Traceback" not in err


def test_folder_with_other_settings_is_refused(tmp_path):
    reproduce(
        "fig2", str(tmp_path), quick=True, progress=False, overrides={**TINY["fig2"], "widths": [8], "dz_values": [2]}
    )
    with pytest.raises(ReproduceMismatchError, match="other settings"):
        reproduce(
            "fig2",
            str(tmp_path),
            quick=True,
            progress=False,
            overrides={**TINY["fig2"], "widths": [16], "dz_values": [2]},
        )


def test_bad_sizes_and_threads(tmp_path):
    with pytest.raises(ReproduceError, match="unknown size parameter"):
        reproduce("fig4", str(tmp_path), quick=True, overrides={"nope": 1})
    with pytest.raises(ReproduceError, match="t_values must be a non-empty list"):
        reproduce("fig4", str(tmp_path), quick=True, overrides={"t_values": []})
    with pytest.raises(ReproduceError, match="threads"):
        reproduce("fig7", str(tmp_path), quick=True, threads=0, overrides=TINY["fig7"])
    assert main(["reproduce", "fig7", "--quick", "--threads", "0", "--out", str(tmp_path / "x")]) == 2


def test_help_documents_figures_and_columns(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    out = capsys.readouterr().out
    for word in (
        "fig2",
        "fig3",
        "fig4",
        "fig5",
        "fig7",
        "--quick",
        "heldout_f1_mean",
        "seconds_per_iter",
        "test_error_mean",
        "final_test_loss_mean",
        "resume",
    ):
        assert word in out


# -- the documented quick command itself ----------------------------------------------------------
def test_cli_quick_fig2_end_to_end(tmp_path, capsys):
    start = time.perf_counter()
    assert main(["reproduce", "fig2", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - start < 120
    out = capsys.readouterr().out
    assert "fig2:" in out and str(tmp_path / "fig2.csv") in out
    rows = read_csv(str(tmp_path / "fig2.csv"))
    assert {r["sweep"] for r in rows} == {"N", "dz"} and len(rows) == 5 * (4 + 4)
