"""The op-amp as the netlist carries it: one subcircuit shared by every amplifier of a circuit.

Two pins (inn, out) with the non-inverting input at ground: a VCVS of the DC gain (IDEAL_GAIN for
an ideal part), or a single-pole stage when a gain-bandwidth product is set."""

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

    return build
