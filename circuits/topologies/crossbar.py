"""``crossbar``: the paper's Appendix C for A = J^T H J + lam I. Arrays J (m x N), H (m x m,
block-diagonal so only its nonzero blocks are built) and J^T (N x m) with inverting summers
between them; lam as a resistor R0/lam from each cell to its own summing node."""

from __future__ import annotations

import numpy as np

from spu.core.errors import DesignError
from spu.core.problems import GGNProblem

from ..builder import Builder
from ..circuit import AsBuilt, effective, inverted_copies
from .rc import RCTopology, lam_array


class Crossbar(RCTopology):
    name = "crossbar"
    rank = 2
    layout = "crossbar"
    programmed_arrays = ("J", "H", "Jt")
    chain = (("J", "H", "Jt"), ("y", "z"))
    listed = {"train": 0, "asbuilt": 1}
    preferred_form = "ggn"  # it builds J, H and J^T
    accepts_dense = False

    def form(self, problem) -> GGNProblem:
        if problem.ggn() is not None:
            return problem.ggn()
        raise DesignError(
            f"topology 'crossbar' needs a GGN problem (J, H, lam), got a {type(problem).__name__}; "
            "use 'factored' for (U, lam) or 'dense' for A"
        )

    def direct_coefficients(self, form) -> tuple[str, np.ndarray]:
        return "lam", np.array([form.lam], dtype=float)  # J and H autorange on their own

    def place(self, B: Builder, p: GGNProblem, x0: np.ndarray):
        n, m, R0 = p.n, p.m, B.d.R0
        J, H = p.J, p.H
        sums, xs, C = B.integrator_cells(n, x0)
        lam_eff = lam_array(B, p.lam, n, sums, xs)
        xn, gx = B.inverters("x", xs, (J < 0).any(axis=0))
        sj = B.scale(J)
        sh = B.scale(H, times=sj)
        B.nl.comment(f"arrays programmed as J/{sj!r}, H/{sh!r}, J^T/{sj!r}; summer gains y {sj!r}, z {sh * sj!r}")
        # Stage 1 (array J): V(y) = -J x; yn = +J x.
        ysum, ys, Rf1 = B.summers("y", m, gain=sj)
        s1 = B.array("J", J / sj, ysum, xs, xn)
        M1 = Rf1[:, None] * effective(s1.S, np.ones(n), gx)
        yn, gy = B.inverters("y", ys, np.ones(m, bool))
        # Stage 2 (array H, only its nonzero entries): V(z) = -sj H J x; zn = +sj H J x (the sj
        # pre-compensates the J^T array's scale).
        zsum, zs, Rf2 = B.summers("z", m, gain=sh * sj)
        s2 = B.array("H", H / sh, zsum, yn, ys)
        M2 = Rf2[:, None] * (effective(s2.S, gy, np.ones(m)) @ M1)
        zn, gz = B.inverters("z", zs, np.ones(m, bool))
        # Stage 3 (array J^T/sj): current into cell i = sum_l J_li (H J x)_l / R0.
        s3 = B.array("Jt", J.T / sj, sums, zn, zs)
        P = R0 * effective(s3.S, gz, np.ones(m))
        b_eff = B.dac_inputs(p.b, sums)
        B.noise_nodes = sums
        internal = {
            "y": (ys, -M1),
            "yn": (yn, gy[:, None] * M1),
            "z": (zs, -M2),
            "zn": (zn, gz[:, None] * M2),
            "xn": ([x for x in xn if x], inverted_copies(gx)),
        }
        return xs, AsBuilt(b=b_eff, C=C, diag=lam_eff, P=P, Q=M2, internal=internal)


TOPOLOGY = Crossbar()
