"""``dense``: realisable for any SPD A. Op-amp integrator cells, one resistor R0/|A_ij| from x_j
(or its inverted copy if A_ij < 0) into cell i's summing node; n^2 resistors."""

from __future__ import annotations

import numpy as np

from spu.core.problems import DenseProblem

from ..builder import Builder
from ..circuit import AsBuilt, effective, inverted_copies
from .base import as_dense
from .rc import RCTopology


class Dense(RCTopology):
    name = "dense"
    rank = 1
    layout = "dense"
    programmed_arrays = ("A",)
    listed = {"train": 2}

    def form(self, problem) -> DenseProblem:
        return as_dense(problem)

    def direct_coefficients(self, form: DenseProblem) -> tuple[str, np.ndarray]:
        return "A", form.A

    def place(self, B: Builder, p: DenseProblem, x0: np.ndarray):
        n = p.n
        sums, xs, C = B.integrator_cells(n, x0)
        xn, gx = B.inverters("x", xs, (p.A < 0).any(axis=0))
        st = B.array("A", p.A, sums, xs, xn)
        b_eff = B.dac_inputs(p.b, sums)
        B.noise_nodes = sums
        A_eff = B.d.R0 * effective(st.S, np.ones(n), gx)
        internal = {"xn": ([x for x in xn if x], inverted_copies(gx))}
        return xs, AsBuilt(b=b_eff, C=C, dense=A_eff, internal=internal)


TOPOLOGY = Dense()
