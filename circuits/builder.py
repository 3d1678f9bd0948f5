"""Building blocks shared by every topology: programmed resistor arrays, op-amp stages, cells,
DACs and noise sources, with the effective (as-built) gains recorded for the component report.

Sign conventions (all positive components; signs come from inverted copies of signals):

* Integrator cell i: op-amp with the capacitor C_i from its summing node s_i to its output x_i.
  The summing node is a virtual ground, so C_i dV(x_i)/dt = -I(s_i), I(s_i) being the total
  current the resistors push into s_i. The state is V(x_i) = v_unit * x_i.
* Inverting summer k: feedback resistor Rf_k from its summing node to its output, so
  V(out_k) = -Rf_k * I(s_k): every summer flips the sign, and the builders account for it.
* Inverter: a summer with one input resistor, giving -V (gain -Rf/Rin).
* A coefficient a from signal v into summing node s is a resistor R0/|a| from v if a > 0 or
  from the inverted copy -v if a < 0: the current is a*v/R0 either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from spu.core.errors import DesignError

from .amp_input import OFFSET_STREAM, AmpGroup
from .converters import dac_output
from .design import Design
from .netlist import Netlist
from .noise_table import SCALE, chunks, file_name
from .opamp_model import PORTS, SLEW_NODE, subckt_body
from .scaling import negligible_columns


def _max_abs(a: np.ndarray) -> float:
    """max |a| without the |a| copy (0 for an empty array)."""
    return float(max(a.max(), -a.min())) if a.size else 0.0


@dataclass
class Stage:
    """A linear map realised by one resistor array: current into each target = S @ source_voltages,
    where S holds the as-built signed conductances (siemens)."""

    label: str
    S: np.ndarray


@dataclass
class ArrayRecord:
    """One programmed resistor array, as built: THE record of how its coefficients became resistors
    (netlist and any as-built model read this, nothing recomputes it).

    coef         the coefficients asked for, in circuit units (after the scale s of
                 circuits/scaling.py and the array's own autorange), shape of the array
    programmed   after quantisation, with open cells set to 0 (what the array realises nominally)
    index        row-major flat indices of the cells that got a resistor (None: every cell, the
                 usual case at scale, where N x m index arrays would double the memory); `rows`,
                 `cols` and `values` give them. ohms_nominal = R0/|programmed| there, ohms as built
                 (tolerance drawn); sources/targets: the node each resistor joins (filled by place)
    opened       nonzero coefficients left open (R0/|c| above r_max: an unprogrammed cell)
    open_max, open_index  the largest of them and its "[i,j]"
    """

    label: str
    coef: np.ndarray
    programmed: np.ndarray
    index: np.ndarray | None
    ohms_nominal: np.ndarray
    ohms: np.ndarray
    sources: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    opened: int = 0
    open_max: float = 0.0
    open_index: str = ""

    @property
    def values(self) -> np.ndarray:
        """The programmed coefficient of each placed resistor, in `index` order."""
        flat = self.programmed.reshape(-1)
        return flat if self.index is None else flat[self.index]

    def _flat(self) -> np.ndarray:
        return np.arange(self.programmed.size) if self.index is None else self.index

    @property
    def rows(self) -> np.ndarray:
        p = self.programmed
        return self._flat() if p.ndim == 1 else self._flat() // p.shape[1]

    @property
    def cols(self) -> np.ndarray:
        p = self.programmed
        return self._flat() if p.ndim == 1 else self._flat() % p.shape[1]

    def where(self, k: int) -> str:
        """'[i,j]' of the k-th placed resistor (a diagonal array's cell i reads column i)."""
        f = k if self.index is None else int(self.index[k])
        i, j = (f, f) if self.programmed.ndim == 1 else divmod(f, self.programmed.shape[1])
        return f"[{i},{j}]"


@dataclass
class BuildRecord:
    """What the report (and an as-built model) needs to know about the built circuit."""

    resistors: list[np.ndarray] = field(default_factory=list)  # as-built ohms, per array
    resistor_roles: list[str] = field(default_factory=list)
    # Terminals of every resistor, per array, for the power estimate: (node a, node b) names.
    terminals: list[tuple[list[str], list[str]]] = field(default_factory=list)
    quant_error: dict[str, float] = field(default_factory=dict)  # label -> max |a_q - a| / max |a|
    quant_zeroed: int = 0  # nonzero coefficients that quantisation rounded to 0
    amplifiers: int = 0
    capacitors: list[float] = field(default_factory=list)
    noise_sources: int = 0
    dacs: int = 0
    dac_volts: np.ndarray | None = None
    noise_hold_tau: float | None = None  # circuit tau; None when the circuit has no noise source
    noise_mode: str | None = None  # "table" | "held" (None: no noise source)
    arrays: dict[str, ArrayRecord] = field(default_factory=dict)  # label -> programmed array
    scale: float = 1.0  # the circuit realises (A/scale) x = b/scale (circuits/scaling.py)
    step: float = 1.0  # the circuit's step cap is design.dt_max * step (circuits/scaling.Scale)
    columns_dropped: int = 0  # columns of U left out whole (every entry an open cell)
    columns_dropped_entries: int = 0  # their nonzero entries (each would have been an open cell)
    open_error: float = 0.0  # relative steady-state error of the open cells alone
    # Johnson noise per cell as a kappa in circuit units (0 without temperature); times scale
    # gives problem units.
    johnson_kappa: np.ndarray | None = None
    # Input offset (V) drawn for each op-amp, per group in creation order: "cells", "summers <label>",
    # "inverters <label>" (circuits/amp_input.py); zeros where the design has no offset.
    opamp_offsets: dict[str, np.ndarray] = field(default_factory=dict)
    # Additive errors at the cells' inputs: source name -> its shift of b, in the units of AsBuilt.b
    # (the circuit's b/scale, before circuits/realised.py's problem-time scaling). A breakdown of
    # what AsBuilt.b already holds (the realised b), which the component report lists one by one.
    input_errors: dict[str, np.ndarray] = field(default_factory=dict)
    # The op-amps' 1/f noise sources (circuits/flicker_sources.FlickerSources; None: no 1/f noise).
    flicker: object | None = None

    def open_count(self) -> int:
        return sum(a.opened for a in self.arrays.values())


class Builder:
    """Accumulates one netlist. Topology functions call these methods in order."""

    # False for a builder that keeps element values only (circuits/realised.py): the per-element
    # netlist lines are then skipped, which at N = 1e5 cells is most of a realisation's time.
    emits_text = True

    def __init__(self, design: Design, title: str):
        self.d = design.check()
        self.nl = Netlist(title)
        self.rng = np.random.default_rng(design.component_seed)
        self.record = BuildRecord()
        # Total conductance at each summing node: sets its Johnson current.
        self.node_conductance: dict[str, float] = {}
        # Hold time (tau) of the noise sources; topologies set it from the problem's fastest mode.
        self.noise_hold_tau: float | None = None
        # "table": one XSPICE table source for every noisy node (~1 time point per hold, see
        # circuits/noise_table.py); "held": a TRRANDOM source per node (~6 points per hold).
        self.noise_mode = "held"
        # node -> intensity (A^2 s) of the noise current into it, set by noise_sources.
        self.noise_intensity: dict[str, float] = {}
        # Op-amp offsets come from their own stream, so turning them on leaves the tolerance draws
        # (self.rng) as they were, and both builders draw the same offset for the same amp.
        self.offset_rng = np.random.default_rng([design.component_seed, OFFSET_STREAM])
        self.amp_groups: dict[str, AmpGroup] = {}
        self.stages: dict[str, Stage] = {}  # label -> as-built array, for chain compositions
        self.amp_map = None  # circuits/amp_input.AmpInput, set by a topology with a chain
        # 1/f noise of the op-amps: the topology sets it (circuits/flicker_sources.flicker_sources)
        # before placing the cells; None: none.
        self.flicker = None

    # -- programmed values ----------------------------------------------------------------
    def quantise(self, label: str, coef: np.ndarray) -> np.ndarray:
        """Round coefficients to bits_r levels of the array's full scale (its largest |entry|):
        a designer sizes each array so its largest entry uses the full conductance range."""
        bits = self.d.bits_r
        full = _max_abs(coef)
        if bits is None or full == 0.0:
            return coef
        lsb = full / (2**bits - 1)
        # In place: at N x m = 6.4M entries every temporary is a 51 MB allocation.
        q = coef / lsb
        np.round(q, out=q)
        q *= lsb
        self.record.quant_error[label] = _max_abs(np.subtract(q, coef)) / full
        self.record.quant_zeroed += int(np.count_nonzero((q == 0) & (coef != 0)))
        return q

    def scale(self, coef: np.ndarray, power: int = 1, times: float = 1.0) -> float:
        """Full scale of an array: with design.autorange each array is programmed as coef/scale
        (its largest entry at R0) and a summer's feedback resistor of gain times*scale**power
        restores it, so small arrays (H ~ p/b) keep their resolution inside [r_min, r_max].

        The scale is clamped so that this feedback resistor itself stays in range; the array then
        uses less than its full scale (and its own range check speaks if that is not enough)."""
        full = float(np.abs(coef).max()) if coef.size else 0.0
        if not (self.d.autorange and full > 0):
            return 1.0
        lo = (self.d.r_min / self.d.R0 / times) ** (1.0 / power)
        hi = (self.d.r_max / self.d.R0 / times) ** (1.0 / power)
        return min(max(full, lo), hi)

    def ohms(self, label: str, coef: np.ndarray, index_names) -> np.ndarray:
        """Nominal resistances R0/|a| of coefficients that must all be placed (range-checked)."""
        R = np.abs(coef)
        with np.errstate(divide="ignore"):
            np.divide(self.d.R0, R, out=R)
        bad = (R < self.d.r_min) | (R > self.d.r_max)
        if bad.any():
            k = int(np.argmax(bad))
            side = "below r_min" if R[k] < self.d.r_min else "above r_max"
            lim = self.d.r_min if R[k] < self.d.r_min else self.d.r_max
            hint = (
                "widen [r_min, r_max]"
                if self.d.autoscale
                else "rescale the problem (or leave autoscale on), widen [r_min, r_max]"
            )
            raise DesignError(
                f"{label}{index_names(k)} = {coef[k]:.6g} maps to R = R0/|a| = {R[k]:.6g} ohm, {side} "
                f"({lim:g} ohm); {hint} or set bits_r to drop tiny entries"
            )
        return R

    def drop_negligible_columns(self, U: np.ndarray, full_scale: float) -> np.ndarray:
        """U without the columns whose every entry would be an open cell (a softmax Hessian's null
        direction gives such columns): they would only cost summers that carry nothing."""
        drop = negligible_columns(U, full_scale, self.d)
        if not drop.any():
            return U
        self.record.columns_dropped = int(drop.sum())
        self.record.columns_dropped_entries = int(np.count_nonzero(U[:, drop]))
        self.nl.comment(f"{int(drop.sum())} column(s) of U below the smallest programmable conductance left out")
        return U[:, ~drop]

    def with_tolerance(self, values: np.ndarray, tol: float) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if tol == 0:
            return values
        # Clip at 4 sigma so a draw can never give a non-positive component.
        dev = self.rng.standard_normal(values.shape)
        np.clip(dev, -4, 4, out=dev)
        dev *= tol
        dev += 1.0
        dev *= values  # values * (1 + tol * dev), bit for bit, without three temporaries
        return dev

    def add_conductance(self, nodes: list[str], g: np.ndarray) -> None:
        """Add conductances (siemens) to the summing-node totals that set their Johnson current."""
        total = self.node_conductance
        for node, v in zip(nodes, np.asarray(g, dtype=float).tolist()):
            total[node] = total.get(node, 0.0) + v

    # -- op-amps --------------------------------------------------------------------------
    def opamp(
        self, name: str, inn: str, out: str, comment: str | None = None, offset: float = 0.0, integrator: bool = False
    ) -> None:
        """One amplifier. With a slew rate, the integrators get a slew-limited subcircuit and the
        resistive stages a clamp-only one (opamp_model.output_stage says why)."""
        amp = self.d.opamp
        sub = "opamp_slew" if integrator and amp.slew is not None else "opamp"
        if sub not in self.nl.subckts:
            # The slew stage's lag is the circuit's step cap (opamp_model.output_stage says why).
            lag = self.d.dt_max * self.record.step * self.d.tau
            part = amp if sub == "opamp_slew" else replace(amp, slew=None)
            self.nl.subckt(sub, PORTS, subckt_body(part, lag))
        # 1/f noise in series with the summing node (circuits/flicker_sources.py: its columns follow
        # the amps in Builder.amp_group order), then the offset source; only where drawn, so other
        # errors leave the netlist's wiring as it was.
        pin = inn if self.flicker is None else self.flicker.series(name, inn)
        sensed = pin if amp.offset == 0 else self.opamp_input(name, pin, offset)
        self.nl.X(name, (sensed, out), sub, comment)
        self.record.amplifiers += 1

    def hold_outputs(self, x0: np.ndarray) -> None:
        """With a slew rate, every integrator's slew stage is a capacitor that `uic` would start at
        0 V: start it where the cell's output sits at t = 0 instead (v_unit * x0, x0_gain * x0 with
        a finite gain, clipped at the swing), so that a run from x0 slews only where the dynamics
        ask for it. spu/core/limited_drift.py (OutputLimits.initial) starts the same way."""
        amp = self.d.opamp
        if amp.slew is None or not self.emits_text:
            return
        x = x0 if amp.ideal else x0 * (amp.gain / (amp.gain + 1.0))
        if amp.swing is not None:
            x = np.clip(x, -amp.swing / self.d.v_unit, amp.swing / self.d.v_unit)
        for i, v in enumerate((x * self.d.v_unit).tolist()):
            self.nl.initial(f"cell{i}", SLEW_NODE, v)

    def opamp_input(self, name: str, inn: str, offset: float) -> str:
        """The node op-amp `name` senses: its summing node `inn` through a DC source of its drawn
        offset (V(inn) - V(m) = offset), so the amp drives V(inn) to its offset, as a real part's
        input offset voltage does.

        In series with the inverting input rather than as a source at the + input (the same
        circuit): the VCVS then senses a voltage near 0 V, not the difference of two ~offset
        voltages, which ngspice's solve resolves only to ~1e-16 V, times the gain 1e12 of an ideal
        part (measured: 3e-4 error in the state at a 5 mV offset; 1e-12 in series)."""
        node = f"m{name}"
        self.nl.V(f"os{name}", inn, node, offset, comment=f"input offset of op-amp {name}")
        return node

    def amp_group(self, group: str, nodes: list[str], rf=None, gain=None, index=None) -> np.ndarray:
        """Record a group of op-amps (summing nodes, feedback resistors, inverter gains and the
        columns they invert, for circuits/amp_input.py) and draw their offsets: N(0, offset^2)
        each, from the offset stream, in creation order."""
        sigma = self.d.opamp.offset
        v = sigma * self.offset_rng.standard_normal(len(nodes)) if sigma > 0 else np.zeros(len(nodes))
        self.amp_groups[group] = AmpGroup(nodes, rf, gain, index)
        self.record.opamp_offsets[group] = v
        return v

    # -- resistor arrays ------------------------------------------------------------------
    def array(self, label: str, coef: np.ndarray, targets: list[str], pos: list[str], neg: list[str | None]) -> Stage:
        """Resistors realising current(target_i) = sum_j coef[i,j] * v_j / R0.

        pos[j] carries v_j, neg[j] carries -v_j (needed only where a column has negative entries).
        A 1-D coef is a diagonal array (coef[i] from pos[i] into targets[i]): the lambda resistors
        of N cells then need no N x N matrix. Returns the as-built signed conductances (1-D for a
        diagonal array).
        """
        asked = np.asarray(coef, dtype=float)
        coef = self.quantise(label, asked)
        # An entry needing more than r_max is left open: no resistor, as an unprogrammed cell.
        g_min = self.d.R0 / self.d.r_max
        opened = (coef != 0) & (coef < g_min) & (coef > -g_min)
        n_open, open_max, open_index = int(np.count_nonzero(opened)), 0.0, ""
        if n_open:
            k = int(np.argmax(np.where(opened, np.abs(coef), -1.0)))
            ij = np.unravel_index(k, coef.shape)
            i, j = (ij[0], ij[0]) if coef.ndim == 1 else ij
            open_max, open_index = float(np.abs(coef[ij])), f"[{i},{j}]"
            coef = np.where(opened, 0.0, coef)
        # The placed entries in row-major order (np.nonzero's). A full array, the usual case at
        # scale, needs no index arrays, gather or scatter: each is a slow pass over N x m entries.
        full = np.count_nonzero(coef) == coef.size
        rec = ArrayRecord(
            label,
            asked,
            coef,
            None if full else np.flatnonzero(coef),
            None,
            None,
            opened=n_open,
            open_max=open_max,
            open_index=open_index,
        )
        vals = rec.values
        rec.ohms_nominal = self.ohms(label, vals, rec.where)
        rec.ohms = R = self.with_tolerance(rec.ohms_nominal, self.d.tol_r)
        G = np.reciprocal(R)
        if full and coef.ndim == 2:
            per_row = G.reshape(coef.shape).sum(axis=1)
        else:
            per_row = np.bincount(rec.rows, weights=G, minlength=len(targets))
        np.copysign(G, vals, out=G)  # the signed conductances sign(a)/R
        if full:
            S = G.reshape(coef.shape)
        else:
            S = np.zeros(coef.shape)
            S.reshape(-1)[rec.index] = G
        rec.sources, rec.targets = self.place(rec, targets, pos, neg)
        self.add_conductance(targets, per_row)
        self.record.resistors.append(R)
        self.record.resistor_roles.append(label)
        self.record.arrays[label] = rec
        self.stages[label] = st = Stage(label, S)
        return st

    def place(
        self, rec: ArrayRecord, targets: list[str], pos: list[str], neg: list[str | None]
    ) -> tuple[list[str], list[str]]:
        """Emit one array's resistors (entry k: rec.ohms[k] from column cols[k]'s signal into row
        rows[k]); returns the node each one joins (sources, targets)."""
        add, label, R = self.nl.R, rec.label, rec.ohms
        srcs, dsts = [], []
        for i, j, v, r in zip(rec.rows.tolist(), rec.cols.tolist(), rec.values.tolist(), R.tolist()):
            src = pos[j] if v > 0 else neg[j]
            if src is None:
                raise DesignError(f"{label}[{i},{j}] is negative but no inverted copy of column {j} exists")
            add(f"{label}_{i}_{j}", src, targets[i], r, comment=f"{label}[{i},{j}]={v!r}")
            srcs.append(src)
            dsts.append(targets[i])
        self.record.terminals.append((srcs, dsts))
        return srcs, dsts

    def summers(self, label: str, n: int, gain: float = 1.0) -> tuple[list[str], list[str], np.ndarray]:
        """n inverting summing amplifiers with feedback gain*R0. Returns (sum nodes, outputs, Rf).

        gain != 1 compensates arrays programmed at a scale (see `scale`)."""
        sums = [f"s{label}{k}" for k in range(n)]
        outs = [f"{label}{k}" for k in range(n)]
        rf = gain * self.d.R0
        if not self.d.r_min <= rf <= self.d.r_max:
            side = "below r_min" if rf < self.d.r_min else "above r_max"
            raise DesignError(
                f"summer {label} needs feedback resistors of {rf:.6g} ohm (gain {gain:.6g}), "
                f"{side} (allowed [{self.d.r_min:g}, {self.d.r_max:g}] ohm)"
            )
        Rf = self.with_tolerance(np.full(n, rf), self.d.tol_r)
        v_os = self.amp_group(f"summers {label}", sums, rf=Rf)
        if self.emits_text:
            for k in range(n):
                self.nl.R(f"f{label}_{k}", sums[k], outs[k], Rf[k], comment=f"feedback of summer {label}{k}")
                self.opamp(f"{label}_{k}", sums[k], outs[k], offset=v_os[k])
        else:
            self.record.amplifiers += n
        self.add_conductance(sums, 1.0 / Rf)
        self.record.resistors.append(Rf)
        self.record.resistor_roles.append(f"feedback {label}")
        self.record.terminals.append((sums, outs))
        return sums, outs, Rf

    def inverters(self, label: str, nodes: list[str], needed: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """Inverted copies -v of the nodes where `needed`; returns (nodes or None, gain Rf/Rin)."""
        neg: list[str | None] = [None] * len(nodes)
        gain = np.zeros(len(nodes))
        idx = np.flatnonzero(needed)
        if idx.size == 0:
            return neg, gain
        R = self.with_tolerance(np.full((idx.size, 2), self.d.R0), self.d.tol_r)
        ins = [nodes[j] for j in idx.tolist()]
        sums = [f"si{label}{j}" for j in idx.tolist()]
        outs = [f"n{node}" for node in ins]
        v_os = self.amp_group(f"inverters {label}", sums, rf=R[:, 1], gain=R[:, 1] / R[:, 0], index=idx)
        if self.emits_text:
            for k, j in enumerate(idx.tolist()):
                s, out = sums[k], outs[k]
                self.nl.R(f"i{label}_{j}", ins[k], s, R[k, 0], comment=f"inverter of {ins[k]}: input")
                self.nl.R(f"fi{label}_{j}", s, out, R[k, 1], comment=f"inverter of {ins[k]}: feedback")
                self.opamp(f"inv{label}_{j}", s, out, offset=v_os[k])
        else:
            self.record.amplifiers += idx.size
        self.node_conductance.update(zip(sums, (1.0 / R[:, 0] + 1.0 / R[:, 1]).tolist()))
        for j, out in zip(idx.tolist(), outs):
            neg[j] = out
        gain[idx] = R[:, 1] / R[:, 0]
        # Terminals per resistor, input then feedback of each inverter.
        self.record.terminals.append(
            ([a for pair in zip(ins, sums) for a in pair], [a for pair in zip(sums, outs) for a in pair])
        )
        self.record.resistors.append(R.ravel())
        self.record.resistor_roles.append(f"inverters {label}")
        return neg, gain

    # -- cells, DACs, noise ---------------------------------------------------------------
    def integrator_cells(self, n: int, x0: np.ndarray) -> tuple[list[str], list[str], np.ndarray]:
        """n op-amp integrators. Returns (summing nodes, state nodes, as-built C)."""
        sums = [f"s{i}" for i in range(n)]
        xs = [f"x{i}" for i in range(n)]
        C = self.with_tolerance(np.full(n, self.d.C), self.d.tol_c)
        v_os = self.amp_group("cells", sums)
        clean = self.d.opamp.offset == 0
        if self.emits_text:
            for i in range(n):
                # ic is V(s_i) - V(x_i) = 0 - v_unit*x0_i across the capacitor. With an offset the
                # summing node sits at v_os: the capacitor holds v_os - v_unit*x0_i, so the state
                # still starts at x0 (a reset that sets the output, as the read-out sees it).
                ic = -self.d.v_unit * x0[i] if clean else v_os[i] - self.d.v_unit * x0[i]
                self.nl.C(f"{i}", sums[i], xs[i], C[i], ic=ic, comment=f"cell {i} integrator")
                comment = f"cell {i}: V(x{i}) = v_unit * x[{i}]"
                self.opamp(f"cell{i}", sums[i], xs[i], comment=comment, offset=v_os[i], integrator=True)
        else:
            self.record.amplifiers += n
        for node in sums:
            self.node_conductance.setdefault(node, 0.0)
        self.record.capacitors.extend(C.tolist())
        return sums, xs, C

    def dac_inputs(self, b: np.ndarray, targets: list[str]) -> np.ndarray:
        """Inject -b_i*v_unit/R0 into each integrator's summing node (the integrator inverts, so the
        DAC is loaded with -b). The DAC uses its full scale for max|b|: V = -b_i*v_fs/max|b| through
        R_b = R0*v_fs/(max|b|*v_unit). Returns the as-built b (after the DACs' quantisation and
        errors, and the resistors' tolerance)."""
        d = self.d
        bmax = float(np.abs(b).max())
        if bmax == 0.0:
            return np.zeros_like(b)  # no current to inject: the DACs sit at 0 V and are left out
        # The DACs' codes, then their INL, gain and offset (circuits/converters.py).
        volts, errors = dac_output(-b * d.v_fullscale / bmax, d)
        Rb = d.R0 * d.v_fullscale / (bmax * d.v_unit)
        if not d.r_min <= Rb <= d.r_max:
            raise DesignError(
                f"b with max |b| = {bmax:.6g} needs DAC input resistors of {Rb:.6g} ohm, outside "
                f"[{d.r_min:g}, {d.r_max:g}]; change v_unit or v_fullscale"
            )
        R = self.with_tolerance(np.full(len(b), Rb), d.tol_r)
        if self.emits_text:
            for i, s in enumerate(targets):
                self.nl.V(f"dac{i}", f"d{i}", "0", volts[i], comment=f"DAC {i}: -b[{i}] scaled to full scale")
                self.nl.R(f"b{i}", f"d{i}", s, R[i], comment=f"input resistor for b[{i}]")
        self.add_conductance(targets, 1.0 / R)
        self.record.resistors.append(R)
        self.record.resistor_roles.append("DAC inputs")
        self.record.terminals.append(([f"d{i}" for i in range(len(b))], list(targets)))
        self.record.dacs = len(b)
        self.record.dac_volts = volts
        for name, dv in errors.items():  # b_i = -V_i / R_i * R0 / v_unit, so each error's share:
            self.record.input_errors[name] = -dv / R * d.R0 / d.v_unit
        return -volts / R * d.R0 / d.v_unit

    def johnson_variance(self, nodes: list[str]) -> np.ndarray:
        """sigma^2 (A^2 s per s) of the lumped Johnson current into each node: 2kT times the node's
        total conductance (0 where no resistor joins it)."""
        g = np.array([self.node_conductance.get(node, 0.0) for node in nodes], dtype=float)
        return np.where(g > 0, self.d.johnson_sigma(g) ** 2, 0.0)

    def johnson_kappa(self, nodes: list[str]) -> np.ndarray:
        """The kappa (circuit units) that the Johnson current into each RC cell's node amounts to:
        sigma^2 = 2kT G against kappa_to_current_sigma's (C v_unit)^2 2 kappa / tau."""
        d = self.d
        return self.johnson_variance(nodes) * d.tau / (2.0 * (d.C * d.v_unit) ** 2)

    def noise_sources(self, kappa_nodes: list[str], kappa0: float, johnson: bool = True) -> None:
        """One seeded Gaussian current source per node: programmable kappa0 noise on the cells,
        plus the lumped Johnson current of every resistor at each summing node.

        Lumping is exact here: each resistor joins an ideal op-amp output (zero impedance, which
        swallows the noise current at that end) to a summing node, so only the summing-node end
        matters, and independent Gaussian currents into one node add in variance."""
        d = self.d
        if self.noise_hold_tau is None:
            self.noise_hold_tau = d.hold_for(1.0)
        hold = self.noise_hold_tau * d.tau
        var: dict[str, float] = {}
        if kappa0 > 0:
            s2 = d.kappa_to_current_sigma(kappa0) ** 2
            for node in kappa_nodes:
                var[node] = var.get(node, 0.0) + s2
        if johnson and d.temperature:
            nodes = [node for node, g in self.node_conductance.items() if g > 0]
            for node, v in zip(nodes, self.johnson_variance(nodes).tolist()):
                var[node] = var.get(node, 0.0) + v
        self.noise_intensity = var
        if self.emits_text and self.noise_mode == "table" and var:
            nodes = sorted(var)
            # The table holds unit normals * 1/SCALE; a knot value sigma/sqrt(hold) per node gives
            # the same sigma^2 * hold per interval as a held value (circuits/noise_table.py).
            scales = [SCALE * math.sqrt(var[node] / hold) for node in nodes]
            for j, c in enumerate(chunks(len(nodes))):
                self.nl.table_currents(
                    f"noise{j}",
                    nodes[c.start : c.stop],
                    file_name(j),
                    scales[c.start : c.stop],
                    comment=f"noise into {len(c)} nodes from {file_name(j)}, knots every {hold:.6g} s",
                )
        for k, (node, v) in enumerate(sorted(var.items()) if self.emits_text and self.noise_mode == "held" else ()):
            # A value held for `hold` seconds with std sigma/sqrt(hold) integrates to sigma^2*hold.
            self.nl.I(
                f"n{k}", "0", node, 0.0, noise=(hold, math.sqrt(v / hold)), comment=f"noise into {node}: {v:.6g} A^2 s"
            )
        self.record.noise_sources = len(var)
        self.record.noise_hold_tau = self.noise_hold_tau if var else None
        self.record.noise_mode = self.noise_mode if var else None
