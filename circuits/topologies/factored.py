"""``factored``: A = lam I + U U^T with two arrays, U^T into m inverting summers and U back into
the cells; lam as a resistor R0/lam from each cell to its own summing node."""

from __future__ import annotations

import numpy as np

from spu.core.errors import DesignError
from spu.core.problems import FactoredProblem

from ..builder import Builder
from ..circuit import AsBuilt, effective, inverted_copies
from .rc import RCTopology, lam_array


class Factored(RCTopology):
    name = "factored"
    rank = 3
    layout = "factored"
    programmed_arrays = ("Ut", "U")
    chain = (("Ut", "U"), ("y",))
    listed = {"train": 1, "asbuilt": 0}
    accepts_dense = False

    def form(self, problem) -> FactoredProblem:
        f = problem.factored()  # U = J^T S of a GGN problem; itself when factored
        if f is not None:
            return f
        raise DesignError("topology 'factored' needs a factored (U, lam) or GGN (J, H, lam) problem, got a dense A")

    def direct_coefficients(self, form) -> tuple[str, np.ndarray]:
        return "lam", np.array([form.lam], dtype=float)  # U autoranges on its own

    def place(self, B: Builder, p: FactoredProblem, x0: np.ndarray):
        n, m, R0 = p.n, p.m, B.d.R0
        su = B.scale(p.U, power=2)
        U = B.drop_negligible_columns(p.U, su)
        m = U.shape[1]
        sums, xs, C = B.integrator_cells(n, x0)
        lam_eff = lam_array(B, p.lam, n, sums, xs)
        xn, gx = B.inverters("x", xs, (U.T < 0).any(axis=0))
        B.nl.comment(f"arrays Ut and U programmed as U/{su!r}; the y summers' gain {su * su!r} restores it")
        # Stage 1: y = -U^T x (inverting summers), then yn = +U^T x.
        ysum, ys, Rf1 = B.summers("y", m, gain=su * su)
        s1 = B.array("Ut", U.T / su, ysum, xs, xn)
        M1 = Rf1[:, None] * effective(s1.S, np.ones(n), gx)  # V(y) = -M1 V(x)
        yn, gy = B.inverters("y", ys, np.ones(m, bool))
        # Stage 2: U reads +U^T x from yn (positive entries) or -U^T x from y (negative entries).
        s2 = B.array("U", U / su, sums, yn, ys)
        P = R0 * effective(s2.S, gy, np.ones(m))
        b_eff = B.dac_inputs(p.b, sums)
        B.noise_nodes = sums
        internal = {"y": (ys, -M1), "yn": (yn, gy[:, None] * M1), "xn": ([x for x in xn if x], inverted_copies(gx))}
        return xs, AsBuilt(b=b_eff, C=C, diag=lam_eff, P=P, Q=M1, internal=internal)


TOPOLOGY = Factored()
