"""The op-amp as the netlist carries it: one subcircuit shared by every amplifier of a circuit.

Two pins (inn, out) with the non-inverting input at ground: a VCVS of the DC gain (IDEAL_GAIN for
an ideal part), or a single-pole stage when a gain-bandwidth product is set. A bias current
(OpAmp.bias) is a current source inside, drawn out of inn. Each amp's own input offset is not in
here: it differs per instance, so Builder.opamp_input places it as a DC source in series with the
instance's inverting input (why there and not at the + input: see that method)."""

from __future__ import annotations

import math

from .design import OpAmp
from .netlist import Netlist

PORTS = ("inn", "out")


def subckt_body(amp: OpAmp):
    """The callback that fills the op-amp subcircuit (Netlist.subckt's `build`)."""

    def build(sub: Netlist):
        if amp.gbw is None:
            gain = amp.IDEAL_GAIN if amp.ideal else amp.gain
            sub.E("1", "out", "0", "0", "inn", gain)
        else:
            # Single pole: V(p) = -gain*V(inn) rolling off at gbw/gain, then a buffer.
            sub.G("1", "p", "0", "inn", "0", 1.0)
            sub.R("p", "p", "0", amp.gain)
            sub.C("p", "p", "0", 1.0 / (2 * math.pi * amp.gbw))
            sub.E("1", "out", "0", "p", "0", 1.0)
        if amp.bias != 0:
            # I n+ n- draws its current out of n+: the bias leaves the summing node.
            sub.I("bias", "inn", "0", amp.bias)

    return build
