"""Timing model: each stage follows its formula and scales with the quantity that drives it."""

import dataclasses

import pytest

from spu.core.errors import DesignError
from spu.timing import TimingModel, resistor_count

N, M = 1000, 64


def test_resistor_count_formulas_and_scaling():
    assert resistor_count("dense", N) == N * N
    assert resistor_count("dense", 2 * N) == 4 * resistor_count("dense", N)
    f = resistor_count("factored", N, M)
    assert f == 2 * N * M
    assert resistor_count("factored", 2 * N, M) == 2 * f and resistor_count("factored", N, 2 * M) == 2 * f
    # Paper: b*dz*(b*dz + 2N); the GGN adds the m x m H_L array to the two factor arrays.
    b, dz = 16, 4
    g = resistor_count("ggn", N, dz=dz, b=b)
    assert g == b * dz * (b * dz + 2 * N)
    assert g == resistor_count("crossbar", N, M) == resistor_count("ggn", N, M, dz=dz, b=b)
    assert g - resistor_count("factored", N, M) == M * M
    # Block-diagonal H_L stores b blocks of dz x dz = m*dz entries instead of m^2.
    assert resistor_count("ggn", N, M, dz=dz, block_diag=True) == M * dz + 2 * N * M
    assert resistor_count("ggn", N, M, dz=dz, block_diag=True) < g
    # Linear in N once N >> m: the TNGD claim O(b dz N).
    assert resistor_count("ggn", 10 * N, M) / resistor_count("ggn", N, M) == pytest.approx(10, rel=0.05)


@pytest.mark.parametrize(
    "args,kw",
    [
        (("ggn", N, 10), dict(dz=4, b=16)),
        (("factored", N), {}),
        (("ggn", N, M), dict(block_diag=True)),
        (("mesh", N, M), {}),
    ],
)
def test_resistor_count_rejects(args, kw):
    with pytest.raises(DesignError):
        resistor_count(*args, **kw)


def test_device_time_stages():
    tm = TimingModel()
    R = resistor_count("ggn", N, M)
    d = tm.device_time(N, R, t=50.0)
    assert set(d) == {"transfer", "program", "dac", "analog", "adc", "total"}
    assert d["total"] == pytest.approx(sum(v for k, v in d.items() if k != "total"))
    assert d["analog"] == pytest.approx(50.0 * 1e-6)  # t * tau, paper's tau = 1 us
    # Transfer: b and R values in, N results out, 16 bits each over 50 Gb/s.
    assert d["transfer"] == pytest.approx((2 * N + R) * 16 / 50e9)
    # One converter per cell: loading b and reading x take one conversion each, whatever N.
    d_big = tm.device_time(100 * N, R, t=50.0)
    assert d_big["dac"] == d["dac"] == tm.dac_settle_s
    assert d_big["adc"] == d["adc"] == tm.adc_sample_s


def test_device_time_scales_with_its_drivers():
    tm = TimingModel()
    R = resistor_count("ggn", N, M)
    d = tm.device_time(N, R, 1.0)
    assert tm.device_time(N, R, 3.0)["analog"] == pytest.approx(3 * d["analog"])
    assert tm.device_time(N, 2 * R, 1.0)["program"] == pytest.approx(2 * d["program"], rel=1e-3)
    half = dataclasses.replace(tm, link_bps=25e9, bits=8)  # half the bits over half the link
    assert half.device_time(N, R, 1.0)["transfer"] == pytest.approx(d["transfer"])
    slow_tau = dataclasses.replace(tm, tau=1e-3)
    assert slow_tau.device_time(N, R, 1.0)["analog"] == pytest.approx(1e3 * d["analog"])
    # Shared converters: ceil(N / k) conversions in sequence.
    shared = dataclasses.replace(tm, parallel_dacs=64, parallel_adcs=100)
    ds = shared.device_time(N, R, 1.0)
    assert ds["dac"] == pytest.approx(16 * tm.dac_settle_s)  # ceil(1000 / 64) = 16
    assert ds["adc"] == pytest.approx(10 * tm.adc_sample_s)


def test_paper_scale_device_is_fast():
    """At the paper's MNIST setting (b = 64, dz = 10, t = 50 tau) and N = 1e5 the device side
    is tens of ms at most, dominated by moving the resistor values over the link."""
    tm = TimingModel()
    n = 100_000
    d = tm.device_time(n, resistor_count("ggn", n, dz=10, b=64), t=50.0)
    assert d["total"] < 0.1
    assert max(d, key=lambda k: d[k] if k != "total" else -1) == "transfer"


def test_frozen_and_validated():
    tm = TimingModel()
    with pytest.raises(dataclasses.FrozenInstanceError):
        tm.tau = 1.0
    with pytest.raises(DesignError):
        tm.device_time(0, 10, 1.0)
    with pytest.raises(DesignError):
        tm.device_time(10, 10, -1.0)


def test_resistor_count_matches_the_built_circuit():
    """The formulas count what the circuit builder programs for A: J, H's nonzero blocks and J^T
    (crossbar), U^T and U (factored), A (dense). An SPU run on ngspice times that built count."""
    import numpy as np

    from circuits.topologies import build
    from spu import SPU
    from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem
    from spu.core.softmax import random_softmax_hessian

    rng = np.random.default_rng(0)
    n, batch, dz = 7, 3, 2
    m = batch * dz
    J = rng.choice([-1.0, 1.0], (m, n)) * rng.uniform(0.2, 1.0, (m, n))  # no zero entry
    b = rng.normal(size=n)
    blocks = GGNProblem(J, random_softmax_hessian(rng, batch, dz), 0.5, b)
    S = rng.uniform(0.2, 1.0, (m, m))
    full = GGNProblem(J, S @ S.T, 0.5, b)
    assert build(blocks, "crossbar").programmed_resistors() == resistor_count("ggn", n, m, dz=dz, block_diag=True)
    assert build(full, "crossbar").programmed_resistors() == resistor_count("ggn", n, m)
    assert build(full, "factored").programmed_resistors() == resistor_count("factored", n, m)
    A = full.matrix()
    assert build(DenseProblem(A, b), "dense").programmed_resistors() == resistor_count("dense", n)
    assert build(FactoredProblem(full.factored().U, 0.5, b), "factored").programmed_resistors() == 2 * n * m

    tm = TimingModel()
    res = SPU("ngspice").run(blocks, t=1.0)
    R = resistor_count("ggn", n, m, dz=dz, block_diag=True)
    assert R < resistor_count("ggn", n, m)
    assert res.device_time_breakdown["transfer"] == pytest.approx((2 * n + R) * tm.bits / tm.link_bps)
    # Without a circuit (numeric backend) the device is timed from the problem form: full H.
    res_ou = SPU("ou").run(blocks, t=1.0)
    assert res_ou.device_time_breakdown["transfer"] == pytest.approx(
        (2 * n + resistor_count("crossbar", n, m)) * tm.bits / tm.link_bps
    )
