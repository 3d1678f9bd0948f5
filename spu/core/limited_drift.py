"""The realised dynamics with op-amps whose outputs clip at +-swing and slew at most at a rate:
what a built circuit does once a limit is reached (circuits/realised.py fills `OutputLimits`).

An integrator cell i (capacitor C_i from its summing node s_i to its output x_i, all its resistors
of total conductance G_s into s_i) keeps the capacitor voltage z_i = (V(x_i) - V(s_i))/v_unit as its
state. KCL at s_i holds whatever the amplifier does; in problem time s and units of v_unit:

    w0_i dz_i/ds = -(diag_i x_i + I_i - b_i) + Gs_i (x_i - z_i),        Gs_i = R0 G_s,i (times the scale)

with I = P Q x the current the chain drives into the cells. While the amplifier's loop is closed
its summing node sits at -V(x)/g, i.e. x = c z with c = g/(g+1) (1 for an ideal part), and the
last term is -Gs x/g: the linear realised system, exactly. Out of the clamp, x = +-swing and the
summing node leaves virtual ground: z keeps integrating ("windup") and decays towards the clamp at
rate Gs/w0 only, so a cell leaves the rail late, when z has come back. So x = clip(c z, +-limit).

The chain's stages have no capacitor: each output is its linear image of the previous one, clipped
(exact for a resistive-feedback stage: out of the clamp its summing node floats and drives nothing
else). The chain is v_1 = clip(-M_0 x), v_k+1 = clip(M_k v_k), and the cells read I = -P v_last.

Op-amp offsets and bias currents (circuits/amp_input.py) put a constant shift c_k on stage k's
output: V_k = M V_k-1 + c_k, and b already carries the linear image of every c_k. So the stepper
keeps y_k = V_k - c_k (linear in y_k-1 while unclipped) and the real clamp clip(M y + c) - c reads
clip(M y, -limit - c_k, limit - c_k). A cell's offset e needs nothing: z counts from the summing
node's rest at e (z = x - V(s)/v_unit + e/v_unit), so x = clip(c z) and its term Gs (x - z) hold
as above, b carrying Gs e/v_unit; the netlist's capacitor ic (v_os - v_unit x0) starts z at x0.
Inverters are folded into the maps (their gain Rf/Rin is 1 + O(tol_r)), and clip too: an inverter
whose input sits near the rail (within |gain - 1| of it, or within its offset's shift) would clip,
so each array adds the difference its clipped inverted copies make (`InvertedCopies`), through the
columns that clip only: O(N * clipping columns), no N x m copy.

Slew: every cell output moves towards its target clip(c z) at most at `rate` per tau:
x <- x + clip(target - x, +-rate h); the chain's resistive stages follow at once, as in the netlist
(circuits/opamp_model.py: only the integrators carry the slew stage). The noise is white here, so
it has no rate to limit; only the drift is slew limited (ngspice's held noise has a finite rate,
sqrt(2 kappa0 / hold) per tau, which its slew stage does limit).

Time-varying input (the op-amps' 1/f noise, spu/backends/flicker_drive.py): advance takes it
affine over the call, as (e, volts) at both ends. e (in v_unit) is each cell's own input-referred
voltage, which moves its summing node: V(s) = e - V(x)/g, so x = clip(c (z + e)), and the
Gs (x - z) term carries the current it draws. volts (V, by op-amp group) move each summer stage's
output before its clamp, and the inverted copies, each clipped at the swing too (an inverted copy
of a railed output sits right at the swing): OutputLimits.flicker_shifts and .flicker_tail
(circuits/stage_shift.py).
Without clamps this is the linear realised system with RealisedSystem.amp_input's shift of b.

Stepping: stochastic Heun (predictor-corrector with one noise increment per step), the outputs
recomputed at the predictor and at the end of the step. Where the right-hand side is smooth
(between clamp and slew switchings) the drift is second order, O((rho h)^2) per unit time with rho
the fastest rate; each switching costs O(h) once in the slew case and O(h^2) for a clamp; additive
noise makes it strong order 1 with a stationary-variance bias O((rho h)^2). The step is
h = min(step, accuracy / rho) (accuracy 0.05 by default). The error is measured by step halving in
tests/test_opamp_limits.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .lowrank_drift import psd_sqrt


@dataclass
class InvertedCopies:
    """The inverted copies one array reads: w = -gain * u of its input u (y, as the stages), which
    clip at bounds shifted by `shift`; the array's output moves by scale * (sign S)+ @ (w clipped - w)."""

    S: np.ndarray  # the array's as-built signed conductances
    sign: int  # +1: its positive entries read the copies; -1: its negative ones
    scale: np.ndarray | float  # the array's output per unit current (rows)
    gain: np.ndarray  # effective gain of each column's inverter (0: none built)
    shift: np.ndarray | float  # c / v_unit of each copy (offsets, bias)

    def linear(self, u):
        return -self.gain * u

    def correction(self, u, limit: float):
        w = self.linear(u)
        d = np.clip(w, -limit - self.shift, limit - self.shift) - w
        cols = np.flatnonzero(d * (self.gain != 0))
        if not cols.size:
            return 0.0
        return self.scale * (np.maximum(self.sign * self.S[:, cols], 0.0) @ d[cols])


@dataclass
class StageShift:
    """What the op-amps' input-referred voltages (V, by group) do to one stage of the chain, in
    v_unit (circuits/stage_shift.py): its summers' own (gain per amp; None for the cells' stage,
    whose shift is one of b) and the inverted copies' of the previous signal, each clipped."""

    summers: str | None  # op-amp group of the stage's summers (None: the stage into the cells)
    gain: np.ndarray | None  # per summer amp
    inverters: str | None = None  # op-amp group of the inverters feeding the stage's array
    index: np.ndarray | None = None  # the columns of the previous signal they invert
    inv_gain: np.ndarray | None = None  # their effective gain, as the maps fold it
    inv_out: np.ndarray | None = None  # their output shift per volt at their input
    matrix: np.ndarray | None = None  # the stage's input per unit departure of the inverted copies

    def __call__(self, prev: np.ndarray, volts: dict, top: float):
        """The stage's shift, given the previous signal prev (the linear image the maps fold)."""
        d = 0.0 if self.summers is None else self.gain * volts[self.summers]
        if self.inverters is None:
            return d
        lin = -self.inv_gain * prev[self.index]
        return d + self.matrix @ (np.clip(lin + self.inv_out * volts[self.inverters], -top, top) - lin)


@dataclass
class OutputLimits:
    """What the clamp and the slew stage need beside the linear realised system (problem time)."""

    w0: np.ndarray  # C_i / C (no finite-gain factor)
    diag: np.ndarray  # lam_i as built
    Gs: np.ndarray  # R0 * total conductance at each cell's summing node
    maps: list  # M_0 (m x N), then M_1, ... (m x m): the chain, see the module docstring
    gain: float  # c = g/(g+1), 1 for an ideal op-amp
    limit: float  # swing / v_unit (inf: no clamp)
    rate: float  # slew * problem tau / v_unit, per problem tau (inf: no slew limit)
    shifts: list | None = None  # c_k / v_unit of each stage (offsets, bias); None: none
    inverted: list | None = None  # InvertedCopies read by each array (maps', then the cells'); None: unclipped

    def bounds(self, k: int):
        """(low, high) of stage k's y = V - c (see the module docstring)."""
        if self.shifts is None:
            return -self.limit, self.limit
        return -self.limit - self.shifts[k], self.limit - self.shifts[k]

    # With 1/f noise: each summer stage's StageShift, and the one into the cells (a shift of b;
    # None: none). Empty without 1/f noise.
    flicker_shifts: list = field(default_factory=list)
    flicker_tail: StageShift | None = None

    def chain(self, x: np.ndarray) -> list:
        """The stage outputs of x through the chain, linear (no clamp): for the checks."""
        out = [-(self.maps[0] @ x)]
        for M in self.maps[1:]:
            out.append(M @ out[-1])
        return out


def _move(prev, target, rate: float, h: float):
    """prev moved towards target by at most rate*h (the whole way with no slew limit)."""
    if prev is None or math.isinf(rate):
        return target
    return prev + np.clip(target - prev, -rate * h, rate * h)


def _between(inp, r: float):
    """(e, volts) at fraction r of an input given at both ends, affine in between."""
    (e0, v0), (e1, v1) = inp
    return e0 + r * (e1 - e0), {name: v0[name] + r * (v1[name] - v0[name]) for name in v0}


class LimitedDrift:
    """Steps z (the cells' capacitor voltages) with the outputs they drive (see the docstring)."""

    def __init__(self, lim: OutputLimits, P, b, q_cell, Wn=None, Sn=None, *, rho: float, step: float, accuracy=0.05):
        self.lim, self.P, self.b = lim, P, b
        self.h_max = min(step, accuracy / max(rho, float((lim.Gs / lim.w0).max()), 1e-300))
        self.q_std = np.sqrt(q_cell) / lim.w0
        self.chain_noise = None if Sn is None else (Wn, psd_sqrt(Sn))

    def outputs(self, z, prev, h, inp=None):
        """[x, v_1, ...] for state z, x moved from prev[0] by at most rate*h (prev None: at once);
        inp = (e, volts): the cells' own input voltages (v_unit) and every amp's (V, by group)."""
        lim, top = self.lim, self.lim.limit
        e, volts = (0.0, None) if inp is None else inp
        x = _move(prev[0] if prev else None, np.clip(lim.gain * (z + e), -top, top), lim.rate, h)
        outs = [x]
        for k, M in enumerate(lim.maps):
            v = (-(M @ x) if k == 0 else M @ outs[-1]) + self._clipped(k, outs[-1])
            if volts is not None:
                v += lim.flicker_shifts[k](outs[-1], volts, top)
            outs.append(np.clip(v, *lim.bounds(k)))
        return outs

    def _clipped(self, k: int, u):
        """What array k's clipped inverted copies of its input u add to its output (offsets, bias).
        With 1/f noise as well the copies' clip is applied once for each (an approximation where
        both act at a clamp; each alone is exact)."""
        inv = self.lim.inverted
        return 0.0 if inv is None else inv[k].correction(u, self.lim.limit)

    def start(self, z0, inp=None):
        """The outputs at t = 0, as the netlist starts them: with a slew stage, the cells at its .ic,
        clip(c z0) (Builder.hold_outputs); without one, where their inputs put them at once. The
        chain from them."""
        if inp is not None and math.isfinite(self.lim.rate):
            inp = (0.0, inp[1])
        return self.outputs(z0, None, 0.0, inp)

    def drift(self, z, outs, inp=None):
        lim, x = self.lim, outs[0]
        tail = lim.flicker_tail
        b = self.b if inp is None or tail is None else self.b + tail(outs[-1], inp[1], lim.limit)
        current = self.P @ outs[-1] + self._clipped(len(lim.maps), outs[-1])
        return (b - lim.diag * x + current + lim.Gs * (x - z)) / lim.w0

    def _noise(self, h, rng):
        dw = self.q_std * (math.sqrt(h) * rng.standard_normal(self.q_std.shape[0]))
        if self.chain_noise is not None:
            Wn, L = self.chain_noise
            dw += (Wn @ (L @ (math.sqrt(h) * rng.standard_normal(L.shape[1])))) / self.lim.w0
        return dw

    def advance(self, z, outs, dt: float, rng, inp=None):
        """(z, outputs) after time dt (tau), in Heun steps of at most h_max; inp = ((e, volts) at
        the start, (e, volts) at the end), the input affine in between (module doc; None: none)."""
        if dt == 0:
            return z, outs
        k = max(1, math.ceil(dt / self.h_max - 1e-9))
        h = dt / k
        noisy = self.q_std.any() or self.chain_noise is not None
        ia = None if inp is None else inp[0]
        for j in range(k):
            ib = None if inp is None else _between(inp, (j + 1) / k)
            f0 = self.drift(z, outs, ia)
            dw = self._noise(h, rng) if noisy else 0.0
            zp = z + h * f0 + dw
            fp = self.drift(zp, self.outputs(zp, outs, h, ib), ib)
            z = z + 0.5 * h * (f0 + fp) + dw
            outs = self.outputs(z, outs, h, ib)
            ia = ib
        return z, outs


class LimitCheck:
    """Watches the linear path on its step grid (SplitTransition.advance's visit): `reached` turns
    True once a cell or chain output may come within reach of the swing, or a cell's drift rate
    within reach of the slew rate.

    Between grid points a smooth path leaves the chord by at most h^2 max|f''|/8; f'' is taken from
    the second differences of the grid values, with a factor 2 of safety (|d2 f|/4). A noisy cell
    also wanders by its own noise: 3 sqrt(q h)/w more (a Brownian bridge passes that with
    probability e^-18). The rates are the drift's, -(A x - b)/w (white noise has no rate)."""

    def __init__(self, lim: OutputLimits, drift_rate, q_std: np.ndarray):
        self.lim, self.rate_of, self.q_std = lim, drift_rate, q_std
        self.history: list = []
        self.reached = False

    def _values(self, x):
        """(values, bound) pairs: outputs against the swing, drift rates against the slew rate."""
        lim, pairs = self.lim, []
        if math.isfinite(lim.limit):
            shifts = lim.shifts or [0.0] * len(lim.maps)
            outs = [v + c for v, c in zip(lim.chain(x), shifts)]
            pairs += [(v, lim.limit) for v in [x, *outs]]
            for inv, u in zip(lim.inverted or (), [x, *lim.chain(x)]):
                pairs.append((inv.linear(u) + inv.shift, lim.limit))
        if math.isfinite(lim.rate):
            pairs.append((self.rate_of(x), lim.rate))
        return pairs

    def __call__(self, x, h):
        pairs = self._values(x)
        self.history = (self.history + [[v for v, _ in pairs]])[-3:]
        for j, (v, top) in enumerate(pairs):
            reach = np.abs(v)
            if len(self.history) == 3:
                a, b, c = (past[j] for past in self.history)
                reach = reach + np.abs(a - 2 * b + c) / 4
            if j == 0 and math.isfinite(self.lim.limit):
                reach = reach + 3 * self.q_std * math.sqrt(h)
            if (reach >= top).any():
                self.reached = True
                raise LimitReached


class LimitReached(Exception):
    """Raised by LimitCheck to stop the linear path at the first grid point near a limit."""
