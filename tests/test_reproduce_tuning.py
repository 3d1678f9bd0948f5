"""`thermospice reproduce tuning` on a tiny grid: the files it promises, the choice of the best
configuration, the damping stage at the best learning rate, and resume (a finished folder is
reused, a crash loses only the run in flight, a folder with another grid is refused)."""

from __future__ import annotations

import csv
import math
import os

import pytest

from analysis.cli import main
from analysis.reproduce import ReproduceMismatchError
from analysis.reproduce_tuning import CONFIG_COLUMNS, CURVE_COLUMNS, METHODS, RUN_COLUMNS, reproduce_tuning

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {
    "steps": 3,
    "seeds": 2,
    "eval_every": 3,
    "width": 4,
    "batch": 8,
    "lr_grid": {"sgd": [0.1, 1.0], "adam": [1e-3, 1e-2], "tngd": [0.03, 0.3], "tngd-adam": [1e-3, 1e-2]},
    "damping_grid": [0.01, 0.1],
}
# stage 1: 4 methods x 2 lr x 2 seeds; stage 2: 2 natural-gradient methods x 1 other lambda x 2 seeds
N_RUNS = 4 * 2 * 2 + 2 * 1 * 2


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _header(path):
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tuning") / "out")
    res = reproduce_tuning(out, quick=True, progress=False, workers=1, overrides=TINY)
    return out, res


def test_files_and_columns(grid):
    out, res = grid
    assert res.computed == N_RUNS and res.skipped == 0
    for name, cols in (
        ("tuning_runs.csv", RUN_COLUMNS),
        ("tuning.csv", CONFIG_COLUMNS),
        ("tuning_best.csv", CONFIG_COLUMNS),
        ("tuning_curves.csv", CURVE_COLUMNS),
    ):
        assert _header(os.path.join(out, name)) == [c for c, _ in cols], name
    for png in ("tuning_lr.png", "tuning_best.png"):
        with open(os.path.join(out, png), "rb") as fh:
            assert fh.read(8) == PNG, png
    runs = _rows(os.path.join(out, "tuning_runs.csv"))
    assert len(runs) == len({r["run"] for r in runs}) == N_RUNS
    assert all(r["status"] == "ok" and int(r["steps"]) == TINY["steps"] for r in runs)
    # every run trained in its own resumable folder
    for r in runs:
        assert os.path.exists(os.path.join(out, "runs", r["run"], "checkpoint.pt"))


def test_best_is_the_lowest_mean_loss_and_stage2_uses_its_lr(grid):
    out, _ = grid
    configs = _rows(os.path.join(out, "tuning.csv"))
    runs = _rows(os.path.join(out, "tuning_runs.csv"))
    best = _rows(os.path.join(out, "tuning_best.csv"))
    assert sorted(b["method"] for b in best) == sorted(METHODS)
    for b in best:
        mine = [c for c in configs if c["method"] == b["method"]]
        assert float(b["final_train_loss_mean"]) == min(float(c["final_train_loss_mean"]) for c in mine)
        # the mean really is over the seeds' rows in tuning_runs.csv
        seeds = [
            float(r["final_train_loss"])
            for r in runs
            if r["method"] == b["method"] and float(r["lr"]) == float(b["lr"]) and r["damping"] == b["damping"]
        ]
        assert len(seeds) == TINY["seeds"]
        assert float(b["final_train_loss_mean"]) == pytest.approx(sum(seeds) / len(seeds), rel=1e-9)
    for method in ("tngd", "tngd-adam"):
        first = [c for c in configs if c["method"] == method and c["stage"] == "1"]
        best1 = min(first, key=lambda c: float(c["final_train_loss_mean"]))
        second = [c for c in configs if c["method"] == method and c["stage"] == "2"]
        assert [(c["lr"], c["damping"]) for c in second] == [(best1["lr"], "0.1")]
    # the curves are the best runs' mean loss per step, with a growing estimated runtime
    curves = _rows(os.path.join(out, "tuning_curves.csv"))
    for b in best:
        mine = [c for c in curves if c["method"] == b["method"]]
        assert [int(c["step"]) for c in mine] == [1, 2, 3]
        est = [float(c["estimated_s_mean"]) for c in mine]
        assert all(e > 0 and math.isfinite(e) for e in est) and est == sorted(est)


def test_rerun_reuses_everything(grid):
    out, _ = grid
    before = open(os.path.join(out, "tuning.csv")).read()
    res = reproduce_tuning(out, quick=True, progress=False, workers=1, overrides=TINY)
    assert res.computed == 0 and res.skipped == N_RUNS
    assert open(os.path.join(out, "tuning.csv")).read() == before


def test_crash_loses_only_the_cut_rows(grid, tmp_path):
    out, _ = grid
    path = os.path.join(out, "tuning_runs.csv")
    text = open(path).read()
    lines = text.splitlines(keepends=True)
    # a crash while writing: the last row cut in half, the one before lost entirely
    open(path, "w").write("".join(lines[:-2]) + lines[-1][: len(lines[-1]) // 2])
    res = reproduce_tuning(out, quick=True, progress=False, workers=1, overrides=TINY)
    assert res.computed == 2 and res.skipped == N_RUNS - 2
    rows = _rows(path)
    assert len({r["run"] for r in rows if r["status"] == "ok"}) == N_RUNS


def test_other_grid_in_the_same_folder_is_refused(grid):
    out, _ = grid
    with pytest.raises(ReproduceMismatchError):
        reproduce_tuning(out, quick=True, progress=False, workers=1, overrides={**TINY, "steps": 4})


def test_process_pool_gives_the_same_runs(grid, tmp_path):
    """Two worker processes: the same rows (one thread per run makes training deterministic)."""
    out, _ = grid
    small = {**TINY, "lr_grid": {k: v[:1] for k, v in TINY["lr_grid"].items()}, "seeds": 1}
    ref = reproduce_tuning(str(tmp_path / "serial"), quick=True, progress=False, workers=1, overrides=small)
    par = reproduce_tuning(str(tmp_path / "pool"), quick=True, progress=False, workers=2, overrides=small)
    assert par.computed == ref.computed == 4 + 2
    key = ("run", "status", "final_train_loss", "final_test_accuracy")
    a = sorted(tuple(r[k] for k in key) for r in _rows(os.path.join(tmp_path, "serial", "tuning_runs.csv")))
    b = sorted(tuple(r[k] for k in key) for r in _rows(os.path.join(tmp_path, "pool", "tuning_runs.csv")))
    assert a == b


def test_bad_grid_is_refused_clearly(tmp_path, capsys):
    from analysis.reproduce import ReproduceError

    with pytest.raises(ReproduceError, match="damping_grid must contain"):
        reproduce_tuning(
            str(tmp_path / "x"), quick=True, progress=False, workers=1, overrides={**TINY, "damping_grid": [0.1]}
        )
    assert main(["reproduce", "tuning", "--quick", "--workers", "0", "--out", str(tmp_path / "y")]) == 2
    assert "workers must be an integer >= 1" in capsys.readouterr().err
