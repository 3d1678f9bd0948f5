"""The sweep kinds' registry and the one range syntax, without ngspice: a kind added in one
module runs end to end, the command line is built from the registry, and the training sweeps'
lists take the hardware sweeps' range spelling."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest

from analysis.ranges import parse_range
from analysis.sweep_errors import EmptyRangeError, SweepOptionError, UnknownKindError
from analysis.sweep_kinds import SWEEP_KINDS, TRAIN_KINDS, SweepKind, sweep_kind, train_kind
from analysis.sweep_kinds.base import POINT, REL, STATUS
from analysis.sweeps import run_sweep


class Doubled(SweepKind):
    """A toy kind: the ideal ou device at a few analog times, and twice the error as a result column."""

    name = "doubled"
    about = "a toy kind"
    columns = (POINT, ("scale", "a grid value"), REL, ("double_error", "2 rel_error"), STATUS)
    params = ("scale",)
    grid_options = frozenset({"scale"})
    defaults = {"scale": ("1,2", "1,2"), "seeds": (1, 1)}
    backends = ("ou",)
    random = False

    def add_grid_arguments(self, group):
        group.add_argument("--scale", nargs="+")

    def grid(self, given, quick, backend):
        return {"scale": parse_range("scale", self.default(given, "scale", quick), lo=0)}

    def points(self, spec, seeds):
        return [{"scale": s} for s in spec["grid"]["scale"]]

    def results(self, row, res, ctx, spec, t, kappa0):
        row["double_error"] = 2 * row["rel_error"]

    def plot(self, rows, spec, path):
        open(path, "w").write(f"{len(rows)} rows")


def test_a_kind_in_one_module_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setitem(SWEEP_KINDS, "doubled", Doubled())
    res = run_sweep("doubled", str(tmp_path), quick=True, workers=1, progress=False, scale="lin:1:3:3", t=2.0)
    with open(res.csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [c for c, _ in Doubled.columns] and len(rows) == res.total == 3
    assert all(float(r["double_error"]) == pytest.approx(2 * float(r["rel_error"])) for r in rows)
    assert (tmp_path / "doubled.png").read_text() == "3 rows" and res.summary_path is None
    with pytest.raises(SweepOptionError, match="runs on backend ou, not 'ngspice'"):
        run_sweep("doubled", str(tmp_path / "b"), backend="ngspice")
    with pytest.raises(SweepOptionError, match="--kappa0 does not apply to sweep doubled .it belongs to: noise, time"):
        run_sweep("doubled", str(tmp_path / "c"), kappa0="0.1")


def test_the_command_line_lists_the_registry_in_order(capsys):
    from analysis import cmd_sweep

    parser = argparse.ArgumentParser()
    cmd_sweep.add_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "heat"])
    names = list(SWEEP_KINDS) + list(TRAIN_KINDS)
    assert "(choose from " + ", ".join(repr(n) for n in names) + ")" in capsys.readouterr().err
    for name, kind in SWEEP_KINDS.items():  # every option of the kind is on its command line
        assert kind.options <= set(vars(parser.parse_args(["sweep", name]))), name


def test_unknown_kinds_are_clear_errors():
    with pytest.raises(UnknownKindError, match="unknown sweep kind 'heat'; choose one of noise, tolerance, bits"):
        sweep_kind("heat")
    with pytest.raises(UnknownKindError):
        sweep_kind(["noise"])
    with pytest.raises(SweepOptionError, match="unknown training sweep 'train-heat'; choose one of train-bits"):
        train_kind("train-heat")


def test_training_sweep_lists_keep_their_order_and_take_ranges():
    def args(**kw):
        return argparse.Namespace(**{"bits": None, "tol": None, "temperature": None, "kappa0": None, **kw})

    assert train_kind("train-bits").settings(args(bits="8,4,4")) == [8, 4, 4]  # order numbers the runs
    assert train_kind("train-bits").settings(args(bits="lin:4:8:3")) == [4, 6, 8]
    assert train_kind("train-bits").settings(args()) is None
    assert train_kind("train-tolerance").settings(args(tol="0.05, 0.01")) == [0.05, 0.01]
    assert train_kind("train-noise").settings(args(kappa0="0.1")) == [[0.0, 0.1], [300.0, 0.1]]
    with pytest.raises(SweepOptionError, match="--bits: 4.5 is not an integer"):
        train_kind("train-bits").settings(args(bits="4.5"))
    with pytest.raises(SweepOptionError, match="--tol: 'abc' is not a number"):
        train_kind("train-tolerance").settings(args(tol="abc"))
    with pytest.raises(EmptyRangeError, match="--temperature: empty range"):
        train_kind("train-noise").settings(args(temperature=","))
    assert parse_range("x", "3,1,3", sort=False) == [3.0, 1.0, 3.0]


def test_issue17_training_sweep_lists():
    """The op-amp and converter kinds read their values as ranges, in the order given; a preset
    name that does not exist, or a density that scales nothing, is refused naming the option."""

    def args(**kw):
        names = ("opamp_offset", "swing", "slew", "flicker_corner", "noise_density", "presets")
        return argparse.Namespace(
            **{**dict.fromkeys(names), "offset": None, "gain_error": None, "inl": None, "bits": None, **kw}
        )

    assert train_kind("train-offset").settings(args(opamp_offset="0,1e-3")) == [0.0, 1e-3]
    assert train_kind("train-saturation").settings(args(swing="log:0.1:10:3")) == [0.1, 1.0, 10.0]
    assert train_kind("train-slew").settings(args()) is None
    assert train_kind("train-flicker").settings(args(flicker_corner="10", noise_density=1e-8)) == [[1e-8, 10.0]]
    conv = train_kind("train-converters")
    assert conv.settings(args(offset="0,1e-3", inl="2", bits=10)) == [["", 10, 0.0, 0.0, 2.0], ["", 10, 1e-3, 0.0, 2.0]]
    assert conv.settings(args(presets="converter-16bit"))[0][:2] == ["converter-16bit", 16]
    assert conv.count(args(presets="converter-16bit", offset="1,2")) == 3
    assert train_kind("train-presets").settings(args(presets="opamp-fast")) == ["opamp-fast"]
    with pytest.raises(SweepOptionError, match="--swing: 0 is out of range"):
        train_kind("train-saturation").settings(args(swing="0"))
    with pytest.raises(SweepOptionError, match="--presets: unknown preset 'opamp-fast'; choose from converter-12bit"):
        conv.settings(args(presets="opamp-fast"))
    with pytest.raises(SweepOptionError, match="--noise-density must be > 0"):
        train_kind("train-flicker").settings(args(noise_density=0.0))


@pytest.mark.parametrize(
    "kind, setting",
    [
        ("train-offset", 1e-3),
        ("train-saturation", 10.0),
        ("train-slew", 1e7),
        ("train-flicker", [1e-6, 1e4]),
        ("train-converters", ["converter-12bit", 12, 2e-3, 1e-3, 1.0]),
        ("train-presets", "opamp-general"),
    ],
)
def test_issue17_training_sweeps_design_runs_on_the_realised_circuit(kind, setting):
    """Each kind's design, as a training run resolves it (over the asbuilt training design), builds
    and runs on the asbuilt backend (one training sweep end to end is the next test: the rest of
    the path is the kinds' shared code)."""
    from cases import random_factored

    from spu import SPU
    from training.loop import TrainConfig, make_design

    fields, kappa0 = train_kind(kind).design_for(setting)
    cfg = TrainConfig(optimizer="tngd", backend="asbuilt", design=fields, kappa0=kappa0).resolved()
    p = random_factored(20, 4, 0.5, seed=1)
    x = SPU("asbuilt", topology="factored", design=make_design(cfg.design), kappa0=kappa0).run(p, t=5.0).x
    assert np.isfinite(x).all()


def test_train_presets_sweep_writes_its_table_and_plot(tmp_path):
    from analysis.train_sweeps import run_train_sweep

    res = run_train_sweep(
        "train-presets",
        str(tmp_path),
        settings=["opamp-general"],
        seeds=1,
        steps=1,
        batch=16,
        workers=1,
        progress=False,
    )
    with open(res["csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["run"]: r["status"] for r in rows} == {"asbuilt": "ok", "ou": "ok", "adam": "ok"}
    assert (tmp_path / "train-presets.png").stat().st_size > 0
