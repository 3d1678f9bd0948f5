"""What a topology is: the one object the rest of the code asks about a circuit topology.

A topology builds its netlist from a problem and answers, without anyone comparing its name:
which problem form it builds from, how it scales the problem into the resistor range,
how the timing model counts its programmed resistors, whether backend asbuilt can realise it,
whether its cells are second order, how long its dynamics take to settle, and in which command-line
lists it appears. circuits/topologies/__init__.py is the registry that finds one by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from spu.core.problems import DenseProblem
from spu.core.spectral import settling_time


class Topology:
    """Base of every topology; a subclass sets the attributes and implements form and build."""

    name: str
    rank: int  # its place in TOPOLOGIES and in --topology's choices
    # The spu/timing.resistor_count layout the timing model counts for it ("dense", "factored",
    # "crossbar"): spu/ has no circuits to ask, so the device gets this string through the bridge.
    layout: str = "dense"
    # Builder labels of the arrays that store A (Circuit.programmed_resistors counts them as
    # built); None: no programmed arrays, the timing model then counts `layout` from the problem.
    programmed_arrays: tuple[str, ...] | None = None
    # The inverting chain backend asbuilt composes (circuits/realised.py): (array labels in signal
    # order, summer labels between them). None: not realisable without ngspice.
    chain: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    # Position in the command-line choice lists it belongs to: "train" (thermospice train
    # --topology) and "asbuilt" (what backend asbuilt realises, also the training sweeps' list).
    listed: Mapping[str, int] = MappingProxyType({})
    preferred_form = "factored"  # "ggn" or "factored": the problem form an SPU should be given
    accepts_dense = True  # builds from a dense A (else it needs factors U or J, H)
    second_order = False  # RLC cells (underdamped dynamics) instead of RC cells
    takes_noise_mode = True  # honours build(noise="table" | "held")

    @property
    def realisable(self) -> bool:
        return self.chain is not None

    def build(self, problem, design, **options):
        """The Circuit for `problem` (see circuits.topologies.build for the options)."""
        raise NotImplementedError

    def settle_time(self, problem, tol: float, options: dict) -> float:
        """Time (problem tau) for the slowest mode of the built circuit to decay to tol: RC cells
        decay at lambda_min(A)."""
        return settling_time(problem.eig_extremes()[0], tol)


def as_dense(problem) -> DenseProblem:
    """The problem as a dense A (formed from the factors where it has them)."""
    return problem.dense()
