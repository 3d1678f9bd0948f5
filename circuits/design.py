"""Design parameters of an SPU circuit: what a hardware designer sets before a run.

All values are SI units. The state variable x is carried as a voltage V = v_unit * x.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from spu.core.errors import DesignError

BOLTZMANN = 1.380649e-23  # J/K


def _number(name: str, v, *, low: float = 0.0, strict: bool = False, high: float | None = None) -> None:
    """DesignError naming `name` unless v is a finite real number >= low (> low if strict), <= high."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (v > low if strict else v >= low) and (high is None or v <= high)
    if not ok:
        rel = ">" if strict else ">="
        rng = f"{rel} {low:g}" + ("" if high is None else f" and <= {high:g}")
        raise DesignError(f"{name} must be a finite number {rng}, got {v!r}")


@dataclass(frozen=True)
class OpAmp:
    """Op-amp model. gain=None: ideal (a VCVS with IDEAL_GAIN). gbw: gain-bandwidth product in Hz
    (a single-pole model: open-loop gain `gain` rolling off from GBW/gain); requires a finite gain.

    The errors a real part adds (all 0/None: the ideal amplifier of before, netlists unchanged):
    offset          sigma of the input offset voltage, V: each op-amp draws its own N(0, offset^2)
                    from the design's component_seed (a fixed value per chip, like a tolerance)
    bias            input bias current, A, drawn by every op-amp's inverting input out of its
                    summing node (the same for every part: datasheets give one typical value)
    swing           the output clips at +-swing V (None: no clipping); at most the rails
    slew            largest |dV/dt| of every op-amp output, V/s (None: unlimited)
    noise_density   white input voltage-noise density e_n, V/sqrt(Hz), that sets the 1/f level
    flicker_corner  1/f corner f_c, Hz: input voltage noise of PSD e_n^2 * f_c / f below it
                    (needs noise_density; None: no 1/f noise)
    """

    gain: float | None = None
    gbw: float | None = None
    offset: float = 0.0
    bias: float = 0.0
    swing: float | None = None
    slew: float | None = None
    noise_density: float = 0.0
    flicker_corner: float | None = None

    # An E source stands in for the ideal op-amp. Its finite gain leaves a residual of about
    # (sum of conductances at the summing node / G0) / gain, which the solve amplifies by up to
    # the condition number: measured 7e-6 relative at gain 1e9 for n = 8, cond 1e4, 7e-9 at 1e12
    # (1/gain down to 1e13), so 1e12 keeps ill-conditioned systems (issue 12) near 1e-8.
    IDEAL_GAIN = 1e12

    @property
    def ideal(self) -> bool:
        return self.gain is None

    @property
    def dc_gain(self) -> float:
        """The DC gain the realised (as-built) system works with: inf for an ideal part (the
        netlist's IDEAL_GAIN only stands in for it)."""
        return float("inf") if self.gain is None else float(self.gain)

    @property
    def clean(self) -> bool:
        """No offset, bias, clipping, slew limit or 1/f noise: the amplifier of before issue 17."""
        return (
            self.offset == 0
            and self.bias == 0
            and self.swing is None
            and self.slew is None
            and self.flicker_corner is None
        )

    def check(self, rails: float | None = None) -> None:
        if self.gain is not None and not (math.isfinite(self.gain) and self.gain >= 1):
            raise DesignError(f"op-amp DC gain must be a finite number >= 1, got {self.gain}")
        if self.gbw is not None:
            if self.gain is None:
                raise DesignError("op-amp gain-bandwidth needs a finite DC gain (set gain too)")
            if not (math.isfinite(self.gbw) and self.gbw > 0):
                raise DesignError(f"op-amp gain-bandwidth must be > 0 Hz, got {self.gbw}")
        _number("opamp offset (V, sigma)", self.offset)
        _number("opamp bias (A)", self.bias, low=-1.0, high=1.0)
        _number("opamp noise_density (V/sqrt(Hz))", self.noise_density)
        if self.swing is not None:
            _number("opamp swing (V)", self.swing, strict=True)
        if self.slew is not None:
            _number("opamp slew (V/s)", self.slew, strict=True)
        if self.flicker_corner is not None:
            _number("opamp flicker_corner (Hz)", self.flicker_corner, strict=True)
            if self.noise_density <= 0:
                raise DesignError("opamp flicker_corner needs noise_density > 0 (the white level it scales)")
        if rails is not None:
            if self.swing is not None and self.swing > rails:
                raise DesignError(f"opamp swing ({self.swing:g} V) exceeds the rails (+-{rails:g} V)")
            limit = self.swing if self.swing is not None else rails
            if self.offset >= limit:
                raise DesignError(f"opamp offset ({self.offset:g} V) is not below the output range (+-{limit:g} V)")


@dataclass(frozen=True)
class Converter:
    """Errors of the DACs (b) or the ADCs (read-out) beside their resolution (Design.bits_dac,
    bits_adc). Each converter draws its own errors from the design's component_seed.

    offset      sigma of each converter's offset, V
    gain_error  relative sigma of each converter's gain (0.001: 0.1 %)
    inl         peak integral nonlinearity, in LSB of the converter's resolution (needs bits): a
                seeded smooth bow per converter, 0 at both ends of full scale
    """

    offset: float = 0.0
    gain_error: float = 0.0
    inl: float = 0.0

    @property
    def clean(self) -> bool:
        return self.offset == 0 and self.gain_error == 0 and self.inl == 0

    def check(self, which: str, bits: int | None, fullscale: float) -> None:
        _number(f"{which} offset (V, sigma)", self.offset)
        if self.offset >= fullscale:
            raise DesignError(f"{which} offset ({self.offset:g} V) is not below the full scale ({fullscale:g} V)")
        _number(f"{which} gain_error (relative sigma)", self.gain_error, high=0.5)
        _number(f"{which} inl (LSB)", self.inl)
        if self.inl > 0 and bits is None:
            raise DesignError(f"{which} inl is in LSB: set bits_{which} too")


@dataclass(frozen=True)
class Design:
    """Everything about the circuit that is not the matrix.

    R0, C        unit resistance and capacitance: tau = R0*C (default 1 kOhm * 1 nF = 1 us).
    r_min, r_max usable range of a programmable resistor; a matrix entry a maps to R0/|a|.
    bits_r       resolution of each programmable resistor (None = continuous). Conductances are
                 quantised to 2**bits_r - 1 uniform steps of G_max = 1/r_min, so tiny entries round to 0.
    bits_dac     DAC resolution for b over [-v_fullscale, v_fullscale] (None = exact).
    bits_adc     ADC resolution for reading the state over [-v_fullscale, v_fullscale] (None = exact).
    tol_r, tol_c relative standard deviation of each R and C (fabrication tolerance), drawn from
                 `component_seed`.
    opamp        op-amp model (ideal by default), with its offset, bias, swing, slew and 1/f noise.
    dac, adc     converter errors (offset, gain error, INL) beside bits_dac, bits_adc.
    temperature  Kelvin for Johnson-Nyquist noise of every resistor; None = no thermal noise.
    v_unit       volts per unit of x (the state voltage is v_unit * x).
    v_fullscale  DAC/ADC full scale, volts.
    rails        supply rails +-rails volts (reported against; op-amps clip only at opamp.swing).
    noise_dt     hold time of each noise sample, in units of tau; None (default) picks
                 min(0.05, 0.02/lambda_max) per problem. Held noise is white only well below
                 1/hold: between hold boundaries the variance dips by about lambda*hold/2, so the
                 hold must be short against the fastest mode tau/lambda_max (the report warns).
    dt_max       largest ngspice time step, in units of tau.
    autorange    program each array of the crossbar/factored topologies at its own full scale
                 (largest entry -> R0) and restore the gain in the summers' feedback resistors.
    amp_quiescent_w  assumed quiescent power of one op-amp (1 mW, a generic low-power part), used
                 only by the power estimate of the component report.
    autoscale    realise (A/s) x = b/s with the scale s chosen so the coefficients fit [r_min, r_max]
                 and the DAC range (circuits/scaling.py); times given in tau are the problem's, the
                 circuit runs s times longer. False: program A as given (s = 1).
    open_error_max  largest relative steady-state error allowed from entries left open (below the
                 smallest programmable conductance 1/r_max no resistor is placed); above it the
                 build fails naming the range needed.
    A run's t and noise_dt are in units of tau of the problem; dt_max in the circuit's tau = R0*C.
    """

    R0: float = 1e3
    C: float = 1e-9
    r_min: float = 10.0
    r_max: float = 1e8
    bits_r: int | None = None
    bits_dac: int | None = None
    bits_adc: int | None = None
    tol_r: float = 0.0
    tol_c: float = 0.0
    component_seed: int = 0
    opamp: OpAmp = field(default_factory=OpAmp)
    dac: Converter = field(default_factory=Converter)
    adc: Converter = field(default_factory=Converter)
    temperature: float | None = None
    v_unit: float = 1.0
    v_fullscale: float = 10.0
    rails: float = 15.0
    noise_dt: float | None = None
    dt_max: float = 0.01
    amp_quiescent_w: float = 1e-3
    autorange: bool = True
    autoscale: bool = True
    open_error_max: float = 1e-6

    @property
    def tau(self) -> float:
        return self.R0 * self.C

    def with_(self, **changes) -> Design:
        d = replace(self, **changes)
        d.check()
        return d

    def as_dict(self) -> dict:
        return asdict(self)

    def check(self) -> Design:
        def positive(name, v):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise DesignError(f"{name} must be a finite number > 0, got {v!r}")

        for name in ("R0", "C", "r_min", "r_max", "v_unit", "v_fullscale", "rails", "dt_max", "amp_quiescent_w"):
            positive(name, getattr(self, name))
        if self.r_min >= self.r_max:
            raise DesignError(f"r_min ({self.r_min}) must be below r_max ({self.r_max})")
        if not self.r_min <= self.R0 <= self.r_max:
            raise DesignError(f"R0 = {self.R0} ohm lies outside the resistor range [{self.r_min}, {self.r_max}]")
        if self.noise_dt is not None:
            positive("noise_dt", self.noise_dt)
        if not (isinstance(self.open_error_max, (int, float)) and self.open_error_max >= 0):
            raise DesignError(f"open_error_max must be a number >= 0, got {self.open_error_max!r}")
        for name in ("bits_r", "bits_dac", "bits_adc"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int) and 1 <= v <= 32):
                raise DesignError(f"{name} must be an integer from 1 to 32 or None, got {v!r}")
        for name in ("tol_r", "tol_c"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v < 0.5):
                raise DesignError(f"{name} must be a relative tolerance in [0, 0.5), got {v!r}")
        if self.temperature is not None:
            t = self.temperature
            if not (isinstance(t, (int, float)) and math.isfinite(t) and 0 <= t <= 1000):
                raise DesignError(f"temperature must be in [0, 1000] K, got {t!r}")
        if not isinstance(self.component_seed, int) or self.component_seed < 0:
            raise DesignError(f"component_seed must be a non-negative integer, got {self.component_seed!r}")
        self.opamp.check(self.rails)
        self.dac.check("dac", self.bits_dac, self.v_fullscale)
        self.adc.check("adc", self.bits_adc, self.v_fullscale)
        return self

    def hold_for(self, lam_max: float) -> float:
        """Noise hold time in tau for a system whose fastest rate is lam_max (1/tau)."""
        if self.noise_dt is not None:
            return self.noise_dt
        return min(0.05, 0.02 / lam_max)

    def kappa_to_current_sigma(self, kappa0: float) -> float:
        """Noise current intensity (A*sqrt(s)) realising dx = ... + sqrt(2*kappa0/tau) dW.

        C dV = ... + sigma dW with V = v_unit*x gives sigma = C*v_unit*sqrt(2*kappa0/tau)."""
        return self.C * self.v_unit * math.sqrt(2.0 * kappa0 / self.tau)

    def johnson_sigma(self, conductance_sum):
        """Intensity of the Johnson current of resistors with total conductance G at `temperature`:
        two-sided PSD 2kT*G, so i dt = sqrt(2kT*G) dW."""
        if self.temperature is None:
            return 0.0
        return np.sqrt(2.0 * BOLTZMANN * self.temperature * conductance_sum)  # also per node, as an array
