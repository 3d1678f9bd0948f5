"""The host's gain stage (SPU(gain_stage=True)): b/max|b| to the device, its answer times max|b|.
Exact for the ideal device; on a chip with offsets it keeps their error a fixed fraction of the
signal however small b is."""

from __future__ import annotations

import numpy as np
from physics import problem

from circuits.design import Converter, Design, OpAmp
from spu import SPU

TIMES = np.linspace(0.0, 5.0, 6)[1:]


def test_gain_stage_leaves_the_ideal_device_unchanged():
    p = problem("factored", 12, seed=1)
    x0 = np.linspace(-1.0, 1.0, p.n)
    plain = SPU("ou").run(p, t=5.0, x0=x0, times=TIMES)
    staged = SPU("ou", gain_stage=True).run(p, t=5.0, x0=x0, times=TIMES)
    np.testing.assert_allclose(staged.x, plain.x, rtol=1e-12, atol=1e-14 * np.abs(plain.x).max())
    np.testing.assert_allclose(staged.trajectory, plain.trajectory, rtol=1e-12, atol=1e-14)


def test_gain_stage_keeps_offsets_relative_to_the_signal():
    """A gradient 1e-4 the size of the unit: 1 mV offsets swamp the plain chip's answer; the staged
    chip's relative error is the one it has at full signal (the same normalised solve), far smaller."""
    p = problem("factored", 12, seed=1)
    tiny = p.with_b(1e-4 * p.b / np.abs(p.b).max())
    exact = SPU("direct").run(tiny, t=np.inf).x
    design = Design(opamp=OpAmp(offset=1e-3, bias=1e-9))

    def rel(x):
        return np.linalg.norm(x - exact) / np.linalg.norm(exact)

    plain = SPU("asbuilt", design=design).run(tiny, t=60.0).x
    staged = SPU("asbuilt", design=design, gain_stage=True).run(tiny, t=60.0).x
    unit = SPU("asbuilt", design=design).run(tiny.with_b(tiny.b / 1e-4), t=60.0).x * 1e-4
    np.testing.assert_allclose(staged, unit, rtol=1e-12)  # what staging is: the unit-signal solve, rescaled
    assert rel(plain) > 100 * rel(staged)


def test_chop_cancels_offsets_and_bias_on_the_whole_trajectory():
    """Two runs, b from x0 and -b from -x0: half their difference is the chip without its constant
    input errors, e^{-At} x0 + (I - e^{-At}) A_eff^-1 b, at every time (the circuit is linear).
    Against the same chip built without offsets, bias and DAC offsets: equal to round-off, while
    the plain chip is off by their whole shift."""
    p = problem("factored", 12, seed=1)
    x0 = np.linspace(-1.0, 1.0, p.n)
    base = Design(tol_r=0.01, component_seed=3)
    errs = base.with_(opamp=OpAmp(offset=5e-3, bias=1e-7), dac=Converter(offset=2e-3))
    clean = SPU("asbuilt", design=base).run(p, t=5.0, x0=x0, times=TIMES)
    plain = SPU("asbuilt", design=errs).run(p, t=5.0, x0=x0, times=TIMES)
    zeroed = SPU("asbuilt", design=errs, chop=True).run(p, t=5.0, x0=x0, times=TIMES)
    scale = np.abs(clean.trajectory).max()
    assert np.abs(zeroed.trajectory - clean.trajectory).max() < 1e-12 * scale
    assert np.abs(plain.trajectory - clean.trajectory).max() > 1e-4 * scale
    assert zeroed.device_time_s == 2 * plain.device_time_s  # the second run is counted
