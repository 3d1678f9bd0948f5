"""The DACs that set b and the ADCs that read the state, with the errors of real converters beside
their resolution: offset, gain error and integral nonlinearity (Design.dac, Design.adc).

Each converter (one per cell) draws its own errors once, from the design's component_seed on its
own stream (DAC_STREAM, ADC_STREAM), like a tolerance: a fixed property of the chip. The standard
normals are drawn in one fixed order (offset, gain, the two INL shape coefficients) whichever
errors are on, so turning one on never moves another's draw, nor the tolerance draws (Builder.rng).

Order of the errors, as a real converter has them:

* DAC: the code (the ideal voltage rounded to bits_dac levels, as before) selects a level of the
  reference ladder, which carries the INL; the output amplifier then scales it (gain error) and
  adds its offset:  V = (1 + g) (V_q + INL(V_q)) + V_os.
* ADC: the front end (buffer, sample-and-hold) scales and offsets the input, the reading is
  limited to full scale, and the quantiser's levels carry the INL:
  read = Q(clip((1 + g) V + V_os) + INL(...)), Q rounding to bits_adc levels. Without bits_adc the
  ADC reads exactly (no range, no rounding, as before) apart from its offset and gain.

INL, in either: the transfer's deviation from the straight line through its end points, so it is
0 at both ends of full scale by definition. Each converter gets a smooth bow
INL(V) = k (1 - u^2)(c2 + c3 u), u = V / v_fullscale, with (c2, c3) ~ N(0, I) drawn per converter
and k set so the peak |INL| over the range is exactly `inl` LSB (datasheets give the peak). The
even term is the bow a linear gradient across a resistor string or capacitor array gives (second
order), the odd one the S-curve of a third-order error; code-to-code steps (DNL) are left out, as
they are of the order of the LSB that the rounding already models.

A clean converter (Converter.clean) draws nothing and returns the values of before, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .design import Converter, Design

DAC_STREAM = 1703
ADC_STREAM = 1704
# Draws beyond 4 sigma are clipped, as the tolerance draws are (Builder.with_tolerance).
CLIP_SIGMA = 4.0


def lsb(bits: int, fullscale: float) -> float:
    """Step of a converter of `bits` over [-fullscale, fullscale]."""
    return 2 * fullscale / (2**bits - 1)


def quantise(volts: np.ndarray, bits: int | None, fullscale: float) -> np.ndarray:
    """Round to the converter's levels (no clipping); bits None: exact."""
    if bits is None:
        return volts
    step = lsb(bits, fullscale)
    return np.round(volts / step) * step


@dataclass(frozen=True)
class ConverterErrors:
    """The drawn errors of n converters: offset (V), gain error g (gain 1 + g), and the INL bow's
    coefficients (V) k*c2, k*c3 of each."""

    offset: np.ndarray
    gain: np.ndarray
    even: np.ndarray
    odd: np.ndarray
    fullscale: float

    def inl(self, volts: np.ndarray) -> np.ndarray:
        """INL (V) of each converter at `volts` (last axis: the converters)."""
        u = volts / self.fullscale
        return (1.0 - u * u) * (self.even + self.odd * u)


def bow_peak(c2: np.ndarray, c3: np.ndarray) -> np.ndarray:
    """max over u in [-1, 1] of |(1 - u^2)(c2 + c3 u)|, exactly: at a root of the derivative
    3 c3 u^2 + 2 c2 u - c3 = 0 (both roots are real; one lies in (-1, 1), and the other too where
    the bow changes sign inside). Roots by the cancellation-free form q = -(c2 + sign(c2) s)."""
    s = np.sqrt(c2 * c2 + 3.0 * c3 * c3)
    q = -(c2 + np.where(c2 >= 0, s, -s))
    with np.errstate(divide="ignore", invalid="ignore"):
        r1 = np.where(c3 != 0, q / (3.0 * c3), 1.0)  # c3 = 0: the even bow, peak at u = 0 (r2)
        r2 = np.where(q != 0, -c3 / q, 0.0)
    peak = np.zeros_like(s)
    for r in (r1, r2):
        u = np.clip(r, -1.0, 1.0)  # a root outside the range: the bow is 0 at its end
        np.maximum(peak, np.abs((1.0 - u * u) * (c2 + c3 * u)), out=peak)
    return peak


def draw(conv: Converter, n: int, seed: int, stream: int, bits: int | None, fullscale: float) -> ConverterErrors:
    """The errors of n converters of `conv`, from np.random.default_rng([seed, stream])."""
    z = np.random.default_rng([seed, stream]).standard_normal((4, n))
    np.clip(z, -CLIP_SIGMA, CLIP_SIGMA, out=z)
    c2, c3 = z[2], z[3]
    if conv.inl > 0:
        k = conv.inl * lsb(bits, fullscale) / bow_peak(c2, c3)
        even, odd = k * c2, k * c3
    else:
        even = odd = np.zeros(n)
    return ConverterErrors(conv.offset * z[0], conv.gain_error * z[1], even, odd, fullscale)


def dac_errors(design: Design, n: int) -> ConverterErrors:
    d = design
    return draw(d.dac, n, d.component_seed, DAC_STREAM, d.bits_dac, d.v_fullscale)


def adc_errors(design: Design, n: int) -> ConverterErrors:
    d = design
    return draw(d.adc, n, d.component_seed, ADC_STREAM, d.bits_adc, d.v_fullscale)


def dac_output(volts: np.ndarray, design: Design) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(the voltages the DACs put out for the ideal `volts`, the error each of the DAC's errors
    adds to them, V, by name, for the effects that are on)."""
    d = design
    vq = quantise(volts, d.bits_dac, d.v_fullscale)
    if d.dac.clean:
        return vq, {}
    e = dac_errors(d, vq.shape[-1])
    inl = e.inl(vq)
    parts = {"DAC INL": inl, "DAC gain": e.gain * (vq + inl), "DAC offset": np.broadcast_to(e.offset, vq.shape)}
    on = {"DAC INL": d.dac.inl, "DAC gain": d.dac.gain_error, "DAC offset": d.dac.offset}
    out = vq + inl
    out *= 1.0 + e.gain
    out += e.offset
    return out, {name: v for name, v in parts.items() if on[name] > 0}


def adc_read(volts: np.ndarray, design: Design) -> np.ndarray:
    """What the ADCs read for `volts` (last axis: one ADC per state node)."""
    d = design
    fs = d.v_fullscale
    if d.adc.clean:
        if d.bits_adc is None:
            return volts
        return quantise(np.clip(volts, -fs, fs), d.bits_adc, fs)
    e = adc_errors(d, volts.shape[-1])
    v = volts * (1.0 + e.gain) + e.offset
    if d.bits_adc is None:
        return v
    np.clip(v, -fs, fs, out=v)
    v += e.inl(v)
    np.clip(v, -fs, fs, out=v)  # an INL steeper than the line near an end must not leave the range
    return quantise(v, d.bits_adc, fs)
