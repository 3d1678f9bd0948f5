"""The SPU: run a linear system on a backend for analog time t and return the state.

    spu = SPU("ngspice", topology="crossbar", kappa0=0.0)
    res = spu.run(GGNProblem(J, H, lam, b), t=50.0, x0=x_prev)     # t in units of tau
    res.x, res.analog_time_s, res.device_time_s, res.report

Backends (spu/backends/, found by name): "ngspice" (circuit level), "asbuilt" (the realised circuit
without ngspice), "ou" (exact OU transition), "euler" (Euler-Maruyama), "direct" (A^-1 b),
"langevin" (the coupled oscillators without a circuit). Every backend gets the same validated
problem and the same noise convention: dx = -(A x - b) ds + sqrt(2 kappa0) dW, s = time / tau.
The device itself never needs the circuit layer: only a circuit backend makes and checks a design.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .backends import NAMES, either, names_where
from .backends import get as get_backend
from .core.errors import ProblemError
from .core.problems import Problem, as_finite_array
from .core.spectral import MODE_DECAY_TOL
from .timing import TimingModel, programmed_resistors

BACKENDS = NAMES  # what `from spu import BACKENDS` gives


def _check_settle_tol(tol) -> None:
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ProblemError(f"settling tolerance must be in (0, 1), got {tol!r}")


@dataclass
class SPUResult:
    x: np.ndarray
    backend: str
    topology: str | None
    t: float  # analog time in tau of the problem
    analog_time_s: float  # physical: t * scale * tau (a scaled circuit runs scale times longer)
    wall_time_s: float
    device_time_s: float  # modelled time on the physical device (spu.timing)
    device_time_breakdown: dict
    times: np.ndarray | None = None
    trajectory: np.ndarray | None = None
    netlist_path: str | None = None
    report: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "x": self.x.tolist(),
            "backend": self.backend,
            "topology": self.topology,
            "t_tau": self.t,
            "analog_time_s": self.analog_time_s,
            "wall_time_s": self.wall_time_s,
            "device_time_s": self.device_time_s,
            "device_time_breakdown": self.device_time_breakdown,
            "netlist_path": self.netlist_path,
        }
        if self.times is not None:
            out["times_tau"] = self.times.tolist()
            out["trajectory"] = self.trajectory.tolist()
        if self.report is not None:
            out["report"] = self.report
        return out


def _resistors_for(problem, topology: str | None, backend) -> int:
    """What the timing model programs where the backend counted nothing (no circuit, or one
    without programmed arrays): the array layout of the named topology, which only the circuit
    bridge can look up (through the backend, which checked the name), else the problem's own form's."""
    layout = None if topology is None else backend.timing_layout(topology)
    return programmed_resistors(problem, layout)


class SPU:
    """A stochastic processing unit on one backend.

    kappa0: noise level. seed: base seed; run k of this SPU uses a seed derived from (seed, k), so
    repeated solves get fresh noise yet a whole sequence is reproducible. Pass seed= to run() to
    pin one run. options go to the backend (see each backend's docstring).

    design: the circuit design (circuits.Design). A circuit backend defaults and checks it; the
    others keep it only for its tau. tau (seconds) comes from the design when there is one, else
    from the timing model (whose default, 1 us, is the default design's R0 C).

    gain_stage: the host hands the device b / beta and x0 / beta with beta = max|b|, and multiplies
    what it reads by beta (a digital gain stage before the DACs and after the ADCs). Exact for the
    linear device; a real chip then works at the same signal level whatever |b| is, so its absolute
    errors (op-amp offsets and bias, converter offsets and LSBs) stay the same fraction of the
    signal while a training gradient shrinks, instead of growing against it. The device's kappa0
    acts on the staged problem: in units of x its noise is beta^2 kappa0.

    chop: every solve is two runs of the same chip, one with b from x0 and one with -b from -x0 (its
    own noise seed), and the answer is half their difference, as a chopper-stabilised amplifier
    does: the trajectory the constant errors at the cells' inputs put in (op-amp offsets and bias,
    DAC offsets, the even part of the DACs' INL, ADC offsets) is the same in both and cancels,
    exactly for the linear circuit (not where a swing or slew limit is reached). Both runs use the
    same DAC resistors (max|b| is the same). It costs a second run (counted in the device time);
    the noise variance of the answer halves."""

    def __init__(
        self,
        backend: str = "ou",
        *,
        topology: str | None = None,
        design=None,
        kappa0: float = 0.0,
        seed: int | None = None,
        timing: TimingModel | None = None,
        gain_stage: bool = False,
        chop: bool = False,
        **options,
    ):
        self.backend = backend  # the name, as given
        self.gain_stage = bool(gain_stage)
        self.chop = bool(chop)
        self.backend_object = get_backend(backend)
        self.backend_object.check_topology(topology)
        self.topology = topology
        self.design = self.backend_object.check_design(design)
        self.kappa0 = _check_kappa(kappa0)
        self.seed = seed
        self.tau = self.design.tau if self.design is not None else (timing or TimingModel()).tau
        self.timing = timing or TimingModel(tau=self.tau)
        self.options = options
        # Runs so far: run k draws its noise seed from (seed, k). Public and settable so that a
        # resumed training run continues the same seed sequence.
        self.runs = 0
        # What the backend keeps between runs (ngspice: its long-lived session). Public so that
        # several SPUs in one worker (a sweep's points) can share one: assign the same dict.
        self.backend_state: dict = {}

    def close(self) -> None:
        """Release what the backend holds between runs (ngspice: the session's child process).
        The SPU stays usable; its next run starts a fresh one."""
        self.backend_object.close(self.backend_state)

    @property
    def problem_form(self) -> str:
        """ "ggn" or "factored": the problem form this device prefers to be given (a crossbar
        circuit builds J, H and J^T; everything else works from A = lam I + U U^T)."""
        return self.backend_object.problem_form(self.topology)

    def settling_time(self, problem, tol: float = MODE_DECAY_TOL) -> float:
        """Time (problem tau) for the slowest mode of what this device runs to decay to tol: the
        component report's settling estimate, with the backend's own rate where it has one."""
        _check_settle_tol(tol)
        return self.backend_object.settle_time(problem, tol, self._options())

    def _options(self) -> dict:
        """The backend's options for a run: the SPU's, with what the SPU keeps for it."""
        options = dict(self.options)
        if self.backend_object.circuit:
            options.update(design=self.design, topology=self.topology)
        if self.backend_object.stateful:
            options.update(state=self.backend_state)
        return options

    def _next_seed(self, seed):
        if seed is not None:
            return int(seed)
        if self.seed is None:
            return None
        # ngspice's seed option is a C int: keep it in [0, 2^31).
        s = int(np.random.SeedSequence([int(self.seed), self.runs]).generate_state(1)[0]) % (2**31 - 1)
        return s

    def run(
        self,
        problem,
        t,
        x0=None,
        *,
        times=None,
        seed: int | None = None,
        kappa0: float | None = None,
        settle_tol: float = MODE_DECAY_TOL,
    ) -> SPUResult:
        """t: analog time in tau of the problem, or "auto": until the slowest mode has decayed
        to settle_tol (SPU.settling_time)."""
        if not isinstance(problem, Problem):
            raise ProblemError(f"expected a DenseProblem, FactoredProblem or GGNProblem, got {type(problem).__name__}")
        _check_settle_tol(settle_tol)  # also where t is given: a tolerance nothing reads is a mistake
        if isinstance(t, str) and t == "auto":
            t = self.settling_time(problem, settle_tol)
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise ProblemError(f"analog time t must be a number (in tau), got {t!r}") from None
        if math.isnan(t) or t < 0:
            raise ProblemError(f"analog time t must be >= 0 (in tau), got {t}")
        if math.isinf(t) and not self.backend_object.exact:
            exact = either(names_where(lambda b: b.exact))
            raise ProblemError(f"t = inf is only possible with the {exact} (exact) backend, not {self.backend}")
        if x0 is not None:
            x0 = as_finite_array("x0", x0, 1)  # also rejects complex and text (no silent casts)
            if x0.shape != (problem.n,):
                raise ProblemError(f"x0 has shape {x0.shape} but the problem has n = {problem.n}")
        else:
            x0 = np.zeros(problem.n)
        if times is not None:
            times = np.asarray(times, dtype=float)
            if times.ndim != 1 or (times.size and (times[0] < 0 or times[-1] > t or np.any(np.diff(times) < 0))):
                raise ProblemError(f"times must be increasing and within [0, t={t}]")
        kappa = self.kappa0 if kappa0 is None else _check_kappa(kappa0)
        seed = self._next_seed(seed)
        self.runs += 1
        options = self._options()
        start = time.perf_counter()
        beta = float(np.abs(problem.b).max()) if self.gain_stage and problem.n else 0.0
        if beta > 0:
            problem, x0 = problem.with_b(problem.b / beta), x0 / beta
        out = self.backend_object.run(problem, t=t, x0=x0, kappa0=kappa, seed=seed, times=times, options=options)
        if self.chop:
            other = self.backend_object.run(
                problem.with_b(-problem.b),
                t=t,
                x0=-x0,
                kappa0=kappa,
                seed=None if seed is None else (seed + 1) % (2**31 - 1),
                times=times,
                options=options,
            )
            out.x = 0.5 * (out.x - other.x)
            out.trajectory = None if out.trajectory is None else 0.5 * (out.trajectory - other.trajectory)
        if beta > 0:
            out.x = out.x * beta
            out.trajectory = None if out.trajectory is None else out.trajectory * beta
        wall = time.perf_counter() - start
        topology = out.extra.get("topology", self.topology)
        # Count what the built circuit programs where one exists (it skips H's zero blocks).
        resistors = out.programmed_resistors
        if resistors is None:
            resistors = _resistors_for(problem, topology, self.backend_object)
        scale = float(out.extra.get("scale", 1.0))
        breakdown = self.timing.device_time(problem.n, resistors, t * scale if math.isfinite(t) else 0.0)
        if self.chop:  # the second run: programmed and run like the first
            breakdown = {k: 2 * v for k, v in breakdown.items()}
        return SPUResult(
            x=out.x,
            backend=self.backend,
            topology=topology,
            t=t,
            analog_time_s=t * scale * self.tau,
            wall_time_s=wall,
            device_time_s=breakdown["total"],
            device_time_breakdown=breakdown,
            times=out.times,
            trajectory=out.trajectory,
            netlist_path=out.netlist_path,
            report=out.report,
            extra=out.extra,
        )


def _check_kappa(kappa0) -> float:
    try:
        k = float(kappa0)
    except (TypeError, ValueError):
        raise ProblemError(f"kappa0 must be a number, got {kappa0!r}") from None
    if not math.isfinite(k) or k < 0:
        raise ProblemError(f"kappa0 must be finite and >= 0, got {kappa0}")
    return k
