"""The run folder (spu/run_folder.py) and `train`'s use of it: checkpoints that never run code, one
run per folder, and resumes that check their files (a cut-off last row recovered, everything else
damaged refused in one line naming the file), a full disk that leaves the folder resumable."""

from __future__ import annotations

import errno
import json
import os
import pickle

import pytest
import torch

from analysis.cli import main
from spu.run_folder import (
    CsvLog,
    RunFolderError,
    RunFolderWriteError,
    atomic_write,
    check_manifest,
    hold_lock,
    load_checkpoint,
    read_rows,
    resume_rows,
    save_checkpoint,
)

SMALL = [
    "train",
    "--model",
    "mlp",
    "--width",
    "8",
    "--batch-size",
    "8",
    "--eval-every",
    "2",
    "--json",
    "--optimizer",
    "tngd",
    "--t",
    "2",
    "--td",
    "1",
]


def _train(capsys, out, steps):
    """(exit code, the final metrics or None, stderr) of `thermospice train` into `out`."""
    rc = main(SMALL + ["--steps", str(steps), "--out", str(out)])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out) if rc == 0 else None, captured.err


def _refused(capsys, out, steps, *names):
    """The run is refused in one line that names each of `names` (files of `out`)."""
    rc, _, err = _train(capsys, out, steps)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thermospice: error: "), err
    for name in names:
        assert str(out / name) in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted 4-step run (checkpoints at steps 2 and 4): what every resume must equal."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(SMALL + ["--steps", "4", "--out", str(out)]) == 0
    return json.loads((out / "final.json").read_text()), (out / "metrics.csv").read_text().splitlines()


def _same_run(final, whole_final):
    for key in ("final_train_loss", "final_test_loss", "final_test_accuracy", "steps"):
        assert final[key] == whole_final[key], key


# -- checkpoints run no code ----------------------------------------------------------------------
class _Payload:
    """Unpickling this runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("form", ["torch.save", "raw pickle"])
def test_crafted_checkpoint_is_refused_and_runs_nothing(form, capsys, tmp_path):
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    marker = tmp_path / "pwned"
    evil = {"step": _Payload(str(marker)), "cumulative": 0.0}
    if form == "torch.save":
        torch.save(evil, out / "checkpoint.pt")
    else:
        (out / "checkpoint.pt").write_bytes(pickle.dumps(evil))
    line = _refused(capsys, out, 4, "checkpoint.pt")
    assert "refused without running any of it" in line
    assert not marker.exists()


def test_checkpoint_holds_only_tensors_and_plain_data(capsys, tmp_path):
    """TNGD's state (its estimate, the stale system's inputs) loads with weights_only=True."""
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and torch.is_tensor(state["preconditioner"]["estimate"])


# -- one run per folder ---------------------------------------------------------------------------
def test_second_train_on_one_folder_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with hold_lock(str(out), "train", "train run"):  # as a train running in another process holds it
        line = _refused(capsys, out, 2)
    assert "another train run is running in" in line and str(out) in line
    assert not (out / "metrics.csv").exists()  # the refused run wrote nothing
    assert _train(capsys, out, 2)[0] == 0  # the lock goes with its holder


# -- resume checks its files ----------------------------------------------------------------------
def test_cut_off_last_row_is_recovered(whole, capsys, tmp_path):
    """Killed while writing row 3 (after the step-2 checkpoint): the half row is dropped, step 3 is
    run again, and the run equals the uninterrupted one."""
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    row3 = whole[1][3]
    with open(out / "metrics.csv", "a") as fh:
        fh.write(row3[: len(row3) // 2])
    (out / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # a write cut by the kill
    rc, final, err = _train(capsys, out, 4)
    assert rc == 0, err
    assert not (out / ".checkpoint.pt.k1ll3d.tmp").exists()
    _same_run(final, whole[0])
    lines = (out / "metrics.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["step", "1", "2", "3", "4"]


def _edit_metrics(out, edit):
    lines = (out / "metrics.csv").read_text().splitlines(keepends=True)
    (out / "metrics.csv").write_text("".join(edit(lines)))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda lines: lines[:2] + lines[3:], "steps 2 are missing"),  # a row removed
        (lambda lines: lines[:2], "steps 2 are missing"),  # rows removed at the end
        (lambda lines: lines[:1] + ["garbage\n"] + lines[2:], "line 2 has 1 fields"),  # a garbage row
        (lambda lines: lines[:1] + ["1" + lines[1][1:].replace("0", "x", 1)] + lines[2:], "not a number"),
        (lambda lines: lines[:2] + [lines[2][: len(lines[2]) // 2]], "steps 2 are missing"),  # row 2 cut: lost
        (lambda lines: ["step,loss\n"] + lines[1:], "has columns step,loss"),  # another file
    ],
)
def test_damaged_metrics_are_refused(damage, words, capsys, tmp_path):
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    _edit_metrics(out, damage)
    before = (out / "metrics.csv").read_bytes()
    line = _refused(capsys, out, 4, "metrics.csv")
    assert words in line, line
    assert (out / "metrics.csv").read_bytes() == before  # left as it was, for the user to look at


def test_truncated_checkpoint_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    assert "is damaged or not a checkpoint" in _refused(capsys, out, 4, "checkpoint.pt")


def test_broken_config_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    (out / "config.json").write_text('{"optimizer": "tngd", "lr"')
    assert "cannot read the run settings" in _refused(capsys, out, 4, "config.json")


def test_full_disk_during_checkpoint_leaves_the_folder_resumable(whole, capsys, tmp_path, monkeypatch):
    """The disk fills while the step-4 checkpoint is written: one line naming the file, no temporary
    file left, the step-2 checkpoint intact; with space again the run resumes to the same result."""
    out = tmp_path / "run"
    real_write, saves = os.write, []

    def full_disk(fd, data):
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            saves.append(fd)
            if len(saves) > 1:  # the first checkpoint (step 2) fits, the second does not
                real_write(fd, bytes(data)[:100])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    line = _refused(capsys, out, 4, "checkpoint.pt")
    monkeypatch.undo()
    assert "No space left on device" in line and "Traceback" not in line
    assert sorted(os.listdir(out)) == [".train.lock", "checkpoint.pt", "config.json", "metrics.csv"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 2
    rc, final, err = _train(capsys, out, 4)
    assert rc == 0, err
    _same_run(final, whole[0])


# -- the module itself ----------------------------------------------------------------------------
def test_atomic_write_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    atomic_write(str(path), "old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(RunFolderWriteError, match=f"cannot write {path}: No space left on device") as exc:
        atomic_write(str(path), "new")
    assert isinstance(exc.value, OSError) and exc.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_csv_log_and_read_rows(tmp_path):
    path = str(tmp_path / "log.csv")
    with CsvLog(path, ["step", "x"], [["1", "0.5"]]) as log:
        log.append([2, 'a "quoted", cell'])
    with open(path, "a") as fh:
        fh.write("3,0.2")  # cut off
    assert read_rows(path, ["step", "x"]) == [["1", "0.5"], ["2", 'a "quoted", cell']]
    # a file from before a column existed: its cells read as blank
    (tmp_path / "old.csv").write_text("step\n1\n")
    assert read_rows(str(tmp_path / "old.csv"), ["step", "x"], optional=("x",)) == [["1", ""]]
    with pytest.raises(RunFolderError, match="has columns step, not step,x"):
        read_rows(str(tmp_path / "old.csv"), ["step", "x"])


def test_resume_rows_drop_rows_after_the_checkpoint_and_refuse_gaps(tmp_path):
    path = str(tmp_path / "m.csv")
    CsvLog(path, ["step", "loss"], [["1", "0.5"], ["2", "nan"], ["3", ""], ["4", "0.1"]])
    assert resume_rows(path, ["step", "loss"], 3, "ck.pt") == [["1", "0.5"], ["2", "nan"], ["3", ""]]
    CsvLog(path, ["step", "loss"], [["2", "0.5"], ["1", "0.5"]])
    with pytest.raises(RunFolderError, match="repeated or out of order"):
        resume_rows(path, ["step", "loss"], 2, "ck.pt")
    with pytest.raises(RunFolderError, match=r"steps 1, 2 are missing"):
        resume_rows(str(tmp_path / "none.csv"), ["step", "loss"], 2, "ck.pt")


def test_manifest_written_checked_and_never_overwritten(tmp_path):
    path = str(tmp_path / "m.json")

    def refuse(keys, old):
        return RunFolderError(f"differs in {', '.join(keys)}")

    assert check_manifest(path, {"a": 1, "b": {"c": (1, 2)}}, refuse=refuse) is False
    assert check_manifest(path, {"a": 1, "b": {"c": [1, 2]}}, refuse=refuse) is True
    assert check_manifest(path, {"a": 2, "b": {"c": [1, 2]}}, refuse=refuse, ignore=("a",)) is True
    with pytest.raises(RunFolderError, match=r"differs in a, b\.c"):
        check_manifest(path, {"a": 2, "b": {"c": [1]}}, refuse=refuse)
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(RunFolderError, match=f"cannot read the manifest {path}"):
        check_manifest(path, {"a": 1}, refuse=refuse)
    assert (tmp_path / "m.json").read_text() == "{broken"
    (tmp_path / "data.csv").write_text("x\n1\n")
    with pytest.raises(RunFolderError, match="data.csv exists but new.json does not"):
        check_manifest(str(tmp_path / "new.json"), {}, refuse=refuse, orphans=(str(tmp_path / "data.csv"),))


def test_reproduce_refuses_an_unreadable_manifest(tmp_path):
    """It used to overwrite it: a folder whose manifest cannot be read holds results of unknown settings."""
    from analysis.reproduce import ReproduceMismatchError
    from analysis.reproduce import check_manifest as reproduce_manifest

    (tmp_path / "fig2.manifest.json").write_text("not json")
    with pytest.raises(ReproduceMismatchError, match="cannot read the manifest .*fig2.manifest.json"):
        reproduce_manifest(str(tmp_path), "fig2", {"quick": True, "size": {}})
    assert (tmp_path / "fig2.manifest.json").read_text() == "not json"


def test_checkpoint_round_trip_and_damage(tmp_path):
    path = str(tmp_path / "c.pt")
    save_checkpoint(path, {"step": 3, "x": torch.arange(4.0), "betas": (0.9, 0.99), "none": None})
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["x"], torch.arange(4.0)) and state["betas"] == (0.9, 0.99)
    (tmp_path / "c.pt").write_bytes(b"")
    with pytest.raises(RunFolderError, match=f"{path} is damaged or not a checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_carry_the_umask(tmp_path, mask):
    """Results are shared files: an atomic write gives the mode open() would (0666 less the umask),
    not mkstemp's 0600."""
    old = os.umask(mask)
    try:
        path = tmp_path / "result.csv"
        atomic_write(str(path), "a,b\n")
        with open(tmp_path / "plain.txt", "w") as fh:  # what a plain open() makes, for comparison
            fh.write("x")
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~mask)
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_sweep_results_are_not_private(tmp_path):
    """A whole run: the sweep's CSV, manifest and summary get the umask's mode like its PNG."""
    from analysis.sweeps import run_sweep

    old = os.umask(0o022)
    try:
        res = run_sweep("time", str(tmp_path), quick=True, workers=1, progress=False, backend="ou", t="lin:1:4:2")
    finally:
        os.umask(old)
    for p in (res.csv_path, res.manifest_path, res.summary_path, res.png_path):
        assert os.stat(p).st_mode & 0o777 == 0o644, p
