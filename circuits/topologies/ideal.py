"""``ideal``: the behavioural reference for any SPD A. A capacitor per cell to ground, the diagonal
as a real resistor R0/A_ii to ground, off-diagonals as VCCS (G elements, gm = A_ij/R0), b as an
ideal current source b_i*v_unit/R0. No op-amps, no sign tricks."""

from __future__ import annotations

import numpy as np

from spu.core.problems import DenseProblem

from ..builder import Builder
from ..circuit import AsBuilt
from .base import as_dense
from .rc import RCTopology


class Ideal(RCTopology):
    name = "ideal"
    rank = 0
    listed = {"train": 3}

    def form(self, problem) -> DenseProblem:
        return as_dense(problem)

    def direct_coefficients(self, form: DenseProblem) -> tuple[str, np.ndarray]:
        # Only the diagonal is a resistor; the off-diagonals are VCCS.
        return "diag(A)", np.diag(form.A)

    def place(self, B: Builder, p: DenseProblem, x0: np.ndarray):
        d, A, n = B.d, p.A, p.n
        xs = [f"x{i}" for i in range(n)]
        C = B.with_tolerance(np.full(n, d.C), d.tol_c)
        for i in range(n):
            B.nl.C(f"{i}", xs[i], "0", C[i], ic=d.v_unit * x0[i], comment=f"cell {i}: V(x{i}) = v_unit * x[{i}]")
        B.record.capacitors.extend(C.tolist())
        diag = np.diag(A)
        # The diagonal is a real resistor R0/A_ii from x_i to ground (so Johnson noise has a home);
        # it draws V(x_i)/R out of the cell.
        st = B.array("A", np.diag(diag), xs, ["0"] * n, [None] * n)
        A_eff = A.copy()
        np.fill_diagonal(A_eff, d.R0 * np.diag(st.S))
        for i in range(n):
            for j in range(n):
                if i != j and A[i, j] != 0:
                    B.nl.G(
                        f"A_{i}_{j}", xs[i], "0", xs[j], "0", A[i, j] / d.R0, comment=f"A[{i},{j}]={float(A[i, j])!r}"
                    )
        for i in range(n):
            if p.b[i] != 0:
                B.nl.I(f"b{i}", "0", xs[i], p.b[i] * d.v_unit / d.R0, comment=f"b[{i}]={float(p.b[i])!r}")
        B.noise_nodes = xs
        return xs, AsBuilt(b=p.b.copy(), C=C, dense=A_eff, internal={})


TOPOLOGY = Ideal()
