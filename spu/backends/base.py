"""The contract every SPU backend fulfils, and the object the device asks about it.

A backend is a module spu/backends/<name>.py with a function

    run(problem, *, t, x0, kappa0, seed, times, options) -> BackendRun

and a module-level ``BACKEND``: an instance of a Backend subclass that names it, sets its flags and
overrides the hooks below it needs (spu/backends/__init__.py finds it by name).

* ``problem``: a validated DenseProblem / FactoredProblem / GGNProblem (spu.core.problems).
* ``t``: analog time in units of tau (>= 0).  ``x0``: start state (float64, length n).
* ``kappa0``: noise level; the dynamics are dx = -(A x - b) ds + sqrt(2 kappa0) dW with s = time/tau,
  so the stationary law is N(A^-1 b, kappa0 A^-1).
* ``seed``: int or None. Same seed -> same noisy run.
* ``times``: None (final state only) or a 1-D increasing array of times in tau, 0 <= times <= t,
  at which the trajectory is recorded.
* ``options``: backend-specific dict (e.g. Euler step, ngspice topology/design/timeout); the names a
  backend reads are its ``options``.

A backend whose dynamics are not first order with rates eig(A) overrides ``settle_time``, the time
(tau) its slowest mode takes to decay to tol; SPU.settling_time (and t = "auto") uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.spectral import settling_time


@dataclass
class BackendRun:
    x: np.ndarray
    times: np.ndarray | None = None
    trajectory: np.ndarray | None = None  # shape (len(times), n)
    netlist_path: str | None = None
    report: dict | None = None
    # Resistors the built circuit programs for A (circuit backends); None: the timing model
    # counts them from the problem's form (spu/timing.resistor_count).
    programmed_resistors: int | None = None
    extra: dict = field(default_factory=dict)


class Backend:
    """What the device, the sampler, training and the CLI ask of a backend instead of its name."""

    name: str = ""
    exact = False  # transitions without time-stepping error: t = inf is a valid run
    circuit = False  # models a built circuit: its options carry the SPU's design and topology
    stateful = False  # keeps something between runs: its options carry the SPU's backend_state
    options: frozenset[str] = frozenset()  # the option names its run() reads

    def run(self, problem, *, t, x0, kappa0, seed, times, options) -> BackendRun:
        raise NotImplementedError

    def settle_time(self, problem, tol: float, options: dict) -> float:
        """Time (problem tau) for the slowest mode to decay to tol: first-order rates eig(A)."""
        return settling_time(problem.eig_extremes()[0], tol)

    def problem_form(self, topology: str | None) -> str:
        """ "ggn" or "factored": the form it prefers to be given (it works from A = lam I + U U^T)."""
        return "factored"

    def oscillator(self, topology: str | None) -> bool:
        """Whether it runs the coupled-oscillator dynamics (spu/core/underdamped.py) on this topology."""
        return False

    def close(self, state: dict) -> None:
        """Release what it keeps in an SPU's backend_state (nothing, unless stateful)."""

    def check_design(self, design):
        """The design an SPU keeps: as given (None too); without a circuit only its tau is read."""
        return design

    def check_topology(self, topology: str | None) -> None:
        """Without a circuit a topology only picks what the timing model counts; a name must still
        be one the circuit layer builds, so it is checked there (and only when one is given)."""
        if topology is not None:
            from .circuit import check_topology

            check_topology(topology)

    def timing_layout(self, topology: str) -> str:
        """The array layout the timing model counts for a named topology (only the circuit layer
        knows it; asked only when a topology is named, so a plain numeric run never loads it)."""
        from .circuit import timing_layout

        return timing_layout(topology)


class CircuitBackend(Backend):
    """A backend that models a built circuit (spu/backends/circuit.py is its way into circuits/)."""

    circuit = True

    def check_design(self, design):
        """The checked circuits.Design (default Design()); its tau times the runs."""
        from .circuit import checked_design

        return checked_design(design)

    def check_topology(self, topology: str | None) -> None:
        """Nothing here: building the circuit checks the topology, with the design it needs."""

    def oscillator(self, topology: str | None) -> bool:
        """A second-order topology builds oscillator cells (a backend that cannot build it says so
        when it runs)."""
        from .circuit import second_order

        return second_order(topology)
