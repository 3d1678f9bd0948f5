"""Problem validation and design-range errors: each names the problem."""

from __future__ import annotations

import numpy as np
import pytest

from circuits.design import Design, OpAmp
from circuits.topologies import build
from spu import SPU, DenseProblem, DesignError, FactoredProblem, GGNProblem, ProblemError
from spu.core.problems import Problem
from spu.core.spectral import DenseSpectrum, LowRankSpectrum


@pytest.mark.parametrize(
    "A, b, match",
    [
        (np.ones((2, 3)), np.ones(2), "must be square"),
        (np.array([[1.0, 0.5], [0.2, 1.0]]), np.ones(2), r"not symmetric: A\[0,1\]"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones(2), "smallest eigenvalue is -1"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), np.ones(2), "contains NaN"),
        (np.array([[1.0, 0.0], [0.0, np.inf]]), np.ones(2), "contains inf"),
        (np.eye(2), np.ones(3), "b has length 3"),
        (np.eye(2), np.array([1.0, np.inf]), "b contains inf"),
        (np.ones(3), np.ones(3), "A must be 2-D"),
    ],
)
def test_dense_problem_errors(A, b, match):
    with pytest.raises(ProblemError, match=match):
        DenseProblem(A, b)


def test_factored_and_ggn_errors():
    with pytest.raises(ProblemError, match="lam must be finite and > 0"):
        FactoredProblem(np.ones((3, 1)), 0.0, np.ones(3))
    with pytest.raises(ProblemError, match="b has length 2"):
        FactoredProblem(np.ones((3, 1)), 1.0, np.ones(2))
    with pytest.raises(ProblemError, match="H has shape"):
        GGNProblem(np.ones((2, 3)), np.eye(3), 1.0, np.ones(3))
    with pytest.raises(ProblemError, match="not positive semidefinite"):
        GGNProblem(np.ones((2, 3)), -np.eye(2), 1.0, np.ones(3))


def _three_forms():
    rng = np.random.default_rng(3)
    J, b = rng.standard_normal((2, 4)), rng.standard_normal(4)
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    g = GGNProblem(J, H, 0.7, b)
    f = g.factored()
    return DenseProblem(g.matrix(), b), FactoredProblem(f.U, f.lam, b), g


def test_every_form_answers_the_problem_interface():
    """Callers ask the problem (views, spectrum, scaling) instead of testing its type: the three
    forms of one system agree on every answer."""
    dense, fact, ggn = _three_forms()
    x = np.arange(4.0)
    for p, low_rank, spec in (
        (dense, False, DenseSpectrum),
        (fact, True, LowRankSpectrum),
        (ggn, True, LowRankSpectrum),
    ):
        assert isinstance(p, Problem) and p.n == 4 and p.low_rank is low_rank
        assert np.allclose(p.matvec(x), dense.A @ x)
        assert np.allclose(p.eig_extremes(), dense.eig_extremes())
        assert isinstance(p.spectrum(), spec)
        assert np.allclose(p.dense().A, dense.A)
        assert (p.factored() is None) is (not low_rank)
        half = p.scaled(2.0)
        assert type(half) is type(p) and np.allclose(half.matrix(), dense.A / 2) and np.allclose(half.b, p.b / 2)
        other = p.with_b(-2 * p.b)
        assert (
            type(other) is type(p) and np.array_equal(other.matrix(), p.matrix()) and np.array_equal(other.b, -2 * p.b)
        )
    assert dense.dense() is dense and fact.factored() is fact and ggn.ggn() is ggn
    assert dense.ggn() is None and fact.ggn() is None
    assert ggn.factored() is ggn.factored()  # computed once


def test_entries_below_the_smallest_conductance_are_left_open():
    """Issue 10: a coupling needing R0/|a| = 1e10 ohm > r_max is an open cell, not an error, as long
    as the steady-state error it causes stays within open_error_max (named when it does not)."""
    A = np.array([[1.0, 1e-7], [1e-7, 1.0]])
    c = build(DenseProblem(A, np.ones(2)), "dense")
    assert c.record.arrays["A"].opened == 2 and "RA_0_1" not in c.text() and "RA_0_0" in c.text()
    xs = np.linalg.solve(A, np.ones(2))
    err = np.linalg.norm(np.ones(2) - xs) / np.linalg.norm(xs)  # the open system is the identity
    assert c.record.open_error == pytest.approx(err, rel=1e-9) and 0 < err < Design().open_error_max
    with pytest.raises(
        DesignError,
        match=r"left open .*largest A\[0,1\] = 1e-07 \(R above r_max\).*above "
        r"open_error_max = 1e-09.*ratio >= 1e\+07",
    ):
        build(DenseProblem(A, np.ones(2)), "dense", Design(open_error_max=1e-9))
    # A large entry: scaled by default, a clear error with autoscale off.
    c = build(DenseProblem(np.eye(2) * 500.0, np.ones(2)), "dense")
    # Scaled to full scale: the largest entry at R0, s = 500.
    assert c.scale == 500.0 and c.record.scale == c.scale
    with pytest.raises(DesignError, match="below r_min"):
        build(DenseProblem(np.eye(2) * 500.0, np.ones(2)), "dense", Design(autoscale=False))
    # Quantising the resistors drops the tiny coupling too (it rounds to zero conductance).
    c = build(DenseProblem(A, np.ones(2)), "dense", Design(bits_r=8))
    assert c.netlist.counts()["R"] >= 2


def test_design_errors():
    with pytest.raises(DesignError, match="r_min"):
        Design(r_min=1e6, r_max=1e3).check()
    with pytest.raises(DesignError, match="bits_r"):
        Design(bits_r=0).check()
    with pytest.raises(DesignError, match="gain-bandwidth needs a finite DC gain"):
        Design(opamp=OpAmp(gbw=1e7)).check()
    with pytest.raises(DesignError, match="tol_r"):
        Design(tol_r=-0.1).check()


def test_spu_run_errors():
    p = DenseProblem(np.eye(2), np.ones(2))
    with pytest.raises(ProblemError, match="t must be >= 0"):
        SPU("ou").run(p, t=-1.0)
    with pytest.raises(ProblemError, match="x0 has shape"):
        SPU("ou").run(p, t=1.0, x0=np.ones(3))
    with pytest.raises(ProblemError, match="kappa0"):
        SPU("ou", kappa0=-1.0)
    with pytest.raises(ProblemError, match="t = inf is only possible"):
        SPU("ngspice").run(p, t=np.inf)
    with pytest.raises(DesignError, match="crossbar' needs a GGN problem"):
        SPU("ngspice", topology="crossbar").run(p, t=1.0)
    with pytest.raises(DesignError, match="factored' needs a factored"):
        SPU("ngspice", topology="factored").run(p, t=1.0)


def test_finite_gain_opamp_error_scales_with_one_over_gain():
    """A finite-gain op-amp leaves a steady-state error ~1/gain: the op-amp model is really used."""
    p = DenseProblem(np.array([[2.0, -0.5], [-0.5, 1.0]]), np.array([1.0, -1.0]))
    xs = np.linalg.solve(p.A, p.b)
    errs = []
    for gain in (1e3, 1e4):
        x = SPU("ngspice", design=Design(opamp=OpAmp(gain=gain))).run(p, t=40.0).x
        errs.append(np.linalg.norm(x - xs) / np.linalg.norm(xs))
    assert 1e-5 < errs[0] < 1e-1
    assert 5 < errs[0] / errs[1] < 20


def test_autorange_keeps_quantised_small_arrays_in_range():
    """With 12-bit resistors an H array of full scale ~0.01 has its smallest level at
    R0*4095/0.01 = 4e8 ohm > r_max; programmed at its own full scale (autorange) the smallest level
    is R0*4095 and the z summers' feedback restores the gain."""
    rng = np.random.default_rng(0)
    J = rng.normal(size=(6, 5))
    # Full scale 0.01 and a coupling of 3e-6: one 12-bit level (0.01/4095 = 2.4e-6).
    H = 0.01 * np.eye(6) + 3e-6 * (np.eye(6, k=1) + np.eye(6, k=-1))
    p = GGNProblem(J, H, 0.5, rng.normal(size=5))
    with pytest.raises(DesignError, match="above r_max"):
        build(p, "crossbar", Design(autorange=False, bits_r=12))
    res = SPU("ngspice", topology="crossbar", design=Design(bits_r=12)).run(p, t=45.0)
    xs = np.linalg.solve(p.matrix(), p.b)
    # Only quantisation error remains, and the circuit reproduces the as-built prediction.
    assert np.linalg.norm(res.x - xs) / np.linalg.norm(xs) < 1e-2
    assert (
        abs(np.linalg.norm(res.x - xs) / np.linalg.norm(xs) - res.report["quantisation"]["steady_state_rel_error"])
        < 1e-5
    )


def test_resistor_quantisation_error_shrinks_with_bits():
    from physics import problem

    p = problem("ggn", 8, seed=4)
    errs = [
        SPU("ngspice", topology="crossbar", design=Design(bits_r=bits))
        .run(p, t=45.0)
        .report["quantisation"]["steady_state_rel_error"]
        for bits in (4, 8, 12)
    ]
    assert errs[0] > errs[1] > errs[2] > 0
