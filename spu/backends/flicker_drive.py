"""asbuilt's side of the op-amps' 1/f noise (circuits/flicker.py): the flicker voltages as extra state,
advanced exactly knot to knot (AR(1) per OU component, O(amps K)), entering the cells' input.
With the op-amps' swing or slew set, KnotPath feeds the same knots to the limited stepper
(spu/core/limited_drift.py), where the chain's voltages act before each stage's clamp.

Physics of a cell whose op-amp sees an input-referred voltage e(t) (finite gain g included): the
summing node moves with e, so
    w_i dx_i/ds = -(A_eff x - b)_i + R0 G_s,i e_i / v_unit + (C_i/C) de_i/ds / v_unit,
the first term the current the moved node draws from every resistor at it (RealisedSystem.amp_cells),
the second the capacitor carrying the output along (over a jump of e the output jumps by
g/(g+1) e / v_unit, RealisedSystem.x0_gain / v_unit; it also sets the start, x(0) = x0_gain (x0 +
e(0)/v_unit), as ngspice's consistent initial point does).

Between knots e is linear (what ngspice's filesource reads), so the input c(r) = c0 + c1 r is affine
over a knot interval and  x_p(r) = x* + M^-1 (c0 - M^-1 c1) + r M^-1 c1  solves the drift
dx/ds = -M (x - x*) + c(r) exactly (M = W^-1 A_eff). The deviation x - x_p obeys the homogeneous
drift, which SplitTransition steps as without input: exact where the diagonal is uniform, else with
the splitting's own error and nothing more. Two Woodbury solves per knot interval, O(N m).
Holding e at its midpoint instead would cost the same but add, at the knots, an error
int_0^h e^{-M(h-r)} (r/h - 1/2) dr W^-1 B de ~ (h^2 / 12) M W^-1 B de per interval (B = R0 G_s /
v_unit, de the change of e over the interval), summed with the circuit's decay to ~ (h / 12)
max |W^-1 B de|: small, since de ~ sqrt(2 gamma_top h) sigma, but not zero.

Every op-amp carries its own flicker voltage (cells, summers, inverters; one FlickerProcess column
per amp in Builder.amp_group order, as the netlist's table columns): RealisedSystem.amp_input maps
them to the shift of b, exact for the linear circuit (circuits/amp_input.py); the cells' own e also
carries the output along (the de/ds term above, which the chain's resistive stages do not have:
their shift of b already is their whole effect).

Cost per knot: one amp_input call, O(N m) (the previous knot's input is kept), two Woodbury solves,
and the draws of every amp's K components, O((2N + m) K) for the factored circuit's amps; a run has
t / h knots, h = KNOT / gamma_top: 2 pi f_c / KNOT = 63 f_c knots per second of circuit time.
Measured (factored N = 4000, m = 32, band 2e4..2e6 Hz, 628 knots in 5 tau): amp_input 0.16 ms per
call, the draws ~1 ms per knot, the run 2.0 s against 0.3-0.7 s without 1/f noise (the machine was
shared); the draws dominate, the map does not.
"""

from __future__ import annotations

import numpy as np

from .circuit import CELLS

_BLOCK, _BLOCK_VALUES = 64, 1 << 20  # knots drawn at once, and at most this many values


class FlickerKnots:
    """Knot by knot, the flicker of every op-amp (a circuits.flicker FlickerProcess of one column per
    amp, groups in RealisedSystem.amp's order): next() gives the chain amps' shift of b (problem
    units, through RealisedSystem.amp_input) and the cells' own voltages (V)."""

    def __init__(self, rs, process):
        self.rs, self.process, self.band = rs, process, process.band
        self.h = self.band.step / rs.tau_s  # knot spacing, problem tau
        self.buffer: list = []  # knots drawn ahead, the next one last
        self.groups, start = {}, 0
        for name, size in rs.amp.sizes.items():
            self.groups[name] = slice(start, start + size)
            start += size

    def volts(self) -> dict[str, np.ndarray]:
        """The next knot's voltages (V) by op-amp group. Knots come from the process in blocks
        (the same values as one by one: FlickerProcess draws in knot order), since a call per knot
        costs more in its per-component filter set-up than in the draws at N = 1e3..1e4."""
        if not self.buffer:
            block = max(1, min(_BLOCK, _BLOCK_VALUES // sum(self.rs.amp.sizes.values())))
            self.buffer = list(self.process.knots(block)[::-1])
        e = self.buffer.pop()
        return {name: e[part] for name, part in self.groups.items()}

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        volts = self.volts()
        cells = volts.pop(CELLS)
        return self.rs.amp_input(volts), cells


def amp_count(rs) -> int:
    """Op-amps of the realised circuit (the FlickerProcess columns FlickerKnots reads)."""
    return sum(rs.amp.sizes.values())


class FlickerDrive:
    """Steps a SplitTransition over [now, target] through the knots of FlickerKnots (built by the
    asbuilt backend, the bridge to circuits/)."""

    def __init__(self, rs, prop, knots: FlickerKnots):
        self.prop, self.band, self.knots, self.h = prop, knots.band, knots, knots.h
        self.w, self.cell_gain = rs.w, rs.amp_cells / rs.w  # per volt of a cell's own amp, into dx/ds
        self.follow = rs.x0_gain / rs.v_unit
        self.k = 0  # the knot interval [k h, (k+1) h] now stepped
        self.e = [self._input(*knots.next()) for _ in range(2)]  # (dx/ds input, cells' e) at k, k+1
        self._coef = self._coefficients()

    def _input(self, chain: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return chain / self.w + self.cell_gain * cells, cells

    def start(self, x: np.ndarray) -> np.ndarray:
        """The state at t = 0 of cells started at x (before their op-amps' e(0) moved them)."""
        return x + self.follow * self.e[0][1]

    def _coefficients(self):
        """(x* + v0, v1) of x_p(r) = x* + v0 + r v1 over the current knot interval (module doc)."""
        (c0, e0), (c1, e1) = self.e
        v1 = self.prop.solve((c1 - c0) / self.h)
        v0 = self.prop.solve(c0 + self.follow * (e1 - e0) / self.h - v1)
        return self.prop.mean + v0, v1

    def advance(self, x: np.ndarray, now: float, target: float, rng) -> np.ndarray:
        eps = 1e-12 * max(1.0, abs(target))
        while target - now > eps:
            t_k, t_next = self.k * self.h, (self.k + 1) * self.h
            end = t_next if t_next - target <= eps else target
            base, v1 = self._coef
            path = (base + (now - t_k) * v1, base + (end - t_k) * v1)
            x = self.prop.advance(x, end - now, rng, path=path)
            now = end
            if end == t_next:
                self.k += 1
                self.e = [self.e[1], self._input(*self.knots.next())]
                self._coef = self._coefficients()
        return x


class KnotPath:
    """The flicker input between knots, linear (as ngspice's filesource reads its table), for the
    limited stepper (spu/core/limited_drift.py): pieces() splits a span at the knots, at() gives
    its (cells' own e / v_unit, every amp's volts by group) at a time inside the current piece."""

    def __init__(self, rs, knots: FlickerKnots):
        self.v_unit, self.knots, self.h = rs.v_unit, knots, knots.h
        self.k = 0
        self.ends = [knots.volts() for _ in range(2)]

    def at(self, t: float) -> tuple[np.ndarray, dict]:
        r = t / self.h - self.k
        v0, v1 = self.ends
        volts = {name: v0[name] + r * (v1[name] - v0[name]) for name in v0}
        return volts[CELLS] / self.v_unit, volts

    def pieces(self, now: float, target: float):
        """(start, end) spans covering [now, target], none across a knot; the path moves on to the
        next knot interval once a span that ends on its knot has been used."""
        eps = 1e-12 * max(1.0, abs(target))
        while target - now > eps:
            t_next = (self.k + 1) * self.h
            end = t_next if t_next - target <= eps else target
            yield now, end
            now = end
            if end == t_next:
                self.k += 1
                self.ends = [self.ends[1], self.knots.volts()]
