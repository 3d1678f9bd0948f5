"""What every topology returns: the Circuit (netlist + as-built system) and the pieces all the
builders share (as-built algebra, x0 check, the seeded transient). Its own module so that
the RC topologies (circuits/topologies/) and circuits/oscillator.py both build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spu.core.errors import DesignError

from .builder import BuildRecord
from .design import Design
from .netlist import Netlist
from .noise_table import noise_files


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
    scale: float = 1.0  # the circuit realises (A/scale) x = b/scale; one problem tau = scale circuit tau
    realised: object = None  # that scaled problem (circuits/scaling.scaled)
    seed: int | None = None  # of the noise tables (None: fresh noise)
    builder: object | None = None  # the Builder that placed the elements (its stages and node conductances)
    # Builder labels of the arrays holding A (the topology's Topology.programmed_arrays); None: none.
    programmed_arrays: tuple[str, ...] | None = None

    def text(self) -> str:
        return self.netlist.text()

    @property
    def noise_mode(self) -> str | None:
        """ "table" | "held" | None (no noise source)."""
        return self.record.noise_mode

    def tran_args(self) -> tuple[float, float, float]:
        """(tstep, tstop, tmax) of the netlist's .tran line, for a session's tran command."""
        return self.netlist.tran

    def files(self) -> dict[str, bytes]:
        """Files the netlist reads from its directory: the noise tables when noise is tabled, and the
        op-amps' 1/f noise tables."""
        files = self.record.flicker.files(self.netlist.tran[1], self.seed) if self.record.flicker else {}
        if self.record.noise_mode == "table":
            hold = self.record.noise_hold_tau * self.design.tau
            files.update(noise_files(self.record.noise_sources, self.netlist.tran[1], hold, self.seed))
        return files

    def programmed_resistors(self) -> int | None:
        """Resistors that store A's values (the arrays the timing model programs per call), counted
        as built: only nonzero entries get a resistor, so a block-diagonal H costs its blocks only.
        Feedback, inverter, DAC and lam resistors are fixed by the design or by lam, not programmed
        from the problem's matrices. None for topologies without programmed arrays (ideal, oscillator)."""
        roles = self.programmed_arrays
        if roles is None:
            return None
        return sum(int(r.size) for role, r in zip(self.record.resistor_roles, self.record.resistors) if role in roles)


def effective(S: np.ndarray, c_pos: np.ndarray, c_neg: np.ndarray) -> np.ndarray:
    """Current per unit signal of an array whose positive entries read a node carrying c_pos*u and
    whose negative entries read a node carrying -c_neg*u."""
    out = S * c_neg[None, :]
    np.multiply(S, c_pos[None, :], out=out, where=S > 0)  # one N x m temporary, not three
    return out


def inverted_copies(gain: np.ndarray):
    """The map x -> voltages of the inverted copies (-gain_j x_j for each built inverter j), sparse:
    a dense k x N matrix would not fit at N = 1e5."""
    from scipy.sparse import csr_matrix

    idx = np.flatnonzero(gain > 0)
    return csr_matrix((-gain[idx], (np.arange(idx.size), idx)), shape=(idx.size, gain.size))


def check_x0(x0, n: int) -> np.ndarray:
    if x0 is None:
        return np.zeros(n)
    x0 = np.asarray(x0, dtype=float)
    if x0.shape != (n,):
        raise DesignError(f"x0 has shape {x0.shape}, the problem needs ({n},)")
    if not np.isfinite(x0).all():
        raise DesignError("x0 contains NaN or inf")
    return x0


# ngspice 39 takes `.options seed=N` only for 1 <= N <= 2**31 - 1: it skips 0 and anything larger
# with a mere warning (so the run is silently NOT reproducible) and reads seed=1e+17 as 1.
NGSPICE_SEED_MAX = 2**31 - 1


def ngspice_seed(seed: int) -> int:
    """The ngspice seed for a user seed >= 0: itself for 1 .. 2**31-2, otherwise folded into
    [1, 2**31-1] (0 -> 2**31-1), so every non-negative seed gives a reproducible run."""
    return seed % NGSPICE_SEED_MAX or NGSPICE_SEED_MAX


def check_seed(seed) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise DesignError(f"seed must be a non-negative integer, got {seed!r}")
    return None if seed is None else int(seed)


def finish_transient(
    nl: Netlist,
    design: Design,
    saves,
    prints,
    t: float,
    points: int,
    seed,
    record: BuildRecord,
    fastest_rate: float = 0.0,
) -> None:
    """Seed, tolerances, saved nodes and the .tran line shared by every topology. t is in problem
    tau: the circuit runs it record.scale times longer. design.dt_max stays in the circuit's tau,
    where the scale has brought the rates near 1 (measured: a step of 0.01 problem tau on a
    factored system with lam = 200 decayed its slowest mode twice too fast).

    With a noise table the step cap is at most one knot, so that ngspice's time points form a grid
    whose step divides the hold (circuits/noise_table.py).

    fastest_rate: the circuit's fastest rate (per circuit tau). Where a step of dt_max is long
    against it (rate * dt_max > 1: an ill-conditioned system), the trapezoidal rule's amplification
    (1 - r h/2)/(1 + r h/2) -> -1 leaves the fast modes ringing (measured: a 6x6 factored system of
    condition 1e4 stuck near 1e-6 from the direct solve); ngspice's gear (BDF2) damps them."""
    seed = check_seed(seed)
    if seed is not None and record.noise_mode == "held":
        # Only TRRANDOM reads ngspice's seed; a noise table carries its own, and a netlist without
        # the option stays the same from run to run (a session then re-runs it without re-loading).
        nl.option("seed", ngspice_seed(seed))
    # Linear circuit: Newton converges in one step, so the steady state is exact to the LU solve
    # whatever reltol is. reltol = 1e-3 (ngspice's default) keeps each noise hold interval at ~6
    # time points instead of ~19 at 1e-6; dt_max bounds the transient error. With a noise table the
    # step is capped at one knot anyway (trapezoidal error ~(lam h)^2/12 <= 4e-5 at the design's
    # hold), and reltol = 0.05 keeps ngspice's truncation-error control (which XSPICE tightens by
    # forcing trtol = 1) from cutting steps at every kink of the interpolated noise: on factored
    # N = 100, m = 16, 1.02-1.04 points per hold at 0.03-0.1, 1.7 at 0.01, 4.5 at 1e-3.
    nl.option("reltol", 0.05 if record.noise_mode == "table" else 1e-3)
    # A scale below the preferred one (circuits/scaling.Scale) runs the circuit faster: its step
    # cap shrinks by record.step, so that ngspice takes the steps per problem tau it would there.
    step_cap = design.dt_max * record.step
    if fastest_rate * step_cap > 1.0:
        nl.option("method", "gear")
    nl.option("abstol", 1e-15)
    nl.option("vntol", 1e-9)
    nl.save(saves)
    nl.print_tran(prints)  # so that the netlist also runs on its own in `ngspice -b FILE.cir`
    tau = design.tau * record.scale
    dt_max = step_cap if record.noise_mode != "table" else min(step_cap, record.noise_hold_tau)
    nl.transient(t * tau / points, t * tau, dt_max * design.tau, uic=True)
