"""The op-amp as the netlist carries it: one subcircuit shared by every amplifier of a circuit.

Two pins (inn, out) with the non-inverting input at ground: a VCVS of the DC gain (IDEAL_GAIN for
an ideal part), or a single-pole stage when a gain-bandwidth product is set. With a swing or a slew
rate, that gain stage drives an internal node and `output_stage` turns it into the output. A bias
current (OpAmp.bias) is a current source inside, drawn out of inn. Each amp's own input offset is not
in here: it differs per instance, so Builder.opamp_input places it as a DC source in series with the
instance's inverting input (why there and not at the + input: see that method)."""

from __future__ import annotations

import math

from .design import OpAmp
from .netlist import Netlist

PORTS = ("inn", "out")
# The slew stage's state node, inside every integrator: Builder.hold_outputs gives it an initial
# condition per instance, so that an output starts where its cell holds it, not at 0 V.
SLEW_NODE = "o"


def subckt_body(amp: OpAmp, lag: float = 1.0):
    """The callback that fills the op-amp subcircuit (Netlist.subckt's `build`). lag (s): the slew
    stage's small-signal time constant (see output_stage); unused without a slew rate."""
    limited = amp.swing is not None or amp.slew is not None
    gain_out = "a" if limited else "out"

    def build(sub: Netlist):
        if amp.gbw is None:
            gain = amp.IDEAL_GAIN if amp.ideal else amp.gain
            sub.E("1", gain_out, "0", "0", "inn", gain)
        else:
            # Single pole: V(p) = -gain*V(inn) rolling off at gbw/gain, then a buffer.
            sub.G("1", "p", "0", "inn", "0", 1.0)
            sub.R("p", "p", "0", amp.gain)
            sub.C("p", "p", "0", 1.0 / (2 * math.pi * amp.gbw))
            sub.E("1", gain_out, "0", "p", "0", 1.0)
        if amp.bias != 0:
            # I n+ n- draws its current out of n+: the bias leaves the summing node.
            sub.I("bias", "inn", "0", amp.bias)
        if limited:
            output_stage(sub, amp, gain_out, lag)

    return build


def output_stage(sub: Netlist, amp: OpAmp, src: str, lag: float) -> None:
    """out = the gain stage's output V(src), clipped at +-swing, then slew limited.

    Clamp: a piecewise-linear E source (slope 1 inside +-swing, 0 outside): out of the clamp the
    amplifier's loop is open, its summing node leaves virtual ground and the gain stage's output
    runs to gain * V(inn) (measured on an integrator cell at gain 1e12: ngspice converges through
    clipping and back, the trajectory within 1e-5 of the closed form).

    Slew: the classic current-limited stage, a transconductance of 1 S into a capacitor of `lag`
    farads with its current clipped at slew*lag: dV(o)/dt = clip((V(c) - V(o))/lag, +-slew), so the
    output follows the clamp at most at the slew rate, then a buffer (zero output impedance, as the
    arrays reading it expect). Its pole 1/lag sits inside the amplifier's loop, where the gain
    divides it away: it shifts a closed-loop output by lag/gain of its rate (1e-20 s at gain 1e12).
    lag is the circuit's step cap: XSPICE's own `slew` model and lags below ~1/10 of the step stalled
    ngspice ("timestep too small") where a slewing integrator hands back to its loop.

    Only the integrators get the slew stage (Builder.opamp): a resistive stage reading a slewing
    cell through a gain of 1 (an inverter) must follow it at exactly its own slew rate, and ngspice
    stalled there with this stage, with a smooth (tanh) transconductance and with a 5-point table
    alike (factored and crossbar, N = 8). The cells' slew is what bounds the state's rate; a summer
    of gain > 1 reading them could slew too, which neither backend models."""
    target = src
    if amp.swing is not None:
        target = "out" if amp.slew is None else "c"
        sub.E_limit("clip", target, "0", src, "0", amp.swing, amp.swing)
    if amp.slew is None:
        return
    knee = amp.slew * lag
    sub.G_limit("slew", "0", SLEW_NODE, target, SLEW_NODE, knee, knee)
    sub.C("slew", SLEW_NODE, "0", lag)
    sub.E("out", "out", "0", SLEW_NODE, "0", 1.0)
