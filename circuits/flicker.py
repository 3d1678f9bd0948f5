"""1/f (flicker) input voltage noise of the op-amps as a sum of Ornstein-Uhlenbeck processes, the one
construction that both the ngspice tables (circuits/flicker_sources.py) and asbuilt
(spu/backends/flicker_drive.py) are fed from.

Target: one-sided PSD S(f) = A / f, A = e_n^2 * f_c (OpAmp.noise_density, OpAmp.flicker_corner).

Construction: K independent OU components per op-amp with rates gamma_k = 2 pi f_lo r^k (r = 10^(1 /
PER_DECADE)), each of variance sigma^2 = A ln r. One OU of rate g has the one-sided Lorentzian
4 sigma^2 g / (g^2 + (2 pi f)^2); with x = ln(g / 2 pi f) that is (2 sigma^2 / f) sech(x) / (2 pi),
so f * S_K(f) = (sigma^2 / pi) sum_k sech(x_0 + k ln r). Poisson summation (the Fourier transform
of sech is pi sech(pi nu / 2)) gives the mean (sigma^2 / pi) (pi / ln r) = A and a periodic ripple
whose first harmonic has relative amplitude RIPPLE = 2 sech(pi^2 / ln r): 7.6e-4 at two components
per decade (5.5e-2 at one). Inside the band the sum is A / f to that ripple less the components
beyond its edges: those below gamma_0 would add 4 sigma^2 gamma / w^2 each, those above
gamma_(K-1) 4 sigma^2 / gamma, both geometric series, so the relative deficit is
EDGE (f_lo / f + f / f_top) to first order, EDGE = 2 ln r / (pi (r - 1)) = 0.34 (Band.edge_deficit):
1 % at 30x inside either edge. The sum flattens below f_lo and falls as 1/f^2 above f_top.

The band of a run of T seconds: [f_lo, f_c] with f_lo = LOW / T. Above f_c the 1/f part lies below
the white floor e_n^2 it is defined against (the white floor itself is not modelled here). Below
f_lo a component barely moves within the run: it is an offset drawn per run, indistinguishable
from the op-amp's offset. What that leaves out of the variation within a run (the variance about
the run's mean) is Band.left_out(T): A (pi f_lo T)^2 / 6 = 0.016 A for the missing 1/f below f_lo
plus the edge deficit just above it, 0.11 A in all at LOW = 0.1 (0.09 A for a band of two decades),
against A ln(f_c T) in the band; no band at all when
f_c <= f_lo (the whole 1/f noise is then an offset per run).

Sampling: each component is advanced exactly (AR(1): z' = a z + sigma sqrt(1 - a^2) xi,
a = e^{-gamma h}) at knots h = KNOT / gamma_top apart, from its stationary law at t = 0, drawn from
np.random.default_rng([seed, STREAM]) (the run's noise seed: this is noise, not a fixed part). Both
backends interpolate the knots linearly. The interpolant's spectrum is the sampled one times
sinc^4(pi f h) (1 - 2e-4 at the top of the band, f h <= KNOT / 2 pi), plus aliasing of the
Lorentzian tails (below 1e-3 there); between knots it misses a Brownian-bridge part of each
component, of variance sigma^2 gamma h / 6 on average, i.e. a fraction <= KNOT / 6 of the fastest
component's variance (Band.interpolation_loss). Knot values are rounded to QUANTUM_DIGITS of the
total standard deviation (the table's integers; asbuilt uses the same rounded values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from spu.core.errors import DesignError

from .design import OpAmp
from .noise_table import SCALE

STREAM = 1702  # the flicker noise's own random stream (issue 17's stream ids)
PER_DECADE = 2  # components per decade of rate
LOW = 0.1  # f_lo = LOW / run length
KNOT = 0.1  # gamma_top * knot spacing
_CODE_MAX = 99_999  # the table's 5-digit integers (noise_table._DIGITS)


def ripple(per_decade: float = PER_DECADE) -> float:
    """Relative amplitude of the in-band ripple of the OU sum around A / f (first Poisson harmonic;
    the next is smaller by another factor ~e^(-pi^2 / ln r))."""
    return 2.0 / math.cosh(math.pi**2 / math.log(10.0 ** (1.0 / per_decade)))


@dataclass(frozen=True)
class Band:
    """The OU components of one run: rates (1/s), each of variance level * ln r, knots step s apart."""

    level: float  # A = e_n^2 f_c, V^2
    rates: np.ndarray  # gamma_k, 1/s
    step: float  # knot spacing, s

    @property
    def ratio(self) -> float:
        return 10.0 ** (1.0 / PER_DECADE)

    @property
    def variance(self) -> float:
        """Variance of each component, V^2."""
        return self.level * math.log(self.ratio)

    @property
    def std(self) -> float:
        """Standard deviation of the sum (one op-amp's flicker voltage), V."""
        return math.sqrt(self.variance * len(self.rates))

    @property
    def quantum(self) -> float:
        """Volts per table integer."""
        return SCALE * self.std

    @property
    def edges_hz(self) -> tuple[float, float]:
        return float(self.rates[0] / (2 * math.pi)), float(self.rates[-1] / (2 * math.pi))

    def psd(self, f) -> np.ndarray:
        """One-sided PSD of the continuous sum at f (Hz), V^2/Hz."""
        w = 2 * math.pi * np.asarray(f, dtype=float)[..., None]
        g = self.rates
        return (4 * self.variance * g / (g * g + w * w)).sum(axis=-1)

    def sampled_psd(self, f) -> np.ndarray:
        """One-sided PSD of the knot sequence (sum of AR(1)s, aliasing included) at f < 1/(2 step)."""
        a = np.exp(-self.rates * self.step)
        z = np.exp(-2j * math.pi * np.asarray(f, dtype=float)[..., None] * self.step)
        ar = self.variance * (1 - a * a) / np.abs(1 - a * z) ** 2
        return 2 * self.step * ar.sum(axis=-1)

    def edge_deficit(self, f) -> np.ndarray:
        """First-order relative shortfall of psd(f) against A / f from the band's finite ends."""
        r = self.ratio
        lo, hi = self.edges_hz
        f = np.asarray(f, dtype=float)
        return 2 * math.log(r) / (math.pi * (r - 1)) * (lo / f + f / hi)

    def left_out(self, run_s: float) -> float:
        """Variance (V^2) about the run's mean that the truncated sum misses below the band:
        int (A/f - S_K(f)) (1 - sinc^2(pi f T)) df over f up to the band's geometric centre (the
        weight is the share of a frequency's power that varies within a run of T seconds)."""
        lo, hi = self.edges_hz
        u = np.linspace(math.log(lo * 1e-4), math.log(math.sqrt(lo * hi)), 4000)
        f = np.exp(u)
        x = math.pi * f * run_s
        within = 1 - np.sinc(x / math.pi) ** 2
        # d(ln f) form: (A/f - S) df = (A - f S) du; below lo * 1e-4 the rest is < A (1e-5 lo T)^2.
        return float(np.trapezoid((self.level - f * self.psd(f)) * within, u))

    def interpolation_loss(self) -> float:
        """Fraction of the total variance that linear interpolation between knots misses (the mean
        Brownian-bridge variance sigma^2 gamma h / 6 per component, to first order in gamma h)."""
        return float((self.rates * self.step).sum() / 6 / len(self.rates))


def band_for(amp: OpAmp, run_s: float) -> Band | None:
    """The flicker band of a run of run_s seconds, None when the op-amps have no 1/f noise or its
    whole band lies below f_lo (then it is an offset per run: see the module doc)."""
    if amp.flicker_corner is None:
        return None
    if not (math.isfinite(run_s) and run_s > 0):
        raise DesignError(f"flicker noise needs a run length > 0 s, got {run_s!r}")
    f_lo, f_hi = LOW / run_s, float(amp.flicker_corner)
    if f_hi <= f_lo:
        return None
    k = math.ceil(PER_DECADE * math.log10(f_hi / f_lo) - 1e-9) + 1
    rates = 2 * math.pi * f_lo * 10.0 ** (np.arange(k) / PER_DECADE)
    return Band(level=amp.noise_density**2 * f_hi, rates=rates, step=KNOT / float(rates[-1]))


class FlickerProcess:
    """Independent flicker voltages of `amps` op-amps, knot by knot: knots(n) returns the next n
    knot values (n, amps) in volts, rounded to band.quantum; the first call starts at t = 0.
    The same seed gives the same values however the knots are asked for (one draw per component
    per knot, in order)."""

    def __init__(self, band: Band, amps: int, seed: int | None):
        self.band = band
        self.rng = np.random.default_rng(None if seed is None else [seed, STREAM])
        sd = math.sqrt(band.variance)
        self.a = np.exp(-band.rates * band.step)
        self.b = sd * np.sqrt(-np.expm1(-2 * band.rates * band.step))
        self.z = sd * self.rng.standard_normal((amps, len(band.rates)))  # stationary start

    def codes(self, n: int) -> np.ndarray:
        """The next n knot values as table integers (n, amps)."""
        xi = self.rng.standard_normal((n,) + self.z.shape)
        total = np.zeros((n, self.z.shape[0]))
        for k in range(self.z.shape[1]):
            # z_{j+1} = a z_j + b xi_j: lfilter's state a*z_0 makes y_j = z_{j+1}.
            y = lfilter([self.b[k]], [1.0, -self.a[k]], xi[:, :, k], axis=0, zi=(self.a[k] * self.z[:, k])[None, :])[0]
            total[0] += self.z[:, k]
            total[1:] += y[:-1]
            self.z[:, k] = y[-1]
        return np.clip(np.rint(total / self.band.quantum), -_CODE_MAX, _CODE_MAX).astype(np.int32)

    def knots(self, n: int) -> np.ndarray:
        return self.codes(n) * self.band.quantum
