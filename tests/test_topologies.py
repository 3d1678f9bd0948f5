"""The topology registry: one object per topology, found by name, asked instead of compared."""

import numpy as np
import pytest

from circuits.topologies import TOPOLOGIES, build, choices, find, get, is_second_order
from circuits.topologies.base import Topology
from spu.core.errors import DesignError, ThermospiceError
from spu.core.problems import DenseProblem, GGNProblem
from spu.device import SPU
from spu.timing import TimingModel, programmed_resistors, resistor_count


def _problems(n=6, m=3, seed=0):
    rng = np.random.default_rng(seed)
    J, b = rng.normal(size=(m, n)), rng.normal(size=n)
    ggn = GGNProblem(J, np.eye(m), 0.5, b)
    return ggn, ggn.factored(), DenseProblem(ggn.matrix(), b)


def test_registry_lists_keep_the_command_line_order():
    assert TOPOLOGIES == ("ideal", "dense", "crossbar", "factored", "oscillator")
    assert choices("train") == ["crossbar", "factored", "dense", "ideal"]
    assert choices("asbuilt") == ["factored", "crossbar"]
    assert all(isinstance(get(name), Topology) and get(name).name == name for name in TOPOLOGIES)


def test_unknown_topology_is_a_clear_error():
    assert find("mesh") is None and find(None) is None
    with pytest.raises(DesignError, match="unknown topology 'mesh'; choose one of ideal, dense"):
        get("mesh")
    with pytest.raises(DesignError, match="unknown topology"):
        build(_problems()[0], "mesh")
    with pytest.raises(ThermospiceError, match="unknown topology 'mesh'"):
        SPU("ou", topology="mesh")


def test_what_each_topology_answers():
    for name in TOPOLOGIES:
        t = get(name)
        # asbuilt composes the arrays that hold A: the chain names the programmed arrays.
        assert t.realisable == (name in choices("asbuilt"))
        if t.realisable:
            assert t.chain[0] == t.programmed_arrays
    assert [n for n in TOPOLOGIES if is_second_order(n)] == ["oscillator"] and not is_second_order(None)
    assert [n for n in TOPOLOGIES if get(n).preferred_form == "ggn"] == ["crossbar"]
    assert [n for n in TOPOLOGIES if not get(n).accepts_dense] == ["crossbar", "factored"]


@pytest.mark.parametrize("name", ["ideal", "dense", "factored", "crossbar"])
def test_a_topology_builds_the_form_it_accepts(name):
    ggn, fac, dense = _problems()
    accepted = {"crossbar": [ggn], "factored": [ggn, fac]}.get(name, [ggn, fac, dense])
    for p in (ggn, fac, dense):
        if p in accepted:
            assert build(p, name).topology == name
        else:
            with pytest.raises(DesignError, match=f"topology '{name}' needs"):
                build(p, name)


def test_timing_layouts_count_what_the_form_fills():
    ggn, fac, dense = _problems(n=6, m=3)
    n, m = 6, 3
    assert programmed_resistors(ggn) == resistor_count("crossbar", n, m)
    assert programmed_resistors(fac) == resistor_count("factored", n, m)
    assert programmed_resistors(dense) == resistor_count("dense", n)
    assert programmed_resistors(ggn, "factored") == resistor_count("factored", n, m)
    # A layout whose factors the problem lacks is counted as the dense array.
    assert programmed_resistors(fac, "crossbar") == programmed_resistors(dense, "factored") == n * n
    assert programmed_resistors(ggn, get("ideal").layout) == n * n


def test_a_named_topology_times_a_numeric_backend():
    ggn, _, _ = _problems(n=6, m=3)
    tm = TimingModel()
    for name, count in (
        ("dense", 36),
        ("factored", resistor_count("factored", 6, 3)),
        (None, resistor_count("crossbar", 6, 3)),
    ):
        res = SPU("ou", topology=name, timing=tm).run(ggn, t=2.0)
        assert res.device_time_s == pytest.approx(tm.device_time(6, count, 2.0)["total"])
