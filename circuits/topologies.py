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

import numpy as np

from spu.core.errors import DesignError
from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem

from .builder import Builder
from .circuit import AsBuilt, Circuit, check_seed, check_x0, effective, finish_transient, inverted_copies
from .design import Design
from .noise_table import MAX_VALUES, table_values
from .scaling import check_open, choose_scale, exact_solution, open_error, scaled

TOPOLOGIES = ("ideal", "dense", "crossbar", "factored", "oscillator")  # oscillator: circuits/oscillator.py


def _lam_array(B: Builder, lam: float, n: int, sums, xs) -> np.ndarray:
    st = B.array("L", np.full(n, lam), sums, xs, [None] * n)  # diagonal: no n x n matrix
    return B.d.R0 * st.S


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
    A_eff = B.d.R0 * effective(st.S, np.ones(n), gx)
    internal = {"xn": ([x for x in xn if x], inverted_copies(gx))}
    return xs, AsBuilt(b=b_eff, C=C, dense=A_eff, internal=internal)


def build_factored(B: Builder, p: FactoredProblem, x0: np.ndarray):
    n, m, R0 = p.n, p.m, B.d.R0
    su = B.scale(p.U, power=2)
    U = B.drop_negligible_columns(p.U, su)
    m = U.shape[1]
    sums, xs, C = B.integrator_cells(n, x0)
    lam_eff = _lam_array(B, p.lam, n, sums, xs)
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
    internal = {"y": (ys, -M1), "yn": (yn, gy[:, None] * M1),
                "xn": ([x for x in xn if x], inverted_copies(gx))}
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
    internal = {"y": (ys, -M1), "yn": (yn, gy[:, None] * M1), "z": (zs, -M2),
                "zn": (zn, gz[:, None] * M2), "xn": ([x for x in xn if x], inverted_copies(gx))}
    return xs, AsBuilt(b=b_eff, C=C, diag=lam_eff, P=P, Q=M2, internal=internal)


def _as_problem_for(topology: str, problem):
    """Pick the form each topology needs; an impossible pairing is a clear error."""
    if topology in ("ideal", "dense"):
        return problem.dense()
    if topology == "factored":
        f = problem.factored()
        if f is not None:
            return f
        raise DesignError("topology 'factored' needs a factored (U, lam) or GGN (J, H, lam) problem, got a dense A")
    if topology == "crossbar":
        if problem.ggn() is not None:
            return problem
        raise DesignError(
            f"topology 'crossbar' needs a GGN problem (J, H, lam), got a {type(problem).__name__}; "
            "use 'factored' for (U, lam) or 'dense' for A"
        )
    raise DesignError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")


_BUILDERS = {"ideal": build_ideal, "dense": build_dense, "factored": build_factored, "crossbar": build_crossbar}


NOISE_MODES = ("table", "held")


def build(problem, topology: str, design: Design | None = None, *, x0=None, kappa0: float = 0.0,
          t: float = 50.0, title: str | None = None, seed: int | None = None,
          points: int = 200, noise: str = "table", builder: type[Builder] = Builder,
          **topology_options) -> Circuit:
    """Build the circuit for `problem` and set up a transient of t (in tau) from x0.

    kappa0: programmable noise level (0 = off). design.temperature adds Johnson noise.
    seed: random seed of the noise; the same seed gives the same run.
    points: output step count (ngspice still writes every internal time point).
    noise: "table" (default): the noise comes from table files (Circuit.files()) at ~1 time point
        per hold; "held": TRRANDOM sources (~5-6 points per hold), the netlist then runs on its own.
        A table beyond noise_table.MAX_VALUES falls back to "held" (Circuit.noise_mode says which).
        The oscillator topology always uses held noise.
    builder: the Builder class placing the elements (circuits/realised.py keeps values, no text)."""
    if noise not in NOISE_MODES:
        raise DesignError(f"noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
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
    x0 = check_x0(x0, form.n)
    s = choose_scale(form, topology, design)
    circuit_form = scaled(form, s)

    def assemble(d: Design, kappa: float, label: str):
        B = builder(d, label)
        B.record.scale = s
        if s != 1.0:
            B.nl.comment(f"scaled: the circuit realises (A/{s!r}) x = b/{s!r}; one problem tau is {s!r} circuit tau")
        B.nl.comment(f"topology {topology}: tau dx/dt = -(A x - b), state V(x_i) = {d.v_unit!r} V * x_i")
        xs, as_built = _BUILDERS[topology](B, circuit_form, x0)
        # Noise hold and kappa0 are the problem's: the hold is s times longer in circuit tau, and
        # kappa0/s keeps the stationary covariance kappa0 A^-1 (the circuit's matrix is A/s).
        B.noise_hold_tau = s * d.hold_for(form.eig_extremes()[1]) if kappa > 0 or d.temperature else None
        B.noise_mode = _noise_mode(noise, B, d, t * s)
        B.noise_sources(B.noise_nodes, kappa / s)
        B.record.johnson_kappa = B.johnson_kappa(B.noise_nodes)
        return B, xs, as_built

    B, xs, as_built = assemble(design, kappa0, title or f"thermospice {topology} SPU, n={form.n}")
    if B.record.open_count() or B.record.columns_dropped:
        check_open(B.record, open_error(_nominal(design, assemble, B, as_built), exact_solution(form)), design)
    nl = B.nl
    finish_transient(nl, design, xs, xs, t, points, seed, B.record, fastest_rate=form.eig_extremes()[1] / s)
    return Circuit(topology, nl, xs, design, B.record, as_built, form.n, scale=s, realised=circuit_form,
                   seed=check_seed(seed), builder=B)


def _nominal(design: Design, assemble, B: Builder, as_built):
    """The as-built system with no tolerance and no quantisation: only the open cells remain."""
    d = design
    if d.tol_r == 0 and d.tol_c == 0 and d.bits_r is None and d.bits_dac is None:
        return as_built
    nominal = d.with_(tol_r=0.0, tol_c=0.0, bits_r=None, bits_dac=None, temperature=None)
    return assemble(nominal, 0.0, "nominal")[2]


def _noise_mode(noise: str, B: Builder, d: Design, t_circuit: float) -> str:
    """The requested noise mode, or "held" where a table would exceed noise_table.MAX_VALUES."""
    if noise == "table" and B.noise_hold_tau is not None:
        # Sources: at most one per node with noise (cells plus summing nodes for Johnson noise).
        upper = len(B.noise_nodes) + (len(B.node_conductance) if d.temperature else 0)
        if table_values(upper, t_circuit * d.tau, B.noise_hold_tau * d.tau) > MAX_VALUES:
            return "held"
    return noise
