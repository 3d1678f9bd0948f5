"""The coupled-oscillator SPU: RLC resonator cells (underdamped Langevin dynamics, spu/core/underdamped/).

Two realisations, chosen by OscillatorParams.coupling; both in units of the RC cell
(R0, C, tau = R0 C, V = v_unit * state, s = time / tau):

resistive coupling (default) -- the matrix is the STIFFNESS.  Realisable, positive components only.
    Cell i is a series RLC loop closed through two op-amps:

        u_i --[R_d = gamma R0]-- r_i --[L = m R0^2 C]-->-- s_i (virtual ground) --[C]-- x_i
                                        inductor current I_i      integrator op-amp: s_i -> x_i

    * the integrator: C dV(x_i)/dt = -I_i, so the capacitor voltage V(x_i) = v_unit q_i is the
      POSITION and the inductor current I_i = -(C v_unit / tau) dq_i/ds the MOMENTUM (up to sign);
    * the inductor: L dI_i/dt = V(u_i) - R_d I_i (its far end is the virtual ground s_i);
    * the summer (inverting op-amp, feedback R0): V(u_i) = -R0 * (current into su_i) is the force
      node. A resistor array feeds su_i with -A_ij V(x_j)/R0: R0/|A_ij| from the inverted copy
      -V(x_j) when A_ij > 0 (every diagonal entry), from V(x_j) itself when A_ij < 0; a DAC
      injects +b_i v_unit/R0. Hence V(u_i) = v_unit (A q - b)_i and

          m q'' = -(A q - b) - gamma q' + sqrt(2 kappa gamma) xi,   m = L C / tau^2, gamma = R_d C / tau.

    b enters as a DC current into the force summer (a constant force). Factored and GGN problems
    use the two-array layout of the `factored` RC topology (U^T into m inverting summers, U back
    into the force summers; lam from the inverted copies): A = lam I + U U^T is never formed.
    Three op-amps per cell (integrator, force summer, inverter) plus 2 per factor column.
    Noise: a seeded current source into each force summer su_i, of intensity
    sqrt(gamma) * (RC cell's kappa0 intensity) = v_unit sqrt(2 kappa0 gamma C / R0) -- the force
    noise that the damping requires (fluctuation-dissipation). With design.temperature, the Johnson
    noise of R_d (a current source across R_d, equivalent to one from ground into r_i because u_i
    is an op-amp output) gives exactly kappa = k T / (C v_unit^2), equipartition on C.

    Stationary law: q ~ N(A^-1 b, kappa0 A^-1), dq/ds ~ N(0, kappa0/m I). Steady state (noise off):
    V(x) = v_unit A^-1 b, the same as the RC cells; the damping resistor then carries no current.

capacitive coupling -- the matrix is the MASS: Melanson et al. (Nat. Commun. 2025), 8 such cells.
    Cell i is a parallel RLC node x_i: inductor L = R0^2 C / k and resistor R = R0 / gamma to ground,
    capacitor C (A_ii - sum_j |A_ij|) to ground, and a capacitor C |A_ij| between x_i and x_j for
    every A_ij < 0. The node capacitance (Maxwell) matrix is C A, the flux phi_i = int V(x_i) dt is
    the position and the node voltage the velocity:

          A y'' = -k y - gamma y' + sqrt(2 kappa gamma) xi,     V(x) = v_unit y' (s units).

    Stationary law of the node voltages: N(0, kappa0 A^-1) -- the inverse capacitance matrix; the
    fluxes are N(0, kappa0/k I). Passive capacitors only make a Stieltjes matrix: A_ij <= 0 off the
    diagonal and A_ii >= sum_j |A_ij| (else it needs negative capacitance: a clear error). b cannot
    enter: a DC current through node i flows through its inductor and only shifts the flux, so the
    voltages keep mean 0 -- this realisation samples and inverts but does not solve (b must be 0).

`build_oscillator(problem, design, ...)` returns an OscillatorCircuit (a circuits.circuit.Circuit)
whose `as_built` is the system the components realise and `system()` the DenseLangevin of it
(as-built masses, dampings, couplings and noise), which the tests compare with ngspice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from spu.core.errors import DesignError, ProblemError
from spu.core.problems import DenseProblem
from spu.core.underdamped import DenseLangevin, ExactLangevin, OscillatorParams, damping_ratios

from .builder import Builder
from .circuit import AsBuilt, Circuit, check_x0, effective, finish_transient
from .design import Design
from .scaling import Scale, check_open, check_quantised, choose_scale, exact_solution, open_error, scaled


@dataclass(frozen=True)
class InductorRange:
    """Usable inductors: l_min .. l_max henry, relative tolerance tol_l (drawn like tol_c).
    Default 1 nH .. 1 H (the unit cell, m = 1 with R0 = 1 kOhm and C = 1 nF, needs 1 mH)."""

    l_min: float = 1e-9
    l_max: float = 1.0
    tol_l: float = 0.0

    def check(self) -> InductorRange:
        for name in ("l_min", "l_max"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise DesignError(f"inductor range {name} must be a finite number > 0, got {v!r}")
        if self.l_min >= self.l_max:
            raise DesignError(f"l_min ({self.l_min}) must be below l_max ({self.l_max})")
        if not (isinstance(self.tol_l, (int, float)) and 0 <= self.tol_l < 0.5):
            raise DesignError(f"tol_l must be a relative tolerance in [0, 0.5), got {self.tol_l!r}")
        return self


@dataclass
class OscillatorCircuit(Circuit):
    """A Circuit plus what the second-order model needs. Velocity read-out (resistive coupling):
    dq_i/ds = -(V(u_i) - V(r_i)) / (v_unit * gamma_i) with the as-built gamma_i."""

    params: OscillatorParams = None
    gamma: float = 0.0
    inductors: np.ndarray = None  # as-built henry
    dampers: np.ndarray = None  # as-built damping resistors, ohm
    mass_eff: np.ndarray = None  # as-built m_i (resistive) or k_i (capacitive stiffness)
    gamma_eff: np.ndarray = None  # as-built gamma_i
    noise_rate: np.ndarray = None  # as-built force-noise covariance rate per cell (s units)
    force_nodes: list[str] = field(default_factory=list)
    junction_nodes: list[str] = field(default_factory=list)
    ideal_problem: object = None  # the (dense or factored) problem the circuit encodes
    noise_hold_tau: float = 0.0

    @property
    def coupling(self) -> str:
        return self.params.coupling

    def system(self) -> DenseLangevin:
        """The as-built second-order system (dense, 2n x 2n): for checks on small circuits."""
        ab, n = self.as_built, self.n
        if self.coupling == "resistive":
            return DenseLangevin(
                np.diag(self.mass_eff), ab.matrix(), np.diag(self.gamma_eff), ab.b, noise_cov=np.diag(self.noise_rate)
            )
        return DenseLangevin(
            ab.matrix(),
            np.diag(self.mass_eff),
            np.diag(self.gamma_eff),
            np.zeros(n),
            noise_cov=np.diag(self.noise_rate),
        )

    def velocities(self, raw) -> np.ndarray:
        """Velocities dq/ds (T, n) from a raw file of a resistive-coupling run."""
        if self.coupling != "resistive":
            raise DesignError("velocities are the node voltages themselves in the capacitive realisation")
        d = self.design
        du = np.stack([raw[f"v({u})"] - raw[f"v({r})"] for u, r in zip(self.force_nodes, self.junction_nodes)], axis=1)
        # dq/d(circuit tau) times the scale: per tau of the problem.
        return -du * self.scale / (d.v_unit * self.gamma_eff[None, :])

    # -- component report -----------------------------------------------------------------------
    def report_hook(self, rep: dict, problem, t: float, x0) -> None:
        """Second-order timing, damping and peak values for circuits/report.component_report."""
        d = self.design
        spec_problem = self.ideal_problem
        p = self.params
        ex = ExactLangevin(spec_problem, p, 0.0)
        m, w, g = ex.m, ex.w, ex.g
        # Rates here are per circuit tau; times s per problem tau (the report's unit).
        sc = self.scale
        r = ex.decay_rate()
        omega = np.sqrt(w / m)
        settle = ex.settle_time() / sc
        tm = rep["timing"]
        tm.update(
            {
                "dynamics": "second order (underdamped Langevin)",
                "coupling": p.coupling,
                "mass": p.mass if p.coupling == "resistive" else None,
                "stiffness": p.stiffness if p.coupling == "capacitive" else None,
                "gamma": self.gamma,
                "zeta_min": float(damping_ratios(m, w, g).min()),
                "zeta_max": float(damping_ratios(m, w, g).max()),
                "omega_min_per_tau": float(omega.min() * sc),
                "omega_max_per_tau": float(omega.max() * sc),
                "f_max_hz": float(omega.max() / (2 * math.pi * d.tau)),
                "slowest_decay_rate_per_tau": r * sc,
                "slowest_mode_tau": 1.0 / (r * sc),
                "settling_time_tau": settle,
                "settling_time_circuit_tau": settle * sc,
                "settling_time_s": settle * sc * d.tau,
                "residual_at_t": float(ex.position_response(sc * t)[0]),
                "fastest_mode_tau": float(1.0 / (sc * max(omega.max(), (g / m).max()))),
                # A held force is white for the positions up to O((omega h)^2): keep omega_max * hold <= 0.1
                # (and hold * gamma/m <= 0.1), the same margin as the RC cells' lambda_max * hold.
                "noise_hold_ok": bool(self.noise_hold_tau * max(omega.max(), (g / m).max()) <= 0.1),
            }
        )
        if p.coupling != "resistive":
            rep["voltages"]["note"] = (
                "capacitive coupling: node voltages are velocities, mean 0, spread sqrt(kappa0 A^-1)"
            )
            return
        # Transient peaks (noise off) from the exact second-order solution from x0: positions may
        # overshoot A^-1 b when underdamped; force node, junction and inductor current along the way.
        x0 = np.zeros(self.n) if x0 is None else np.asarray(x0, float)
        grid = np.linspace(0.0, sc * min(t, 4 * settle), 400)  # circuit tau
        _, _, Q, V = ex.run(grid[-1], x0, np.zeros(self.n), grid, None)
        force = np.array([spec_problem.matvec(q) - spec_problem.b for q in Q])
        i_peak = float(np.abs(V).max() * d.C * d.v_unit / d.tau)
        u_peak = float(np.abs(force).max() * d.v_unit)
        q_peak = float(np.abs(Q).max() * d.v_unit)
        vol = rep["voltages"]
        vol.update(
            {
                "transient_state_peak_v": q_peak,
                "force_node_peak_v": u_peak,
                "junction_peak_v": float(np.abs(force + self.gamma * V).max() * d.v_unit),
                "inductor_peak_a": i_peak,
            }
        )
        for node, val in (("x (transient overshoot)", q_peak), ("u (force node)", u_peak)):
            if val > vol["peak_v"]:
                vol["peak_v"], vol["peak_node"] = val, node
        vol["within_rails"] = bool(vol["peak_v"] <= d.rails)


# ------------------------------------------------------------------------------------ building


def _form(problem, coupling: str):
    if coupling == "resistive":
        return problem.factored() or problem  # a GGN problem's U = J^T S; a dense A as given
    return problem.dense()


def _check_gamma_range(d: Design, R: float, what: str):
    if not d.r_min <= R <= d.r_max:
        raise DesignError(
            f"{what} = {R:.6g} ohm lies outside the resistor range [{d.r_min:g}, {d.r_max:g}]; "
            f"choose another damping (gamma / zeta) or widen [r_min, r_max]"
        )


def _inductors(B: Builder, value: float, n: int, rng: InductorRange, what: str) -> np.ndarray:
    if not rng.l_min <= value <= rng.l_max:
        raise DesignError(
            f"{what} needs L = {value:.6g} H, outside the inductor range [{rng.l_min:g}, {rng.l_max:g}] H; "
            f"change the mass / stiffness, R0 or C, or the inductor range"
        )
    return B.with_tolerance(np.full(n, value), rng.tol_l)


def _build_resistive(B: Builder, p, x0, v0, params: OscillatorParams, gamma: float, lrange: InductorRange):
    d, R0, tau = B.d, B.d.R0, B.d.tau
    n = p.n
    sums, xs, C = B.integrator_cells(n, x0)
    # Force summers: V(u_i) = -Rf_i * (current into su_i).
    su, us, Rf = B.summers("u", n)
    if not p.low_rank:
        xn, gx = B.inverters("x", xs, (p.A > 0).any(axis=0))
        st = B.array("negA", -p.A, su, xs, xn)
        G = effective(st.S, np.ones(n), gx)  # current into su per volt of V(x)
        K = -Rf[:, None] * G
        as_built_K = dict(dense=K)
        internal = {"xn": ([x for x in xn if x], -np.diag(gx)[gx > 0])}
    else:
        m_, U = p.m, p.U
        xn, gx = B.inverters("x", xs, np.ones(n, bool))
        st_l = B.array("negLam", np.diag(np.full(n, -p.lam)), su, xs, xn)
        lam_eff = -Rf * np.diag(effective(st_l.S, np.ones(n), gx))
        # Stage 1: V(y) = -M1 V(x), yn = +gy M1 V(x) (as in the factored RC topology, autoranged:
        # both arrays programmed as U/sc, the y summers' gain sc^2 restores the product).
        sc = B.scale(U, power=2)
        U = B.drop_negligible_columns(U, sc)
        m_ = U.shape[1]
        B.nl.comment(f"arrays Ut and negU programmed as U/{sc!r}; the y summers' gain {sc * sc!r} restores it")
        ysum, ys, Rf1 = B.summers("y", m_, gain=sc * sc)
        s1 = B.array("Ut", U.T / sc, ysum, xs, xn)
        M1 = Rf1[:, None] * effective(s1.S, np.ones(n), gx)
        yn, gy = B.inverters("y", ys, np.ones(m_, bool))
        # Stage 2: current -U (U^T x)/R0 into the force summers: positive -U entries read yn.
        s2 = B.array("negU", -U / sc, su, yn, ys)
        P = -Rf[:, None] * effective(s2.S, gy, np.ones(m_))
        as_built_K = dict(diag=lam_eff, P=P, Q=M1)
        internal = {"y": (ys, -M1), "yn": (yn, gy[:, None] * M1), "xn": (xn, -np.diag(gx))}
    # The DAC injects +b v_unit / R0 (dac_inputs injects -b_in v_unit/R0: load it with -b).
    B.nl.comment("DACs below are loaded with +b: the force summer inverts, so V(u) gets -v_unit*b")
    b_ret = B.dac_inputs(-p.b, su)
    b_eff = -Rf * b_ret / R0
    # Series R-L from each force node into its integrator's virtual ground.
    Rd_nom = gamma * R0
    _check_gamma_range(d, Rd_nom, f"damping resistor gamma*R0 (gamma = {gamma:.6g})")
    Rd = B.with_tolerance(np.full(n, Rd_nom), d.tol_r)
    L = _inductors(B, params.mass * R0**2 * d.C, n, lrange, f"mass m = {params.mass:g}")
    junctions = [f"r{i}" for i in range(n)]
    for i in range(n):
        B.nl.R(f"d{i}", us[i], junctions[i], Rd[i], comment=f"cell {i}: damping gamma*R0")
        # I = -C v dq/dt: ic sets the initial velocity v0 (in s units).
        B.nl.L(
            f"{i}",
            junctions[i],
            sums[i],
            L[i],
            ic=-C[i] * d.v_unit * v0[i] / tau,
            comment=f"cell {i}: mass m*R0^2*C; current = -C v_unit dq/dt",
        )
        B.node_conductance[junctions[i]] = 1.0 / Rd[i]  # Johnson noise of R_d (u_i is an op-amp output)
    B.record.resistors.append(Rd)
    B.record.resistor_roles.append("damping")
    B.record.terminals.append((list(us), junctions))
    B.record.inductors = L
    B.noise_nodes = su
    ab = AsBuilt(b=b_eff, C=C, internal=internal, **as_built_K)
    mass = L * C / tau**2
    gam = Rd * C / tau
    return xs, ab, mass, gam, Rd, L, us, junctions, Rf


def _build_capacitive(B: Builder, p: DenseProblem, x0, params: OscillatorParams, gamma: float, lrange: InductorRange):
    d, R0, tau = B.d, B.d.R0, B.d.tau
    A, n = p.A, p.n
    if np.any(p.b != 0):
        raise ProblemError(
            "capacitive coupling cannot encode b: a DC current into a node flows through its inductor and only "
            "shifts the flux, the node voltages keep mean 0. Pass b = 0 (sampling / inverse) or use coupling='resistive'"
        )
    off = A - np.diag(np.diag(A))
    scale = float(np.abs(A).max())
    if np.any(off > 1e-12 * scale):
        i, j = np.unravel_index(int(np.argmax(off)), A.shape)
        raise DesignError(
            f"capacitive coupling realises A as the capacitance matrix, whose off-diagonal entries are -C_ij <= 0; "
            f"A[{i},{j}] = {A[i, j]:.6g} > 0 would need a negative capacitance. Use coupling='resistive' for "
            f"mixed-sign matrices"
        )
    ground = np.diag(A) - np.abs(off).sum(axis=1)
    if np.any(ground < -1e-12 * scale):
        i = int(np.argmin(ground))
        raise DesignError(
            f"capacitive coupling needs a capacitance C*(A_ii - sum_j |A_ij|) >= 0 to ground at every node; row {i} "
            f"gives {ground[i]:.6g} (A is not diagonally dominant), i.e. a negative capacitor. Use coupling='resistive'"
        )
    xs = [f"x{i}" for i in range(n)]
    Cg_nom = d.C * np.maximum(ground, 0.0)
    Cg = B.with_tolerance(Cg_nom, d.tol_c)
    Cmat = np.zeros((n, n))
    keep_g = Cg_nom > 1e-12 * d.C * scale
    for i in range(n):
        if keep_g[i]:
            B.nl.C(f"g{i}", xs[i], "0", Cg[i], ic=d.v_unit * x0[i], comment=f"cell {i}: C*(A_ii - sum|A_ij|) to ground")
            Cmat[i, i] += Cg[i]
    iu, ju = np.nonzero(np.triu(off < 0, 1))
    Cc = B.with_tolerance(-d.C * off[iu, ju], d.tol_c)
    for k, (i, j) in enumerate(zip(iu, ju)):
        B.nl.C(f"c{i}_{j}", xs[i], xs[j], Cc[k], ic=d.v_unit * (x0[i] - x0[j]), comment=f"coupling C*|A[{i},{j}]|")
        Cmat[i, i] += Cc[k]
        Cmat[j, j] += Cc[k]
        Cmat[i, j] -= Cc[k]
        Cmat[j, i] -= Cc[k]
    B.record.capacitors.extend(list(Cg[keep_g]) + list(Cc))
    Rnom = R0 / gamma
    _check_gamma_range(d, Rnom, f"damping resistor R0/gamma (gamma = {gamma:.6g})")
    R = B.with_tolerance(np.full(n, Rnom), d.tol_r)
    L = _inductors(B, R0**2 * d.C / params.stiffness, n, lrange, f"stiffness k = {params.stiffness:g}")
    for i in range(n):
        B.nl.R(f"d{i}", xs[i], "0", R[i], comment=f"cell {i}: damping R0/gamma")
        B.nl.L(f"{i}", xs[i], "0", L[i], ic=0.0, comment=f"cell {i}: grounded inductor R0^2 C / k")
        B.node_conductance[xs[i]] = 1.0 / R[i]
    B.record.resistors.append(R)
    B.record.resistor_roles.append("damping")
    B.record.terminals.append((list(xs), ["0"] * n))
    B.record.inductors = L
    B.noise_nodes = xs
    ab = AsBuilt(b=np.zeros(n), C=np.diag(Cmat).copy(), dense=Cmat / d.C, internal={})
    stiff = tau**2 / (L * d.C)
    gam = tau / (R * d.C)
    return xs, ab, stiff, gam, R, L


def oscillator_scale(form, params: OscillatorParams, design: Design) -> Scale:
    """The circuit scale s (circuits/scaling.py): the directly programmed coefficients are the
    entries of A (dense form) or lam (factored form, whose U arrays autorange); the capacitive
    cells' capacitors have no range to fit, so they stay at s = 1."""
    if params.coupling == "capacitive":
        return Scale()
    direct = ("A", form.A) if not form.low_rank else ("lam", np.array([form.lam], dtype=float))
    return choose_scale(form, direct, design)


def settle_time(problem, tol: float, design: Design, oscillator=None) -> float:
    """Settling time (problem tau) of the oscillator circuit that would be built: the second-order
    one, whose damping is resolved on the scaled circuit, so the scale enters."""
    params = OscillatorParams.make(oscillator)
    form = _form(problem, params.coupling)
    s = oscillator_scale(form, params, design).s
    return ExactLangevin(scaled(form, s), params, 0.0).settle_time(tol) / s


@dataclass
class _Cells:
    """What assembling the cells gives build_oscillator (as-built values, nodes, noise rates)."""

    xs: list
    ab: AsBuilt
    gam: np.ndarray
    Rd: np.ndarray
    L: np.ndarray
    us: list
    junctions: list
    noise_rate: np.ndarray
    mass_eff: np.ndarray


def _assemble(
    d: Design,
    kappa: float,
    label: str,
    p,
    x0,
    v0,
    s: float,
    params: OscillatorParams,
    gamma: float,
    hi: float,
    lrange: InductorRange,
) -> tuple[Builder, _Cells]:
    """Place the cells of the scaled problem p (circuit units: v0 per circuit tau) with noise kappa."""
    B = Builder(d, label)
    B.record.scale = s
    B.record.inductors = np.zeros(0)
    if s != 1.0:
        B.nl.comment(f"scaled: the circuit realises (A/{s!r}) q = b/{s!r}; one problem tau is {s!r} circuit tau")
    B.nl.comment(f"oscillator, {params.coupling} coupling: m q'' = -(A q - b) - gamma q' + noise, gamma = {gamma!r}")
    # Noise must be white against the fastest rate: the stiffest mode or the damping (the
    # hold is the problem's, s times longer in circuit tau).
    B.noise_hold_tau = s * d.hold_for(s * max(hi, gamma))
    if params.coupling == "resistive":
        xs, ab, mass, gam, Rd, L, us, junctions, Rf = _build_resistive(B, p, x0, v0, params, gamma, lrange)
        # Force noise into the summers: kappa_to_current_sigma(kappa * gamma) = v sqrt(2 kappa gamma C/R0),
        # with kappa0/s so that the stationary covariance stays kappa0 A^-1.
        B.noise_sources(B.noise_nodes, kappa * gamma / s)
        noise_rate = _force_noise_rate(B, kappa * gamma / s, su_nodes(p.n), Rf, junctions, Rd)
        johnson = _force_noise_rate(B, 0.0, su_nodes(p.n), Rf, junctions, Rd) / (2 * gam)
        mass_eff = mass
    else:
        xs, ab, stiff, gam, Rd, L = _build_capacitive(B, p, x0, params, gamma, lrange)
        B.noise_sources(B.noise_nodes, kappa * gamma)
        us, junctions = [], []
        # Node noise current sigma -> force rate tau sigma^2 / (v C)^2 (s units).
        to_rate = d.tau / (d.v_unit * d.C) ** 2
        noise_rate = to_rate * np.array([_node_var(B, kappa * gamma, x) for x in xs])
        johnson = to_rate * np.array([_node_var(B, 0.0, x) for x in xs]) / (2 * gam)
        mass_eff = stiff
    B.record.johnson_kappa = johnson
    return B, _Cells(xs, ab, gam, Rd, L, us, junctions, noise_rate, mass_eff)


def _check_as_built(B: Builder, ab: AsBuilt, form, design: Design, lrange, assemble, scale: Scale) -> None:
    """The open cells' error (on the nominal circuit: no tolerance, no quantisation) within the
    bound, and a quantised system that still has a steady state."""
    if B.record.open_count() or B.record.columns_dropped:
        d = design
        nominal = ab
        if d.tol_r or d.tol_c or d.bits_r is not None or d.bits_dac is not None or lrange.tol_l:
            nd = d.with_(tol_r=0.0, tol_c=0.0, bits_r=None, bits_dac=None, temperature=None)
            nominal = assemble(nd, 0.0, "nominal")[1].ab
        check_open(B.record, open_error(nominal, exact_solution(form)), design, scale.advice)
    check_quantised(B.record, ab, design)


def build_oscillator(
    problem,
    design: Design | None = None,
    *,
    x0=None,
    v0=None,
    kappa0: float = 0.0,
    t: float = 50.0,
    title: str | None = None,
    seed: int | None = None,
    points: int = 200,
    oscillator=None,
    inductors: InductorRange | None = None,
    save_velocity: bool = True,
    **unknown,
) -> OscillatorCircuit:
    """Build the oscillator SPU for `problem` and set up a transient of t (tau) from (x0, v0).

    oscillator: OscillatorParams or dict (mass, gamma | zeta, coupling, stiffness). x0: initial
    positions (resistive) or node voltages (capacitive, in state units). v0: initial velocities
    (resistive only). kappa0, seed, points: as circuits.topologies.build."""
    if unknown:
        raise DesignError(f"unknown oscillator build option(s): {', '.join(sorted(unknown))}")
    design = (design or Design()).check()
    if design.opamp.flicker_corner is not None:
        # Its cells are not the RC integrators whose op-amps carry the tables (circuits/flicker_sources.py).
        raise DesignError("op-amp 1/f noise (flicker_corner) is realised for the RC topologies, not the oscillator")
    params = OscillatorParams.make(oscillator)
    lrange = (inductors or InductorRange()).check()
    if not (isinstance(kappa0, (int, float)) and np.isfinite(kappa0) and kappa0 >= 0):
        raise DesignError(f"kappa0 must be a finite number >= 0, got {kappa0!r}")
    if not (isinstance(t, (int, float)) and np.isfinite(t) and t > 0):
        raise DesignError(f"analog time t must be a finite number > 0 (in tau), got {t!r}")
    form = _form(problem, params.coupling)
    x0 = check_x0(x0, form.n)
    v0 = check_x0(v0, form.n)
    if params.coupling == "capacitive" and np.any(v0 != 0):
        raise DesignError("v0 applies to the resistive coupling; capacitive cells start from the node voltages x0")
    scale = oscillator_scale(form, params, design)
    s = scale.s
    circuit_form = scaled(form, s)
    # Everything below is in circuit units: eigenvalues of A/s, gamma of the circuit's cells (the
    # damping ratio zeta is the same in both), velocities dq/d(circuit tau) = v0/s.
    lo, hi = circuit_form.eig_extremes()
    gamma = params.resolve_gamma(lo, hi)

    def assemble(d: Design, kappa: float, label: str):
        return _assemble(d, kappa, label, circuit_form, x0, v0 / s, s, params, gamma, hi, lrange)

    B, c = assemble(design, kappa0, title or f"thermospice oscillator SPU ({params.coupling} coupling), n={form.n}")
    _check_as_built(B, c.ab, form, design, lrange, assemble, scale)
    nl = B.nl
    B.record.step = scale.step
    saves = list(c.xs) + (list(c.us) + list(c.junctions) if save_velocity else [])
    fastest = max(math.sqrt(hi / params.mass) if params.coupling == "resistive" else hi, gamma)
    finish_transient(nl, design, saves, c.xs, t, points, seed, B.record, fastest_rate=fastest)
    ideal = circuit_form if params.coupling == "resistive" else DenseProblem(circuit_form.A, np.zeros(form.n))
    return OscillatorCircuit(
        topology="oscillator",
        netlist=nl,
        state_nodes=c.xs,
        design=design,
        record=B.record,
        as_built=c.ab,
        n=form.n,
        scale=s,
        realised=circuit_form,
        params=params,
        gamma=gamma,
        inductors=c.L,
        dampers=c.Rd,
        mass_eff=c.mass_eff,
        gamma_eff=c.gam,
        noise_rate=c.noise_rate,
        force_nodes=list(c.us),
        junction_nodes=list(c.junctions),
        ideal_problem=ideal,
        noise_hold_tau=B.noise_hold_tau,
    )


def su_nodes(n: int) -> list[str]:
    return [f"su{k}" for k in range(n)]


def _node_var(B: Builder, kappa_eff: float, node: str) -> float:
    """Noise current variance rate (A^2 s) that Builder.noise_sources put into `node`."""
    d = B.d
    v = d.kappa_to_current_sigma(kappa_eff) ** 2 if kappa_eff > 0 else 0.0
    if d.temperature:
        g = B.node_conductance.get(node, 0.0)
        if g > 0:
            v += d.johnson_sigma(g) ** 2
    return v


def _force_noise_rate(B: Builder, kappa_eff, su, Rf, junctions, Rd) -> np.ndarray:
    """Force-noise covariance rate of each cell in s units: a current i into su_i moves V(u_i) by
    -Rf_i i, a current into the junction r_i acts as R_d i in series; force = voltage / v_unit and
    white noise of rate sigma^2 in seconds has rate sigma^2 / tau per unit s."""
    d = B.d
    var_su = np.array([_node_var(B, kappa_eff, s) for s in su])
    var_r = np.array([_node_var(B, 0.0, r) for r in junctions])
    return (Rf**2 * var_su + Rd**2 * var_r) / (d.v_unit**2 * d.tau)
