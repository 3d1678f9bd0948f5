"""DAC and ADC errors (circuits/converters.py): the draws (stream, statistics, reproducibility), the
INL bow's peak and end points, the ADC read against its formula, the steady-state shift of the DAC
errors against A^-1 delta_b in real ngspice, and ngspice against asbuilt with converter errors."""

from __future__ import annotations

import re

import numpy as np
from cases import needs_ngspice, random_factored

from circuits import converters
from circuits.design import Converter, Design
from circuits.topologies import build
from spu import SPU
from spu.backends.circuit import adc


def _z(seed: int, stream: int, n: int) -> np.ndarray:
    """The documented draw: four rows of clipped standard normals (offset, gain, INL c2, c3)."""
    return np.clip(np.random.default_rng([seed, stream]).standard_normal((4, n)), -4, 4)


def test_draws_follow_their_stream_and_their_distribution():
    """Offsets N(0, offset^2) and gains 1 + N(0, gain_error^2) per converter, from [seed, 1703] (DAC)
    and [seed, 1704] (ADC). Sample std over n = 4000 converters: within 5 of its standard error
    sigma/sqrt(2n) (and the 4-sigma clip removes 6e-5 of the mass, far below that)."""
    n, d = 4000, Design(dac=Converter(offset=2e-3, gain_error=1e-3), adc=Converter(offset=5e-4), component_seed=7)
    dac, adc_e = converters.dac_errors(d, n), converters.adc_errors(d, n)
    z = _z(7, 1703, n)
    assert np.array_equal(dac.offset, 2e-3 * z[0]) and np.array_equal(dac.gain, 1e-3 * z[1])
    assert np.array_equal(adc_e.offset, 5e-4 * _z(7, 1704, n)[0]) and not adc_e.gain.any()
    for v, sigma in ((dac.offset, 2e-3), (dac.gain, 1e-3), (adc_e.offset, 5e-4)):
        assert abs(v.std() / sigma - 1) < 5 / np.sqrt(2 * n)
        assert abs(v.mean()) < 5 * sigma / np.sqrt(n)


def test_draws_are_reproducible_and_independent_of_each_other():
    """Same design, same errors; another component_seed, others; turning the gain error or the INL
    on leaves the offsets and the tolerance draws (Builder.rng) where they were."""
    base = Design(dac=Converter(offset=1e-3), bits_dac=10, tol_r=0.01, component_seed=2)
    more = base.with_(dac=Converter(offset=1e-3, gain_error=1e-3, inl=2.0))
    a, b = converters.dac_errors(base, 50), converters.dac_errors(base, 50)
    assert np.array_equal(a.offset, b.offset)
    assert not np.array_equal(a.offset, converters.dac_errors(base.with_(component_seed=3), 50).offset)
    assert np.array_equal(converters.dac_errors(more, 50).offset, a.offset)
    p = random_factored(6, 2, 0.5, seed=1)
    r0 = build(p, "factored", base).record.resistors
    r1 = build(p, "factored", more).record.resistors
    assert all(np.array_equal(x, y) for x, y in zip(r0, r1))


def test_inl_bow_peaks_at_inl_lsb_and_is_zero_at_both_ends():
    """Peak |INL| over full scale = inl LSB for every converter (exact roots of the derivative); on
    a grid of step h the sampled peak falls short by at most (h/2)^2/2 max|INL''| (max|INL''| <=
    k (2|c2| + 6|c3|) <= 20 peak for these shapes), < 1e-7 relative at h = 1e-4."""
    d = Design(bits_dac=12, dac=Converter(inl=1.5), component_seed=4)
    e = converters.dac_errors(d, 300)
    fs, lsb = d.v_fullscale, converters.lsb(12, d.v_fullscale)
    v = np.linspace(-fs, fs, 20001)[:, None]
    peak = np.abs(e.inl(v)).max(axis=0)
    assert np.all(peak <= 1.5 * lsb * (1 + 1e-12)) and np.all(peak >= 1.5 * lsb * (1 - 1e-7))
    assert np.abs(e.inl(np.array([[-fs], [fs]]))).max() <= 1e-15 * lsb
    # The shapes differ per converter (not one bow for all): both even and odd parts present.
    assert np.std(e.even) > 0 and np.std(e.odd) > 0
    # The exact peak of the bow against brute force, on shapes from pure even to pure odd.
    c2, c3 = np.array([1.0, 0.0, 1.0, -0.3]), np.array([0.0, 1.0, 1.0, 2.0])
    u = np.linspace(-1, 1, 200001)[:, None]
    brute = np.abs((1 - u * u) * (c2 + c3 * u)).max(axis=0)
    np.testing.assert_allclose(converters.bow_peak(c2, c3), brute, rtol=1e-9)


def test_adc_read_against_its_formula():
    """read = Q(clip((1+g)V + o) + INL) with the stream's g, o and the INL bow; without bits: the
    straight line (1+g)V + o; clean: exactly the read of before."""
    n, fs = 5, 10.0
    V = np.linspace(-12, 12, 7 * n).reshape(7, n)
    z = _z(1, 1704, n)
    line = Design(adc=Converter(offset=0.01, gain_error=0.002), component_seed=1)
    np.testing.assert_array_equal(adc(V, line), V * (1 + 0.002 * z[1]) + 0.01 * z[0])
    d = line.with_(bits_adc=8, adc=Converter(offset=0.01, gain_error=0.002, inl=3.0))
    lsb = 2 * fs / 255
    u = np.clip(V * (1 + 0.002 * z[1]) + 0.01 * z[0], -fs, fs)
    bow = (1 - (u / fs) ** 2) * (z[2] + z[3] * u / fs)
    k = 3.0 * lsb / converters.bow_peak(z[2], z[3])
    np.testing.assert_allclose(adc(V, d), np.round((u + k * bow) / lsb) * lsb, rtol=0, atol=1e-12)
    clean = Design(bits_adc=8)
    np.testing.assert_array_equal(adc(V, clean), np.round(np.clip(V, -fs, fs) / lsb) * lsb)
    assert adc(V, Design()) is V


def test_dac_errors_reach_the_netlist_and_the_as_built_b():
    """The DAC sources of the netlist carry the realised volts (1+g)(V_q + INL) + o; the as-built b
    is what they drive, and the recorded input errors add up to its change."""
    p = random_factored(6, 2, 0.5, seed=3)
    d = Design(bits_dac=10, dac=Converter(offset=0.02, gain_error=0.01, inl=2.0), component_seed=5)
    c, clean = build(p, "factored", d), build(p, "factored", Design(bits_dac=10, component_seed=5))
    sources = dict(re.findall(r"^Vdac(\d+) d\d+ 0 DC (\S+)", c.text(), re.M))
    volts = np.array([float(sources[str(i)]) for i in range(p.n)])
    e = converters.dac_errors(d, p.n)
    vq = clean.record.dac_volts
    np.testing.assert_array_equal(volts, c.record.dac_volts)
    np.testing.assert_allclose(volts, (1 + e.gain) * (vq + e.inl(vq)) + e.offset, rtol=1e-15, atol=1e-15)
    shift = sum(c.record.input_errors.values())
    assert set(c.record.input_errors) == {"DAC offset", "DAC gain", "DAC INL"}
    np.testing.assert_allclose(shift, c.as_built.b - clean.as_built.b, rtol=0, atol=1e-14)
    assert not clean.record.input_errors


@needs_ngspice
def test_dac_offset_and_gain_shift_the_steady_state_by_a_inverse_delta_b():
    """b_i' = (1 + g_i) b_i - o_i max|b| / v_fs (the DAC's gain scales its share of b, its offset adds
    o_i / R_b), so x* moves by A^-1 (g b - o max|b| / v_fs). ngspice, run until every mode has
    decayed to tol, is within tol (||x*|| + ||x*'||) of each steady state; the 1e12 op-amp gain adds
    ~1e-12 cond."""
    p = random_factored(6, 2, 0.5, seed=3)
    d = Design(dac=Converter(offset=0.05, gain_error=0.02), component_seed=5)
    e = converters.dac_errors(d, p.n)
    A = p.dense().A
    delta_b = e.gain * p.b - e.offset * np.abs(p.b).max() / d.v_fullscale
    tol = 1e-7
    runs = {}
    for name, design in (("clean", Design(component_seed=5)), ("errors", d)):
        spu = SPU("ngspice", topology="factored", design=design)
        runs[name] = spu.run(p, t=spu.settling_time(p, tol)).x
    xs, xe = np.linalg.solve(A, p.b), np.linalg.solve(A, p.b + delta_b)
    bound = tol * (np.linalg.norm(xs) + np.linalg.norm(xe)) + 1e-12 * np.linalg.cond(A) * np.linalg.norm(xe)
    assert np.linalg.norm(runs["errors"] - runs["clean"] - np.linalg.solve(A, delta_b)) <= bound
    assert np.linalg.norm(np.linalg.solve(A, delta_b)) > 100 * bound  # the shift is seen, not noise


@needs_ngspice
def test_ngspice_and_asbuilt_agree_with_converter_errors():
    """A small factored circuit with DAC offset, gain and INL and ADC offset, gain and INL: the two
    backends within the bound of tests/test_asbuilt.py (twice ngspice's own transient error, twice
    the splitting's step error, one ADC LSB), while the ideal ou is far off."""
    p = random_factored(8, 3, 0.6, seed=4)
    conv = Converter(offset=0.05, gain_error=0.02, inl=2.0)
    d = Design(bits_dac=8, bits_adc=14, dac=conv, adc=conv, component_seed=6)
    x0 = np.random.default_rng(2).normal(size=p.n)
    times = np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    run = dict(t=4.0, x0=x0, times=times)
    ng = SPU("ngspice", topology="factored", design=d).run(p, **run)
    ab = SPU("asbuilt", topology="factored", design=d).run(p, **run)
    half = SPU("asbuilt", topology="factored", design=d, step=0.125).run(p, **run)
    ideal = SPU("ou").run(p, **run)
    ng_ideal = SPU("ngspice", topology="factored").run(p, **run)
    bound = (
        2 * np.abs(ng_ideal.trajectory - ideal.trajectory).max(axis=1)
        + 2 * np.abs(ab.trajectory - half.trajectory).max(axis=1)
        + converters.lsb(14, d.v_fullscale) / d.v_unit
    )
    err = np.abs(ab.trajectory - ng.trajectory).max(axis=1)
    assert (err <= bound).all(), f"|asbuilt - ngspice| {err} > bound {bound}"
    assert np.abs(ideal.trajectory[-1] - ng.trajectory[-1]).max() > 10 * bound[-1]
