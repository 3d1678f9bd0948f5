"""The realised circuit as a matrix-free linear system: what the placed components do, without a
netlist text or ngspice.

`realise(problem, topology, design, kappa0)` runs the same topology builder as `build()` (same
quantisation, same seeded tolerance draws, same autoranging), but with a Builder that keeps the
element values instead of emitting lines: the values are read from what the builder places, so a
change of the coefficient -> component mapping flows in. It returns a `RealisedSystem`:

    w_i dx_i/ds = -(D x + P (Q x) - b)_i + noise_i,    s = time / tau, V(x_i) = v_unit * x_i

* finite op-amp DC gain g (an E source, as the netlist carries it; ideal op-amps: g = inf): a
  summing node sits at -V(out)/g instead of 0 V. An inverting stage with feedback Rf and total
  summing-node conductance G then has gain -Rf * g/(g + Rf*G) on its input current; a cell's
  capacitor sees (1 + 1/g) dV(x) and its node conductance G_s adds G_s/g to the diagonal:
  w_i = (C_i/C)(1 + 1/g), D_i = lam_i + R0 G_s,i / g. The netlist's initial condition is the
  capacitor voltage -v_unit x0 = V(s) - V(x), so the state starts at x0 * g/(g + 1).
* P (N x m), Q (m x N) chain the arrays with every as-built conductance, inverter gain and
  feedback resistor: independent tolerances of U and U^T make P Q non-symmetric.
* op-amp input offset and bias current (circuits/amp_input.py): exact additive terms of b, which
  carries the sum of BuildRecord.input_errors; `RealisedSystem.amp_input` is the linear map from
  each op-amp's input-referred voltage to b (problem units), for sources that vary in time. With
  an offset the netlist's capacitor holds v_os - v_unit x0 (the summing node sits at v_os), so the
  state starts at x0 * g/(g + 1) as without.
* noise: every noise current source of the circuit (kappa0 on the cells, the lumped Johnson current
  2kT*G of each summing node), with the intensity the netlist gives it. A source at a cell's own
  node enters only that cell (`q_cell`); sources inside the chain (summers, inverters) reach the
  cells through the arrays, i.e. through `Wn` (N x r) with covariance `Sn` (r x r): per unit s,
  Cov(noise ds) = diag(q_cell) + Wn Sn Wn^T.

No op-amp bandwidth model (gbw): its pole would add state variables per amplifier; `realise` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spu.core.errors import DesignError
from spu.core.limited_drift import InvertedCopies, OutputLimits

from .amp_input import AmpInput
from .builder import Builder
from .circuit import effective
from .design import Design
from .netlist import Netlist
from .stage_shift import stage_shifts
from .topologies import build, choices, find


class ValueNetlist(Netlist):
    """A netlist that keeps no lines: element values live in the builder's record, the noise
    intensities in Builder.noise_intensity."""

    def _add(self, kind, name, nodes, value, comment=None):
        return None

    def R(self, name, a, b, ohms, comment=None):
        return None

    def C(self, name, a, b, farads, ic=None, comment=None):
        return None

    def V(self, name, p, n, dc, comment=None):
        return None

    def X(self, name, nodes, subckt: str, comment=None):
        return None

    def comment(self, text: str) -> None:
        return None

    def I(self, name, p, n, dc, noise=None, comment=None):
        return None

    def save(self, nodes) -> None:
        return None

    def print_tran(self, nodes) -> None:
        return None


class ValueBuilder(Builder):
    """The topology builders' Builder, keeping element values and the stages instead of text."""

    emits_text = False

    def __init__(self, design: Design, title: str):
        super().__init__(design, title)
        self.nl = ValueNetlist(title)
        self.summer_rf: dict[str, tuple[list[str], np.ndarray]] = {}
        self.inverter_gain: dict[str, np.ndarray] = {}

    def place(self, rec, targets, pos, neg) -> tuple[list, list]:
        # Vectorised: the netlist builder's one-line-per-resistor loop would take minutes at
        # N = 1e5, m = 64. Same check: a negative entry needs an inverted copy of its column.
        missing = np.array([s is None for s in neg], dtype=bool)
        P = rec.programmed
        if P.ndim == 1:
            P = P[None, :]  # a diagonal array: cell i reads column i
        if ((P < 0).any(axis=0) & missing).any():
            i, j = np.unravel_index(int(np.argmax((P < 0) & missing[None, :])), P.shape)
            i = j if rec.programmed.ndim == 1 else i
            raise DesignError(f"{rec.label}[{i},{j}] is negative but no inverted copy of column {j} exists")
        self.record.terminals.append(([], []))  # no power estimate from here
        return [], []

    def noise_sources(self, kappa_nodes, kappa0, johnson=True) -> None:
        # White noise of the intensities in noise_intensity: no table file is written here.
        self.noise_mode = "held"
        super().noise_sources(kappa_nodes, kappa0, johnson)

    def summers(self, label, n, gain=1.0):
        sums, outs, Rf = super().summers(label, n, gain)
        self.summer_rf[label] = (sums, Rf)
        return sums, outs, Rf

    def inverters(self, label, nodes, needed):
        neg, gain = super().inverters(label, nodes, needed)
        self.inverter_gain[label] = gain
        return neg, gain


@dataclass
class RealisedSystem:
    """w * dx/ds = -(D x + P Q x - b) + noise (see the module docstring); all float64."""

    w: np.ndarray
    D: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    b: np.ndarray
    q_cell: np.ndarray  # per unit s, direct noise of each cell's own node
    Wn: np.ndarray | None  # N x r: how noise inside the chain reaches the cells (None: none)
    Sn: np.ndarray | None  # r x r: its covariance per unit s
    x0_gain: float  # the state a capacitor ic of -v_unit x0 gives: x(0) = x0_gain * x0
    topology: str
    bits_adc: int | None
    v_fullscale: float
    v_unit: float
    # The input-referred voltage of each op-amp -> b (None with clean op-amps): circuits/amp_input.py.
    amp: AmpInput | None = None
    limits: OutputLimits | None = None  # op-amp swing / slew set: what the limited stepper needs
    # Input of each cell per volt at its own op-amp's input (an input-referred voltage e, e.g. 1/f
    # noise, moves the summing node: R0 G_s e / v_unit, G_s the node's total conductance), and the
    # seconds of one problem tau (the circuit's s * tau), which time-varying inputs are given in.
    amp_cells: np.ndarray | None = None
    tau_s: float = 1.0

    @property
    def n(self) -> int:
        return self.D.shape[0]

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """A_eff x = D x + P (Q x): O(N m)."""
        return self.D * x + self.P @ (self.Q @ x)

    def amp_input(self, volts: dict[str, np.ndarray]) -> np.ndarray:
        """The shift of b (problem units) that input-referred voltages volts[group] (V, one per
        op-amp of the group, BuildRecord.opamp_offsets' groups and order) at the op-amps cause:
        a linear map, O(N m) per call, exact for the linear circuit (circuits/amp_input.py)."""
        if self.amp is None:
            raise DesignError("the op-amps are clean (no offset, bias, swing, slew or 1/f noise): no input map")
        return self.amp(volts)


def _stage_factor(g: float, rf_times_g_node: np.ndarray) -> np.ndarray:
    """Gain factor g/(g + Rf*G_node) of an inverting stage with a finite-gain op-amp (1 if ideal)."""
    if np.isinf(g):
        return np.ones_like(rf_times_g_node)
    return g / (g + rf_times_g_node)


def realise(problem, topology: str, design: Design | None = None, *, kappa0: float = 0.0) -> RealisedSystem:
    """The realised dynamics of `problem` built in `topology` (one with Topology.chain: factored
    or crossbar) with `design`."""
    design = (design or Design()).check()
    topo = find(topology)
    if topo is None or not topo.realisable:
        raise DesignError(
            f"the as-built dynamics cover topologies {', '.join(choices('asbuilt'))}, "
            f"not {topology!r} (use backend ngspice for it)"
        )
    if design.opamp.gbw is not None:
        raise DesignError(
            "the as-built dynamics model a finite DC gain but no op-amp bandwidth "
            "(gbw adds a pole per amplifier): unset gbw or use backend ngspice"
        )
    circuit = build(problem, topology, design, kappa0=kappa0, builder=ValueBuilder)
    rs = _to_problem_time(_compose(circuit.builder, circuit.as_built, topo, circuit.n), circuit.scale)
    if design.opamp.swing is not None or design.opamp.slew is not None:
        rs.limits = _output_limits(circuit.builder, circuit.as_built, topo, rs, circuit.scale)
        if design.opamp.flicker_corner is not None:  # its chain part moves the stages before their clamps
            g = design.opamp.dc_gain
            rs.limits.flicker_shifts, rs.limits.flicker_tail = stage_shifts(
                circuit.builder, topo.chain, g, circuit.scale
            )
    rs.tau_s = circuit.scale * design.tau
    return rs


def _output_limits(B: ValueBuilder, ab, topology, rs: RealisedSystem, s: float) -> OutputLimits:
    """The chain stage by stage (spu/core/limited_drift.py): V(first summers) = -M_0 x, then
    V(next) = M_k V(previous), with every as-built gain and finite-gain factor of _compose, the
    inverted copies each array reads and the offsets' shifts; the cells' own conductances; all in
    problem time (rates times the scale s)."""
    d, amp = B.d, B.d.opamp
    g = amp.dc_gain
    arrays, summers = topology.chain
    maps, inverted = [], []
    for k, label in enumerate(arrays):
        S = B.stages[label].S
        gain = _inverter_with_rf(B, "x" if k == 0 else summers[k - 1], g, {}, d.v_unit)[0]
        if k + 1 < len(arrays):
            sums, Rf = B.summer_rf[summers[k]]
            scale = Rf * _stage_factor(g, Rf * np.array([B.node_conductance[x] for x in sums]))
            if len(arrays) == 2:  # one summer stage: M_0 is Q itself
                maps.append(rs.Q)
            else:
                E = effective(S, np.ones(rs.n), gain) if k == 0 else effective(S, gain, np.ones(S.shape[1]))
                maps.append(scale[:, None] * E)
        else:
            scale = s * d.R0
        shift = 0.0 if B.amp_map.inverted_shifts is None else B.amp_map.inverted_shifts[k] / d.v_unit
        inverted.append(InvertedCopies(S, -1 if k == 0 else 1, -scale, gain, shift))
    G_s = np.array([B.node_conductance[f"s{i}"] for i in range(rs.n)])
    return OutputLimits(
        w0=ab.C / d.C,
        diag=s * ab.diag,
        Gs=s * d.R0 * G_s,
        maps=maps,
        gain=1.0 if amp.ideal else g / (g + 1.0),
        limit=float("inf") if amp.swing is None else amp.swing / d.v_unit,
        rate=float("inf") if amp.slew is None else amp.slew * d.tau * s / d.v_unit,
        shifts=None if B.amp_map.shifts is None else [c / d.v_unit for c in B.amp_map.shifts],
        inverted=inverted if amp.swing is not None else None,
    )


def _to_problem_time(rs: RealisedSystem, s: float) -> RealisedSystem:
    """The circuit realises (A/s) x = b/s and one problem tau is s circuit tau (circuits/scaling.py):
    per problem tau every rate, the input and every noise intensity are s times the circuit's."""
    if s == 1.0:
        return rs
    rs.D, rs.P, rs.b, rs.q_cell, rs.amp_cells = s * rs.D, s * rs.P, s * rs.b, s * rs.q_cell, s * rs.amp_cells
    if rs.Sn is not None:
        m = rs.P.shape[1]
        rs.Wn[:, :m] = rs.P  # the P-block now reads the scaled P: its covariance / s
        rs.Sn[:m, :m] /= s
        rs.Sn[m:, m:] *= s
    return rs


def _compose(B: ValueBuilder, ab, topology, n: int) -> RealisedSystem:
    """The chain the topology's Topology.chain names: its arrays in signal order, with its
    inverting summers between them."""
    d = B.d
    R0, vu = d.R0, d.v_unit
    g = d.opamp.dc_gain
    noise = B.noise_intensity  # node -> intensity A^2 s (real time)

    # Voltage noise (in units of v_unit) of a stage output = -Rf * f * i / v_unit; its intensity:
    def out_var(nodes, rf_f):
        v = np.array([noise.get(s, 0.0) for s in nodes])
        return (rf_f / vu) ** 2 * v

    arrays, summers = topology.chain
    ideal = np.isinf(g)
    chain_noise = bool(d.temperature)  # inside the chain only Johnson currents are injected
    # With ideal op-amps the circuit's own AsBuilt P, Q are the chain (no N x m array twice);
    # otherwise every stage gets its finite-gain factor. Noise needs the stages either way.
    P, L, Wn, Sn = (ab.P, ab.Q, None, None) if ideal else (None, None, None, None)
    if not ideal or chain_noise:
        gx, var_x = _inverter_with_rf(B, "x", g, noise, vu)
        # First array reads x (positive entries) or its inverted copy (negative entries).
        S = B.stages[arrays[0]].S
        sums, Rf = B.summer_rf[summers[0]]
        rff = Rf * _stage_factor(g, Rf * np.array([B.node_conductance[s] for s in sums]))
        if not ideal:
            L = rff[:, None] * effective(S, np.ones(n), gx)  # V(y) = -L x + nu
        Sig = np.diag(out_var(sums, rff))
        if var_x.any():  # O(N m^2): only with Johnson noise on
            Sneg = np.where(S < 0, -S, 0.0)
            Sig += rff[:, None] * ((Sneg * var_x[None, :]) @ Sneg.T) * rff[None, :]
        prev = summers[0]
        # Later arrays read the previous summer's output v (negative entries) or its inverted
        # copy (positive entries): current = -effective(S, g_inv, 1) v + S+ e_inv.
        for k, label in enumerate(arrays[1:]):
            S = B.stages[label].S
            ginv, var_inv = _inverter_with_rf(B, prev, g, noise, vu)
            Spos = np.where(S > 0, S, 0.0) if chain_noise else None
            if k + 2 < len(arrays):  # into another summer (m x m: cheap)
                E = effective(S, ginv, np.ones(S.shape[1]))
                sums, Rf = B.summer_rf[summers[k + 1]]
                rff = Rf * _stage_factor(g, Rf * np.array([B.node_conductance[s] for s in sums]))
                if not ideal:
                    L = rff[:, None] * (E @ L)
                inner = E @ Sig @ E.T + ((Spos * var_inv[None, :]) @ Spos.T if chain_noise else 0.0)
                Sig = rff[:, None] * inner * rff[None, :] + np.diag(out_var(sums, rff))
                prev = summers[k + 1]
            else:  # into the cells
                if not ideal:
                    P = R0 * effective(S, ginv, np.ones(S.shape[1]))
                if chain_noise:
                    Wn = np.hstack([P, R0 * Spos])
                    m = S.shape[1]
                    Sn = np.zeros((2 * m, 2 * m))
                    Sn[:m, :m] = Sig
                    Sn[m:, m:] = np.diag(var_inv)
                    Sn /= d.tau
    cells = [f"s{i}" for i in range(n)]
    G_s = np.array([B.node_conductance[s] for s in cells])
    w = ab.C / d.C * (1.0 if ideal else 1.0 + 1.0 / g)
    D = ab.diag + (0.0 if ideal else R0 * G_s / g)
    q_cell = (R0 / vu) ** 2 * np.array([noise.get(s, 0.0) for s in cells]) / d.tau
    return RealisedSystem(
        w=w,
        D=D,
        P=P,
        Q=L,
        b=ab.b,  # with the offsets, bias and converter errors (BuildRecord.input_errors)
        q_cell=q_cell,
        Wn=Wn,
        Sn=Sn,
        x0_gain=1.0 if ideal else g / (g + 1.0),
        topology=topology.name,
        bits_adc=d.bits_adc,
        v_fullscale=d.v_fullscale,
        v_unit=vu,
        amp=B.amp_map,
        amp_cells=R0 * G_s / vu,
    )


def _inverter_with_rf(B: ValueBuilder, label: str, g: float, noise: dict, vu: float):
    """(effective gain, output-noise intensity) of the inverters of `label`, indexed like the
    inverted nodes (0 gain and 0 noise where no inverter was built)."""
    gain = B.inverter_gain[label]
    f = _stage_factor(g, 1.0 + gain)  # Rf * (1/Rin + 1/Rf) = gain + 1
    idx = np.flatnonzero(gain)
    var = np.zeros_like(gain)
    if idx.size and noise:
        # The builder records the pairs (Rin, Rf) flattened, in the order of `idx`.
        k = B.record.resistor_roles.index(f"inverters {label}")
        rf = B.record.resistors[k].reshape(-1, 2)[:, 1]
        v = np.array([noise.get(f"si{label}{j}", 0.0) for j in idx])
        var[idx] = (rf * f[idx] / vu) ** 2 * v
    return gain * f, var
