"""Matrix -> circuit. Every topology realises tau dx/dt = -(A x - b) + noise with V(x_i) = v_unit*x_i.

* ``ideal``    behavioural reference for any SPD A: a capacitor per cell to ground, the diagonal
               as a real resistor R0/A_ii to ground, off-diagonals as VCCS (G elements, gm = A_ij/R0),
               b as an ideal current source b_i*v_unit/R0. No op-amps, no sign tricks.
* ``dense``    realisable for any SPD A: op-amp integrator cells, one resistor R0/|A_ij| from x_j
               (or its inverted copy if A_ij < 0) into cell i's summing node; n^2 resistors.
* ``crossbar`` the paper's Appendix C for A = J^T H J + lam I: arrays J (m x N), H (m x m,
               block-diagonal so only its nonzero blocks are built) and J^T (N x m) with inverting
               summers between them; lam as a resistor R0/lam from each cell to its own summing node.
* ``factored`` the same with two arrays, U^T and U, for A = lam I + U U^T.

``build(problem, topology, design, ...)`` returns a Circuit: the netlist plus the as-built
(quantised, toleranced) system that the component report and the tests use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spu.errors import DesignError
from spu.problems import DenseProblem, FactoredProblem, GGNProblem

from .builder import Builder, BuildRecord
from .design import Design
from .netlist import Netlist

TOPOLOGIES = ("ideal", "dense", "crossbar", "factored", "oscillator")  # oscillator: circuits/oscillator.py


@dataclass
class AsBuilt:
    """The system the built components realise: (C_i/C) tau dx_i/dt = -(A_eff x - b_eff)_i.

    A_eff = diag + P @ Q (P, Q may be None) or a dense matrix. `internal` maps the state x to the
    voltages (in units of v_unit) of the other driven nodes, for peak-voltage and power estimates."""

    b: np.ndarray
    C: np.ndarray
    diag: np.ndarray | None = None
    P: np.ndarray | None = None
    Q: np.ndarray | None = None
    dense: np.ndarray | None = None
    internal: dict[str, tuple[list[str], np.ndarray]] | None = None

    def matvec(self, x: np.ndarray) -> np.ndarray:
        if self.dense is not None:
            return self.dense @ x
        return self.diag * x + self.P @ (self.Q @ x)

    def matrix(self) -> np.ndarray:
        if self.dense is not None:
            return self.dense
        return np.diag(self.diag) + self.P @ self.Q

    def solve(self, rhs: np.ndarray | None = None) -> np.ndarray:
        rhs = self.b if rhs is None else rhs
        if self.dense is not None:
            return np.linalg.solve(self.dense, rhs)
        # General Woodbury for diag + P Q (not symmetric once tolerances act).
        Dinv = 1.0 / self.diag
        y = Dinv * rhs
        k = self.P.shape[1]
        small = np.eye(k) + self.Q @ (Dinv[:, None] * self.P)
        return y - Dinv * (self.P @ np.linalg.solve(small, self.Q @ y))


@dataclass
class Circuit:
    topology: str
    netlist: Netlist
    state_nodes: list[str]
    design: Design
    record: BuildRecord
    as_built: AsBuilt
    n: int

    def text(self) -> str:
        return self.netlist.text()


def _effective(S: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
    """Current per unit signal of an array whose positive entries read a node carrying c_pos*u and
    whose negative entries read a node carrying -c_neg*u."""
    return np.where(S > 0, S * c_pos[None, :], S * c_neg[None, :])


def _check_x0(x0, n: int) -> np.ndarray:
    if x0 is None:
        return np.zeros(n)
    x0 = np.asarray(x0, dtype=float)
    if x0.shape != (n,):
        raise DesignError(f"x0 has shape {x0.shape}, the problem needs ({n},)")
    if not np.isfinite(x0).all():
        raise DesignError("x0 contains NaN or inf")
    return x0


def _lam_array(B: Builder, lam: float, n: int, sums, xs) -> np.ndarray:
    st = B.array("L", np.diag(np.full(n, lam)), sums, xs, [None] * n)
    return B.d.R0 * np.diag(st.S)


def build_ideal(B: Builder, p: DenseProblem, x0: np.ndarray):
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
                B.nl.G(f"A_{i}_{j}", xs[i], "0", xs[j], "0", A[i, j] / d.R0, comment=f"A[{i},{j}]={float(A[i, j])!r}")
    for i in range(n):
        if p.b[i] != 0:
            B.nl.I(f"b{i}", "0", xs[i], p.b[i] * d.v_unit / d.R0, comment=f"b[{i}]={float(p.b[i])!r}")
    B.noise_nodes = xs
    return xs, AsBuilt(b=p.b.copy(), C=C, dense=A_eff, internal={})


def build_dense(B: Builder, p: DenseProblem, x0: np.ndarray):
    n = p.n
    sums, xs, C = B.integrator_cells(n, x0)
    xn, gx = B.inverters("x", xs, (p.A < 0).any(axis=0))
    st = B.array("A", p.A, sums, xs, xn)
    b_eff = B.dac_inputs(p.b, sums)
    B.noise_nodes = sums
    A_eff = B.d.R0 * _effective(st.S, np.ones(n), gx)
    internal = {"xn": ([x for x in xn if x], -np.diag(gx)[gx > 0])}
    return xs, AsBuilt(b=b_eff, C=C, dense=A_eff, internal=internal)


def build_factored(B: Builder, p: FactoredProblem, x0: np.ndarray):
    n, m, R0 = p.n, p.m, B.d.R0
    U = p.U
    sums, xs, C = B.integrator_cells(n, x0)
    lam_eff = _lam_array(B, p.lam, n, sums, xs)
    xn, gx = B.inverters("x", xs, (U.T < 0).any(axis=0))
    su = B.scale(U, power=2)
    B.nl.comment(f"arrays Ut and U programmed as U/{su!r}; the y summers' gain {su * su!r} restores it")
    # Stage 1: y = -U^T x (inverting summers), then yn = +U^T x.
    ysum, ys, Rf1 = B.summers("y", m, gain=su * su)
    s1 = B.array("Ut", U.T / su, ysum, xs, xn)
    M1 = Rf1[:, None] * _effective(s1.S, np.ones(n), gx)  # V(y) = -M1 V(x)
    yn, gy = B.inverters("y", ys, np.ones(m, bool))
    # Stage 2: U reads +U^T x from yn (positive entries) or -U^T x from y (negative entries).
    s2 = B.array("U", U / su, sums, yn, ys)
    P = R0 * _effective(s2.S, gy, np.ones(m))
    b_eff = B.dac_inputs(p.b, sums)
    B.noise_nodes = sums
    internal = {"y": (ys, -M1), "yn": (yn, gy[:, None] * M1),
                "xn": ([x for x in xn if x], -np.diag(gx)[gx > 0])}
    return xs, AsBuilt(b=b_eff, C=C, diag=lam_eff, P=P, Q=M1, internal=internal)


def build_crossbar(B: Builder, p: GGNProblem, x0: np.ndarray):
    n, m, R0 = p.n, p.m, B.d.R0
    J, H = p.J, p.H
    sums, xs, C = B.integrator_cells(n, x0)
    lam_eff = _lam_array(B, p.lam, n, sums, xs)
    xn, gx = B.inverters("x", xs, (J < 0).any(axis=0))
    sj = B.scale(J)
    sh = B.scale(H, times=sj)
    B.nl.comment(f"arrays programmed as J/{sj!r}, H/{sh!r}, J^T/{sj!r}; summer gains y {sj!r}, z {sh * sj!r}")
    # Stage 1 (array J): V(y) = -J x; yn = +J x.
    ysum, ys, Rf1 = B.summers("y", m, gain=sj)
    s1 = B.array("J", J / sj, ysum, xs, xn)
    M1 = Rf1[:, None] * _effective(s1.S, np.ones(n), gx)
    yn, gy = B.inverters("y", ys, np.ones(m, bool))
    # Stage 2 (array H, only its nonzero entries): V(z) = -sj H J x; zn = +sj H J x (the sj
    # pre-compensates the J^T array's scale).
    zsum, zs, Rf2 = B.summers("z", m, gain=sh * sj)
    s2 = B.array("H", H / sh, zsum, yn, ys)
    M2 = Rf2[:, None] * (_effective(s2.S, gy, np.ones(m)) @ M1)
    zn, gz = B.inverters("z", zs, np.ones(m, bool))
    # Stage 3 (array J^T/sj): current into cell i = sum_l J_li (H J x)_l / R0.
    s3 = B.array("Jt", J.T / sj, sums, zn, zs)
    P = R0 * _effective(s3.S, gz, np.ones(m))
    b_eff = B.dac_inputs(p.b, sums)
    B.noise_nodes = sums
    internal = {"y": (ys, -M1), "yn": (yn, gy[:, None] * M1), "z": (zs, -M2),
                "zn": (zn, gz[:, None] * M2), "xn": ([x for x in xn if x], -np.diag(gx)[gx > 0])}
    return xs, AsBuilt(b=b_eff, C=C, diag=lam_eff, P=P, Q=M2, internal=internal)


def _as_problem_for(topology: str, problem):
    """Pick the form each topology needs; an impossible pairing is a clear error."""
    if topology in ("ideal", "dense"):
        if isinstance(problem, DenseProblem):
            return problem
        return DenseProblem(problem.matrix(), problem.b)
    if topology == "factored":
        if isinstance(problem, GGNProblem):
            return problem.factored()
        if isinstance(problem, FactoredProblem):
            return problem
        raise DesignError("topology 'factored' needs a factored (U, lam) or GGN (J, H, lam) problem, got a dense A")
    if topology == "crossbar":
        if isinstance(problem, GGNProblem):
            return problem
        raise DesignError(
            f"topology 'crossbar' needs a GGN problem (J, H, lam), got a {type(problem).__name__}; "
            "use 'factored' for (U, lam) or 'dense' for A"
        )
    raise DesignError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")


# ngspice 39 takes `.options seed=N` only for 1 <= N <= 2**31 - 1: it skips 0 and anything larger
# with a mere warning (so the run is silently NOT reproducible) and reads seed=1e+17 as 1.
NGSPICE_SEED_MAX = 2**31 - 1


def ngspice_seed(seed: int) -> int:
    """The ngspice seed for a user seed >= 0: itself for 1 .. 2**31-2, otherwise folded into
    [1, 2**31-1] (0 -> 2**31-1), so every non-negative seed gives a reproducible run."""
    return seed % NGSPICE_SEED_MAX or NGSPICE_SEED_MAX


_BUILDERS = {"ideal": build_ideal, "dense": build_dense, "factored": build_factored, "crossbar": build_crossbar}


def finish_transient(nl: Netlist, design: Design, saves, prints, t: float, points: int, seed) -> None:
    """Seed, tolerances, saved nodes and the .tran line shared by every topology."""
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DesignError(f"seed must be a non-negative integer, got {seed!r}")
        nl.option("seed", ngspice_seed(int(seed)))
    # Linear circuit: Newton converges in one step, so the steady state is exact to the LU solve
    # whatever reltol is. reltol = 1e-3 (ngspice's default) keeps each noise hold interval at ~6
    # time points instead of ~19 at 1e-6; dt_max bounds the transient error.
    nl.option("reltol", 1e-3)
    nl.option("abstol", 1e-15)
    nl.option("vntol", 1e-9)
    nl.save(saves)
    nl.print_tran(prints)  # so that the netlist also runs on its own in `ngspice -b FILE.cir`
    nl.transient(t * design.tau / points, t * design.tau, design.dt_max * design.tau, uic=True)


def build(problem, topology: str, design: Design | None = None, *, x0=None, kappa0: float = 0.0,
          t: float = 50.0, title: str | None = None, seed: int | None = None,
          points: int = 200, **topology_options) -> Circuit:
    """Build the circuit for `problem` and set up a transient of t (in tau) from x0.

    kappa0: programmable noise level (0 = off). design.temperature adds Johnson noise.
    seed: ngspice's random seed (TRRANDOM sources); the same seed gives the same run.
    points: output step count (ngspice still writes every internal time point)."""
    design = (design or Design()).check()
    if topology == "oscillator":  # second-order RLC cells; topology_options: oscillator=, v0=, inductors=
        from .oscillator import build_oscillator
        return build_oscillator(problem, design, x0=x0, kappa0=kappa0, t=t, title=title, seed=seed,
                                points=points, **topology_options)
    if topology_options:
        raise DesignError(f"topology {topology!r} takes no options, got {', '.join(sorted(topology_options))}")
    if not (isinstance(kappa0, (int, float)) and np.isfinite(kappa0) and kappa0 >= 0):
        raise DesignError(f"kappa0 must be a finite number >= 0, got {kappa0!r}")
    if not (isinstance(t, (int, float)) and np.isfinite(t) and t > 0):
        raise DesignError(f"analog time t must be a finite number > 0 (in tau), got {t!r}")
    form = _as_problem_for(topology, problem)
    x0 = _check_x0(x0, form.n)
    B = Builder(design, title or f"thermospice {topology} SPU, n={form.n}")
    B.nl.comment(f"topology {topology}: tau dx/dt = -(A x - b), state V(x_i) = {design.v_unit!r} V * x_i")
    xs, as_built = _BUILDERS[topology](B, form, x0)
    B.noise_hold_tau = design.hold_for(form.eig_extremes()[1]) if kappa0 > 0 or design.temperature else None
    B.noise_sources(B.noise_nodes, kappa0)
    nl = B.nl
    finish_transient(nl, design, xs, xs, t, points, seed)
    return Circuit(topology, nl, xs, design, B.record, as_built, form.n)
