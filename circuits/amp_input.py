"""How a voltage at an op-amp's input reaches the cells: the linear map from the input-referred
voltage of every op-amp (its offset, its bias current as I_b/G_s, 1/f noise) to a shift of the
cells' input b.

Every op-amp sits in an inverting stage: summing node s with total conductance G_s (every resistor
into s: inputs, feedback, lam, DAC), its + input at e (the offset), its inverting input drawing I_b
out of s. With DC gain g, V(s) = e - V(out)/g, and KCL at s gives

    summer, inverter (feedback Rf):  V(out) = f Rf (J - sum_k G_k V_k),   f = g / (g + Rf G_s)
    integrator cell (capacitor C):   C (1 + 1/g) dV(x)/dt = J - sum_k G_k V_k - G_s V(x)/g

with J = G_s e + I_b: each amp injects J into its stage (f = 1 for an ideal part). A cell's b
grows by R0 J / v_unit (b is the current R0/v_unit pushes in, see circuits/builder.py); a summer's
or inverter's output moves by f Rf J, and that shift travels down the chain like any signal: x's
inverted copies -> first array -> summers -> their inverted copies -> ... -> last array -> cells.
All of it is exact for the linear circuit (no first-order step anywhere): the realised b carries
the sum (circuits/realised.py), the component report lists each source (circuits/report.py).

Group labels (Builder.amp_group, in creation order): "cells", "summers <label>", "inverters <label>".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spu.core.errors import DesignError

OFFSET_STREAM = 1701  # np.random.default_rng([component_seed, OFFSET_STREAM]) draws the offsets
CELLS = "cells"


@dataclass
class AmpGroup:
    """One group of op-amps as the builder placed them."""

    nodes: list[str]  # each amp's summing node (its inverting input)
    rf: np.ndarray | None  # each amp's feedback resistor (None: integrator cells)
    gain: np.ndarray | None  # Rf/Rin of each inverter (None: summers, cells)
    index: np.ndarray | None  # the columns the inverters invert (None: summers, cells)


@dataclass
class _Inverters:
    group: str
    index: np.ndarray  # inverted columns
    gain: np.ndarray  # effective gain f Rf/Rin: V(out) = -gain V(in) + out J
    out: np.ndarray  # f Rf: volts out per ampere injected


@dataclass
class _Step:
    """One array of the chain: current into its targets = max(-S, 0) @ (shift of the nodes its
    negative entries read) + max(S, 0) @ (shift of the nodes its positive entries read)."""

    S: np.ndarray  # the as-built signed conductances (the builder's own array, not a copy)
    reads_x: bool  # its positive entries read x (no shift)
    summer: str | None  # the summer group it feeds (None: the cells)
    rff: np.ndarray | None  # that summer's f Rf
    inverters: _Inverters | None  # the inverted copies of that summer's outputs


# Rows per block of _parts: N x m masked copies would cost a pass and ~100 MB each at training scale.
_BLOCK = 1 << 20


def _parts(S: np.ndarray, c_neg: np.ndarray, c_pos: np.ndarray | None) -> np.ndarray:
    """max(-S, 0) @ c_neg + max(S, 0) @ c_pos (c_pos None: 0), one pass over S in row blocks.
    max(S, 0) = S + max(-S, 0) exactly, so each block needs one masked temporary."""
    out = np.empty((S.shape[0], c_neg.shape[1]))
    rows = max(1, _BLOCK // max(S.shape[1], 1))
    both = c_neg if c_pos is None else c_neg + c_pos
    for r in range(0, S.shape[0], rows):
        blk = S[r : r + rows]
        out[r : r + rows] = np.maximum(-blk, 0.0) @ both
        if c_pos is not None:
            out[r : r + rows] += blk @ c_pos
    return out


def _factor(g: float, rf_g: np.ndarray) -> np.ndarray:
    """f = g/(g + Rf G_s) of a finite-gain stage; 1 for an ideal part."""
    return np.ones_like(rf_g) if np.isinf(g) else g / (g + rf_g)


class AmpInput:
    """The map from per-amp injected currents (or input-referred volts) to the cells' b; O(N m)."""

    def __init__(self, B, chain: tuple[tuple[str, ...], tuple[str, ...]], n: int):
        d = B.d
        g = d.opamp.dc_gain
        self.n, self.scale, self.unit = n, float(B.record.scale), d.R0 / d.v_unit
        self.conductance = {
            name: np.array([B.node_conductance[s] for s in grp.nodes], dtype=float)
            for name, grp in B.amp_groups.items()
        }
        self.sizes = {name: len(grp.nodes) for name, grp in B.amp_groups.items()}
        # Set by errors(): the constant shift (V) of each summer stage's output, and of the inverted
        # copies each array reads (x's, then each summer's; 0 where none was built).
        self.shifts: list[np.ndarray] | None = None
        self.inverted_shifts: list[np.ndarray] | None = None

        def out_gain(name):
            rf = B.amp_groups[name].rf
            return rf * _factor(g, rf * self.conductance[name])

        def inverters(label):
            name = f"inverters {label}"
            grp = B.amp_groups.get(name)
            if grp is None:  # no negative entry needed this signal inverted
                return None
            out = out_gain(name)
            return _Inverters(name, grp.index, grp.gain * out / grp.rf, out)

        arrays, summers = chain
        self.x_inverters = inverters("x")
        self.steps = []
        for k, label in enumerate(arrays):
            summer = f"summers {summers[k]}" if k < len(summers) else None
            self.steps.append(
                _Step(
                    S=B.stages[label].S,
                    reads_x=k == 0,
                    summer=summer,
                    rff=out_gain(summer) if summer else None,
                    inverters=inverters(summers[k]) if summer else None,
                )
            )

    def _invert(self, inv: _Inverters | None, v: np.ndarray, J: dict) -> np.ndarray:
        """Shift of the inverted copies of signals whose shift is v (0 where none was built)."""
        c = np.zeros_like(v)
        if inv is not None:
            c[inv.index] = inv.out[:, None] * J.get(inv.group, 0.0) - inv.gain[:, None] * v[inv.index]
        return c

    def _walk(self, J: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, list, list]:
        """(shift of the cells' b, units of AsBuilt.b; shift of each summer stage's output, V; shift
        of the inverted copies each array reads, V) from the currents J[group] (A, size x k: k sets at once, one pass per array) each amp injects."""
        c_pos, c_neg = None, self._invert(self.x_inverters, np.zeros((self.n, k)), J)
        shifts, inverted = [], [c_neg]
        for st in self.steps:
            current = _parts(st.S, c_neg, None if st.reads_x else c_pos)
            if st.summer is None:
                return self.unit * (J.get(CELLS, 0.0) - current), shifts, inverted
            out = st.rff[:, None] * (J.get(st.summer, 0.0) - current)
            shifts.append(out)
            c_pos, c_neg = self._invert(st.inverters, out, J), out
            inverted.append(c_pos)
        raise DesignError("an op-amp chain must end in the cells")

    def to_cells(self, J: dict[str, np.ndarray]) -> np.ndarray:
        """Shift of the cells' b in the units of AsBuilt.b from the currents J[group] (A, one per
        amp) each amp injects into its stage (a group left out injects nothing)."""
        return self._walk({name: np.asarray(v, dtype=float).reshape(-1, 1) for name, v in J.items()}, 1)[0][:, 0]

    def __call__(self, volts: dict[str, np.ndarray]) -> np.ndarray:
        """Shift of the realised b (problem units: the circuit's times its scale) from the input-
        referred voltage volts[group] (V, one per amp, in Builder.amp_group order) at each op-amp."""
        J = {}
        for name, v in volts.items():
            if name not in self.sizes:
                raise DesignError(f"no op-amp group {name!r}; the circuit has {', '.join(self.sizes)}")
            v = np.asarray(v, dtype=float)
            if v.shape != (self.sizes[name],):
                raise DesignError(f"op-amp group {name!r} has {self.sizes[name]} amps, got volts of shape {v.shape}")
            J[name] = self.conductance[name] * v
        return self.scale * self.to_cells(J)

    def errors(self, offsets: dict[str, np.ndarray], bias: float) -> dict[str, np.ndarray]:
        """BuildRecord.input_errors entries (units of AsBuilt.b): the offsets of each group, and
        the bias current of every amp, all in one walk down the chain. Sets `shifts` (V): the
        constant shift they put on each summer stage's output and `inverted_shifts` that of the
        inverted copies (the clamp's bounds move by them)."""
        sources = {
            f"op-amp offset {name}": {name: self.conductance[name] * v} for name, v in offsets.items() if v.any()
        }
        if bias:
            sources["op-amp bias"] = {name: np.full(size, float(bias)) for name, size in self.sizes.items()}
        J = {name: np.zeros((size, len(sources))) for name, size in self.sizes.items()}
        for col, source in enumerate(sources.values()):
            for name, current in source.items():
                J[name][:, col] = current
        cells, shifts, inverted = self._walk(J, len(sources))
        self.shifts = [s.sum(axis=1) for s in shifts]
        self.inverted_shifts = [s.sum(axis=1) for s in inverted]
        return {label: cells[:, col] for col, label in enumerate(sources)}
