"""Thermodynamic linear algebra on the SPU: solve by time-averaging, invert by sample covariance.

    res = sample(SPU("ngspice", topology="oscillator", kappa0=0.1, seed=1), problem, samples=2000)
    res.mean      # ~ A^-1 b          (solve: time average of the state)
    res.inverse   # ~ A^-1            (inverse: sample covariance / kappa0)
    res.ess       # effective sample size per coordinate (K / integrated autocorrelation time)

One run of the device: after a burn-in it records K states `interval` tau apart (the ngspice
backend reads them off its raw file by interpolation). Works with every backend and topology:
RC cells (stationary law N(A^-1 b, kappa0 A^-1)), the oscillator with resistive coupling (the
same law for the positions) and with capacitive coupling (node voltages N(0, kappa0 A^-1)).

Errors. For stationary Gaussian samples with mode autocovariances c_k(h) (spu.core.underdamped.sampling_theory
computes them exactly for all three dynamics),
    Var(mean_k) = (1/K^2) sum_{a,b} c_k(|a-b| dt),     E||C_hat - C||_F^2 = sum_{k,l} (1 + delta_kl) S_kl,
    S_kl = (1/K^2) sum_{a,b} c_k(|a-b| dt) c_l(|a-b| dt).
For K dt much longer than the correlation time both fall as 1/(K dt) (the total analog time), and
for dt much longer than it as 1/K; the crossover is the integrated autocorrelation time. The
estimated ESS (Sokal's windowed integrated autocorrelation time) tells a user without the theory
how many independent samples a run was worth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .backends.direct import solve as direct_solve
from .core.errors import ProblemError
from .core.underdamped import OscillatorParams, integrated_autocorr_time, mode_drift, sampling_theory
from .limits import Limits

# Default burn-in: the slowest mode decays by this factor (from x0 to the stationary mean).
BURN_DECAY = 1e-4
# Copies of the K x (n + 1) samples and times held at the peak: the trajectory as recorded and
# stacked, the covariance's centred copy, the autocorrelation FFTs (measured: 0.82 GB above the
# interpreter for K = 2e6, n = 4 on backend ou, 10 copies).
SAMPLE_COPIES = 12


@dataclass
class SampleResult:
    samples: np.ndarray  # (K, n) recorded states
    times: np.ndarray  # (K,) in tau
    kappa0: float
    mean: np.ndarray  # solve: time average of the state
    cov: np.ndarray  # sample covariance (ddof = 1)
    inverse: np.ndarray | None  # cov / kappa0 (None without noise)
    iat: np.ndarray  # integrated autocorrelation time of each coordinate, in samples
    ess: np.ndarray  # K / iat
    interval: float
    burn_in: float
    dynamics: str  # "rc" | "oscillator-resistive" | "oscillator-capacitive"
    wall_time_s: float = 0.0
    report: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self, with_samples: bool = False) -> dict:
        out = {
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "inverse": None if self.inverse is None else self.inverse.tolist(),
            "samples": int(self.samples.shape[0]),
            "interval_tau": self.interval,
            "burn_in_tau": self.burn_in,
            "kappa0": self.kappa0,
            "iat_samples": self.iat.tolist(),
            "ess": self.ess.tolist(),
            "dynamics": self.dynamics,
            "wall_time_s": self.wall_time_s,
            **self.extra,
        }
        if with_samples:
            out["states"] = self.samples.tolist()
            out["times_tau"] = self.times.tolist()
        return out


def dynamics_of(spu) -> tuple[str, OscillatorParams | None]:
    """Which stationary dynamics an SPU runs: ("rc", None) or ("oscillator-<coupling>", params)."""
    if spu.backend_object.oscillator(spu.topology):
        from .backends.langevin import params_from_options

        params = params_from_options(spu.options)
        return f"oscillator-{params.coupling}", params
    return "rc", None


def slowest_rate(problem, params: OscillatorParams | None) -> float:
    """Slowest decay rate (per tau) of the mean dynamics: lambda_min (RC) or of the slowest oscillator mode."""
    lo, hi = problem.eig_extremes()
    if params is None:
        return lo
    gamma = params.resolve_gamma(lo, hi)
    eigs = np.array([lo, hi])
    m, w, g = params.modes(eigs, gamma)
    return float((-np.linalg.eigvals(mode_drift(m, w, g)).real.max(axis=1)).min())


def default_interval(problem, params: OscillatorParams | None) -> float:
    """1 / (slowest decay rate): successive samples of the slowest mode correlate by about e^-1."""
    return 1.0 / slowest_rate(problem, params)


def default_burn_in(problem, params: OscillatorParams | None) -> float:
    return math.log(1.0 / BURN_DECAY) / slowest_rate(problem, params)


def sample(
    spu,
    problem,
    *,
    samples: int,
    interval: float | None = None,
    burn_in: float | None = None,
    x0=None,
    seed: int | None = None,
) -> SampleResult:
    """Run the SPU once and record `samples` states `interval` tau apart after `burn_in` tau."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
        raise ProblemError(f"samples must be an integer >= 2, got {samples!r}")
    (spu.options.get("limits") or Limits()).check_memory(
        f"{samples} samples of n = {problem.n} (with the {SAMPLE_COPIES} copies the statistics make)",
        float(samples) * (problem.n + 1) * 8 * SAMPLE_COPIES,
    )
    dyn, params = dynamics_of(spu)
    if interval is None:
        interval = default_interval(problem, params)
    if burn_in is None:
        burn_in = default_burn_in(problem, params)
    for name, v, low in (("interval", interval, 0.0), ("burn_in", burn_in, -1.0)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > low):
            raise ProblemError(f"{name} must be a finite number {'> 0' if low == 0 else '>= 0'} (tau), got {v!r}")
    times = burn_in + interval * np.arange(int(samples))
    t_end = float(times[-1])
    if t_end <= 0:
        raise ProblemError("the run has zero length: give burn_in > 0 or more samples")
    res = spu.run(problem, t=t_end, x0=x0, times=times, seed=seed)
    X = np.asarray(res.trajectory, float)
    kappa = spu.kappa0
    iat = integrated_autocorr_time(X)
    cov = np.atleast_2d(np.cov(X.T, ddof=1))
    extra = {"backend": res.backend, "topology": res.topology, "t_tau": t_end}
    if params is not None:
        lo, hi = problem.eig_extremes()
        extra["gamma"] = params.resolve_gamma(lo, hi)
    return SampleResult(
        samples=X,
        times=times,
        kappa0=kappa,
        mean=X.mean(axis=0),
        cov=cov,
        inverse=cov / kappa if kappa > 0 else None,
        iat=iat,
        ess=X.shape[0] / iat,
        interval=float(interval),
        burn_in=float(burn_in),
        dynamics=dyn,
        wall_time_s=res.wall_time_s,
        report=res.report,
        extra=extra,
    )


def theory(problem, dynamics_params: OscillatorParams | None, kappa: float, samples: int, interval: float) -> dict:
    """Exact sampling errors (spu.core.underdamped.sampling_theory) with relative summaries:
    mean_rel = sqrt(E||mean - mu||^2) / ||A^-1 b||, inverse_rel = sqrt(E||C_hat - C||_F^2) / ||kappa A^-1||_F."""
    th = sampling_theory(problem, dynamics_params, kappa, samples, interval)
    mult = problem.spectrum().mult
    cov_norm = math.sqrt(float(np.sum(mult * th["mode_var"] ** 2)))
    th["inverse_rel"] = math.sqrt(th["cov_err2"]) / cov_norm
    x = direct_solve(problem, problem.b)
    th["mean_rel"] = math.sqrt(th["mean_err2"]) / max(float(np.linalg.norm(x)), 1e-300)
    return th
