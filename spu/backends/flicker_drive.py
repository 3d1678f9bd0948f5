"""asbuilt's side of the op-amps' 1/f noise (circuits/flicker.py): the flicker voltages as extra state,
advanced exactly knot to knot (AR(1) per OU component, O(N K)), entering the cells' input.

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

Today the cells' own op-amps carry the flicker (as in the netlist, circuits/builder.py). The chain
amplifiers (summers, inverters) enter the same way once RealisedSystem maps each op-amp's
input-referred voltage to the cells' input: `cell_input` is then that map.
"""

from __future__ import annotations

import numpy as np


class FlickerDrive:
    """Steps a SplitTransition over [now, target] through the knots of a circuits.flicker
    FlickerProcess (one voltage per cell op-amp; built by the asbuilt backend, the bridge to
    circuits/)."""

    def __init__(self, rs, prop, process):
        self.prop, self.band = prop, process.band
        self.h = self.band.step / rs.tau_s  # knot spacing, problem tau
        self.process = process
        self.gain = rs.amp_cells / rs.w  # per volt, into dx/ds
        self.follow = rs.x0_gain / rs.v_unit
        self.k = 0  # the knot interval [k h, (k+1) h] now stepped
        self.e = self.process.knots(2)  # e at knots k and k+1, volts per cell op-amp
        self._coef = self._coefficients()

    def cell_input(self, e: np.ndarray) -> np.ndarray:
        """dx/ds per volt of each cell's op-amp (the chain amplifiers join through the same map)."""
        return self.gain * e

    def start(self, x: np.ndarray) -> np.ndarray:
        """The state at t = 0 of cells started at x (before their op-amps' e(0) moved them)."""
        return x + self.follow * self.e[0]

    def _coefficients(self):
        """(x* + v0, v1) of x_p(r) = x* + v0 + r v1 over the current knot interval (module doc)."""
        slope = (self.e[1] - self.e[0]) / self.h
        c1 = self.cell_input(slope)
        v1 = self.prop.solve(c1)
        v0 = self.prop.solve(self.cell_input(self.e[0]) + self.follow * slope - v1)
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
                self.e = np.vstack([self.e[1:], self.process.knots(1)])
                self._coef = self._coefficients()
        return x
