"""What every hardware sweep kind provides, and the parts that several kinds share.

A kind is a ``SweepKind`` subclass in its own module of this package, listed once in
``analysis/sweep_kinds/__init__.py``. The rest of the sweep code (``sweep_spec``, ``sweep_point``,
``sweeps``, ``cmd_sweep``) asks the kind object and never looks at its name."""

from __future__ import annotations

import math
from dataclasses import dataclass

from spu.core.spectral import MODE_DECAY_TOL, settling_time

from ..ranges import parse_range, round12
from ..sweep_errors import SweepOptionError
from ..sweep_point import growing, settle_time


def circuit_backend(name: str) -> bool:
    """Whether the backend simulates a built circuit: it takes a topology, the circuit's options and
    the circuit build check; the others (ou) run the ideal process."""
    from spu import backends

    return backends.get(name).circuit


# Settling band of tolerance/opamp points, relative to the final state (a trajectory tolerance,
# not spu.core.spectral.MODE_DECAY_TOL, which sets the default t).
TRAJECTORY_SETTLE_TOL = 1e-3

STATUS = (
    "status",
    "ok; unsettled (still moving in the last 10% of t) or unstable (and its error growing; "
    "tolerance/opamp only); diverged (non-finite voltages); failed: ErrorClass (e.g. a resistor "
    "out of range)",
)
REL = ("rel_error", "||x(t) - x*|| / ||x*||, x* = A^-1 b of the ideal problem")
SETTLE = (
    "settle_tau",
    "time (tau) after which ||x(s) - x(t)|| <= settle_tol * ||x(t)|| for all later s; inf: not settled before 0.9 t",
)
POINT = ("point", "stable point id (index in the grid)")


@dataclass(frozen=True)
class Summary:
    """KIND_summary.csv: one row per value of `keys`, statistics over the repetitions, and the
    mean of each column in `extra`."""

    keys: tuple[str, ...]
    extra: tuple[str, ...]


class SweepKind:
    """One kind of hardware sweep: its options, its grid, how one point runs and what it writes."""

    name: str
    about: str  # one line: the subcommand's help and description
    columns: tuple[tuple[str, str], ...]  # KIND.csv columns and their descriptions, in order
    params: tuple[str, ...]  # the grid's columns, in the order of the grid product
    grid_options: frozenset[str]  # build_spec options of this kind (t and settle_tol aside)
    defaults: dict[str, tuple]  # option -> (full, quick) default; "seeds" among them
    summary: Summary | None = None  # statistics over the repetitions, if it has any
    backends: tuple[str, ...] = ("ngspice",)  # the first is the default
    random = True  # False: no randomness, so one repetition only
    settles = False  # measures settling: settle_tol option, settle_tau column
    report = False  # reads the as-built error from the component report
    empty_hint = ""  # why a grid may have no points, for the error message

    @property
    def options(self) -> frozenset[str]:
        return self.grid_options | {"t"} | ({"settle_tol"} if self.settles else set())

    def default(self, given: dict, option: str, quick: bool):
        return given.get(option, self.defaults[option][int(quick)])

    # -- command line ------------------------------------------------------------------------------
    def backends_help(self) -> str:
        first, *others = self.backends
        return f"{first} (default) or {' or '.join(others)}" if others else f"{first} only"

    def add_arguments(self, group) -> None:
        self.add_grid_arguments(group)
        group.add_argument(
            "--t", type=float, help="analog time of every solve in tau (default ln(1e6)/lambda_min: settled)"
        )
        if self.settles:
            group.add_argument(
                "--settle-tol", type=float, help="settling band, relative to the final state (default 1e-3)"
            )

    def add_grid_arguments(self, group) -> None:
        raise NotImplementedError

    # -- specification -----------------------------------------------------------------------------
    def check_backend(self, backend: str) -> None:
        if backend not in self.backends:
            raise SweepOptionError(
                f"sweep {self.name} runs on backend {' or '.join(self.backends)}, not "
                f"{backend!r}" + ("" if len(self.backends) > 1 else " (the circuit is what it sweeps)")
            )

    def check_seeds(self, seeds: int) -> None:
        if not self.random and seeds != 1:
            raise SweepOptionError(f"--seeds does not apply to sweep {self.name}: it has no randomness (use 1)")

    def resolve(self, given: dict, quick: bool, lam_min: float, backend: str) -> dict:
        """The kind's entries of the spec: one analog time, its grid, and the settling band."""
        t = parse_range("t", given.get("t", round12(settling_time(lam_min, MODE_DECAY_TOL))), lo=0, lo_open=True)
        if len(t) != 1:
            raise SweepOptionError(f"--t takes one analog time for sweep {self.name} (the time sweep takes a range)")
        out = {"t_tau": t[0], "grid": self.grid(given, quick, backend)}
        if self.settles:
            st = float(given.get("settle_tol", TRAJECTORY_SETTLE_TOL))
            if not (0 < st < 1):
                raise SweepOptionError(f"--settle-tol must be in (0, 1), got {st:g}")
            out["settle_tol"] = st
        return out

    def grid(self, given: dict, quick: bool, backend: str) -> dict[str, list]:
        raise NotImplementedError

    def longest_t(self, spec: dict) -> float:
        """The longest analog time (tau) one of its points runs: the one time of the spec."""
        return spec["t_tau"]

    def points(self, spec: dict, seeds: list[int]) -> list[dict]:
        """The grid's points in id order (without their ids); seeds[r]: the seed of repetition r."""
        raise NotImplementedError

    # -- one point (in worker processes) -----------------------------------------------------------
    def design(self, pt: dict):
        from circuits.design import Design

        return Design()

    def results(self, row: dict, res, ctx, spec: dict, t: float, kappa0: float) -> None:
        """Fill the row's result columns past rel_error and status; res is None if the run failed."""

    # -- output ------------------------------------------------------------------------------------
    def plot(self, rows: list[dict[str, str]], spec: dict, path: str) -> None:
        raise NotImplementedError


def asbuilt_error(res) -> float:
    """Steady-state error of the as-built circuit, from the backend's component report."""
    return res.report["quantisation"]["steady_state_rel_error"] if res is not None and res.report else math.nan


def settling(row: dict, res, ctx, spec: dict) -> None:
    """settle_tau of the run's trajectory; an unsettled run is marked unstable if its error grows."""
    row["settle_tau"] = math.nan
    if res is not None:
        times, X = res.extra["raw_times_tau"], res.extra["raw_states"]
        row["settle_tau"] = settle_time(times, X, spec["settle_tol"])
        if math.isinf(row["settle_tau"]):
            row["status"] = "unstable" if growing(times, X - ctx.x_star) else "unsettled"
