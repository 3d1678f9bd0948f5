"""Second-order dynamics of the coupled-oscillator SPU: the underdamped Langevin system.

Time s is in units of tau = R0*C (as for the RC cells), q are the positions, v = dq/ds the
velocities:

    dq = v ds
    M dv = -(K q - f) ds - Gamma v ds + sqrt(2 kappa Gamma) dW            (*)

For symmetric positive definite M, K, Gamma the stationary law is exact and has no other
constants (fluctuation-dissipation: the force noise has intensity 2 kappa Gamma):

    q ~ N(K^-1 f, kappa K^-1),   v ~ N(0, kappa M^-1),   q and v independent.

A linear system A x = b (A SPD) is encoded in one of two ways, one per circuit realisation
(circuits/oscillator.py):

* ``coupling="resistive"`` -- the matrix is the STIFFNESS: K = A, f = b, M = m I, Gamma = gamma I.
      positions q ~ N(A^-1 b, kappa A^-1),  velocities v ~ N(0, (kappa/m) I).
  solve = time average of q; inverse = covariance of q / kappa.
* ``coupling="capacitive"`` -- the matrix is the MASS (the Maxwell capacitance matrix, Melanson et
  al. 2025): M = A, K = k I, Gamma = gamma I, f = 0.
      velocities (the node voltages) v ~ N(0, kappa A^-1),  positions (fluxes) q ~ N(0, (kappa/k) I).
  inverse = covariance of v / kappa; b cannot enter (the mean of v is 0 whatever the force).

Because M, K and Gamma are then functions of A, every eigenvector of A is an independent damped
oscillator m_k y'' = -w_k y - g_k y' + noise with (resistive) m_k = m, w_k = a_k, g_k = gamma or
(capacitive) m_k = a_k, w_k = k, g_k = gamma, where a_k are the eigenvalues of A. Its damping
ratio is zeta_k = g_k / (2 sqrt(m_k w_k)). ``zeta`` in OscillatorParams fixes the ratio of the
SLOWEST mode (smallest a_k resistive, largest a_k capacitive); zeta = 1 (critical damping of the
slowest mode, the default) makes every mode decay at least at rate sqrt(lambda_min/m), against
lambda_min for the RC cells: about sqrt(cond(A)) instead of cond(A) time constants when the
fastest mode is fixed (lambda_max/m = 1).

What is here:

* ``ExactLangevin``: exact transitions (mean and covariance) per mode, from one symmetric
  decomposition of A (``eigh``, O(N^3)) or, for factored / GGN problems A = lam I + U U^T, from the
  m x m eigenproblem of U^T U (the N x N matrix is never formed), as in spu/backends/ou.py. The 2x2
  transition of each mode comes from a batched matrix exponential; its covariance from Van Loan's
  block exponential for short steps and Sigma_inf - Phi Sigma_inf Phi^T for long ones.
* ``DenseLangevin``: the same for general (also non-symmetric, e.g. as-built with tolerances) M, K,
  Gamma and any force-noise covariance, from the 2N x 2N drift: exact mean by expm, transition
  covariance by Van Loan, stationary covariance by the Lyapunov equation. O(N^3), for small N:
  it checks the ngspice runs.
* ``BAOAB``: a matrix-free integrator (one A v product per step, resistive coupling). For a
  quadratic potential its stationary law of q is EXACT for any stable step h < 2 sqrt(m/lambda_max)
  (Leimkuhler & Matthews 2013); the velocities carry an O(h^2) bias, and the transients an O(h^2)
  error.
* Theory for sampling: position autocovariances of each mode in closed form, the exact variance of
  sample means and sample covariances from K samples at interval dt, and continuous-time limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import linalg

from ..errors import ProblemError
from ..spectral import MODE_DECAY_TOL, DenseSpectrum, settling_time, spectrum
from ..steps import record_map, step_points

COUPLINGS = ("resistive", "capacitive")
DIVERGED = 1e100  # |q| beyond this: the integrator is unstable


# ----------------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class OscillatorParams:
    """Oscillator-cell parameters, in units of the RC cell (R0, C, tau = R0 C).

    mass       m: inductance L = m R0^2 C (resistive coupling: sqrt(L C) = sqrt(m) tau).
    gamma      damping gamma: series damping resistor R = gamma R0 (resistive coupling), parallel
               damping resistor R = R0 / gamma (capacitive coupling). Set gamma OR zeta.
    zeta       damping ratio of the slowest mode (default 1 when gamma is not given).
    coupling   "resistive" (matrix = stiffness, solves and inverts) or "capacitive" (matrix = mass /
               capacitance matrix, inverts only; Melanson et al.).
    stiffness  k of the capacitive coupling: grounded inductor L = R0^2 C / k.
    """

    mass: float = 1.0
    gamma: float | None = None
    zeta: float | None = None
    coupling: str = "resistive"
    stiffness: float = 1.0

    def check(self) -> "OscillatorParams":
        def pos(name, v):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ProblemError(f"oscillator {name} must be a finite number > 0, got {v!r}")

        pos("mass", self.mass)
        pos("stiffness", self.stiffness)
        if self.gamma is not None and self.zeta is not None:
            raise ProblemError("give the oscillator damping as gamma or as zeta, not both")
        if self.gamma is not None:
            pos("gamma", self.gamma)
        if self.zeta is not None:
            pos("zeta", self.zeta)
        if self.coupling not in COUPLINGS:
            raise ProblemError(f"oscillator coupling must be one of {', '.join(COUPLINGS)}, got {self.coupling!r}")
        return self

    @classmethod
    def make(cls, value=None, **overrides) -> "OscillatorParams":
        """From None, an OscillatorParams or a dict, with overrides (None values ignored)."""
        if value is None:
            p = cls()
        elif isinstance(value, OscillatorParams):
            p = value
        elif isinstance(value, dict):
            unknown = set(value) - {"mass", "gamma", "zeta", "coupling", "stiffness"}
            if unknown:
                raise ProblemError(f"unknown oscillator option(s): {', '.join(sorted(unknown))}")
            p = cls(**value)
        else:
            raise ProblemError(f"oscillator parameters must be an OscillatorParams or a dict, got {type(value).__name__}")
        over = {k: v for k, v in overrides.items() if v is not None}
        if "gamma" in over:
            p = replace(p, zeta=None)
        if "zeta" in over:
            p = replace(p, gamma=None)
        return replace(p, **over).check()

    def resolve_gamma(self, lam_min: float, lam_max: float) -> float:
        """The damping gamma (in tau units) for a matrix with eigenvalues in [lam_min, lam_max]."""
        if self.gamma is not None:
            return float(self.gamma)
        zeta = 1.0 if self.zeta is None else float(self.zeta)
        if self.coupling == "resistive":
            return 2.0 * zeta * math.sqrt(self.mass * lam_min)
        return 2.0 * zeta * math.sqrt(self.stiffness * lam_max)

    def modes(self, eigs: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(m_k, w_k, g_k) of the independent oscillator of each eigenvalue a_k of A."""
        eigs = np.asarray(eigs, dtype=float)
        one = np.ones_like(eigs)
        if self.coupling == "resistive":
            return self.mass * one, eigs.copy(), gamma * one
        return eigs.copy(), self.stiffness * one, gamma * one


def damping_ratios(m, w, g) -> np.ndarray:
    return np.asarray(g) / (2.0 * np.sqrt(np.asarray(m) * np.asarray(w)))


# ------------------------------------------------------------------------------ 2x2 mode algebra

def mode_drift(m, w, g) -> np.ndarray:
    """Drift matrices F_k (k, 2, 2) of d(y, u)/ds = F (y, u) for m y'' = -w y - g y'."""
    m, w, g = (np.atleast_1d(np.asarray(a, float)) for a in (m, w, g))
    F = np.zeros(m.shape + (2, 2))
    F[..., 0, 1] = 1.0
    F[..., 1, 0] = -w / m
    F[..., 1, 1] = -g / m
    return F


def mode_stationary(m, w, kappa) -> np.ndarray:
    """Stationary covariance (k, 2, 2) of each mode: diag(kappa/w, kappa/m)."""
    m, w = np.atleast_1d(np.asarray(m, float)), np.atleast_1d(np.asarray(w, float))
    S = np.zeros(m.shape + (2, 2))
    S[..., 0, 0] = kappa / w
    S[..., 1, 1] = kappa / m
    return S


def expm_batch(X: np.ndarray) -> np.ndarray:
    """exp of a batch of small square matrices (..., d, d): Taylor series of degree 16 after scaling
    by 2^-s to norm <= 1/2, then s squarings (truncation error < 0.5^17/17! ~ 1e-20). scipy's expm
    costs ~20 ms per matrix on this machine for 2x2 blocks; this is vectorised over the batch."""
    X = np.asarray(X, dtype=float)
    norm = np.abs(X).sum(axis=-2).max(axis=-1) if X.size else np.zeros(X.shape[:-2])
    s = int(max(0, math.ceil(math.log2(max(float(np.max(norm, initial=0.0)), 1e-300) / 0.5)))) if X.size else 0
    Y = X / 2.0**s
    eye = np.broadcast_to(np.eye(X.shape[-1]), X.shape)
    out = eye.copy()
    term = eye.copy()
    for k in range(1, 17):
        term = term @ Y / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def mode_transition(m, w, g, h: float, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact transition of every mode over time h: (Phi (k,2,2), transition covariance (k,2,2)).

    Short steps (h * rate <= 1) use Van Loan's block exponential, which has no cancellation as
    h -> 0 (the position variance is O(h^3)); long steps use Sigma_inf - Phi Sigma_inf Phi^T, which
    the Van Loan blocks would lose to exp(+rate h) growth."""
    m, w, g = (np.atleast_1d(np.asarray(a, float)) for a in (m, w, g))
    k = m.shape[0]
    S_inf = mode_stationary(m, w, kappa)
    if h == 0:
        return np.broadcast_to(np.eye(2), (k, 2, 2)).copy(), np.zeros((k, 2, 2))
    if not math.isfinite(h):
        return np.zeros((k, 2, 2)), S_inf
    F = mode_drift(m, w, g)
    Phi = expm_batch(F * h)
    S = S_inf - Phi @ S_inf @ np.swapaxes(Phi, -1, -2)
    rate = g / m + np.sqrt(w / m)
    short = rate * h <= 1.0
    if short.any():
        Fs = F[short]
        blk = np.zeros((Fs.shape[0], 4, 4))
        blk[:, :2, :2] = -Fs
        blk[:, 2:, 2:] = np.swapaxes(Fs, -1, -2)
        blk[:, 1, 3] = 2.0 * kappa * g[short] / m[short] ** 2   # Q = B B^T, noise on the velocity
        E = expm_batch(blk * h)
        Phi_s = np.swapaxes(E[:, 2:, 2:], -1, -2)
        S_s = Phi_s @ E[:, :2, 2:]
        S[short] = 0.5 * (S_s + np.swapaxes(S_s, -1, -2))
    return Phi, S


def chol2(S: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a batch of 2x2 PSD matrices (zero where degenerate)."""
    L = np.zeros_like(S)
    a = np.maximum(S[..., 0, 0], 0.0)
    l11 = np.sqrt(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        l21 = np.where(l11 > 0, S[..., 1, 0] / np.where(l11 > 0, l11, 1.0), 0.0)
    L[..., 0, 0] = l11
    L[..., 1, 0] = l21
    L[..., 1, 1] = np.sqrt(np.maximum(S[..., 1, 1] - l21**2, 0.0))
    return L


def position_acf(m, w, g, lags) -> np.ndarray:
    """Phi_qq(h) = corr(y(s + h), y(s)) of each mode at each lag, closed form: shape (k, len(lags)).

    Underdamped: e^{-a h} (cos(wd h) + a sin(wd h)/wd); overdamped: the same with cosh/sinh written
    without overflow; a = g/2m, wd^2 = w/m - a^2. The stationary autocovariance is (kappa/w) * this."""
    m, w, g = (np.atleast_1d(np.asarray(x, float))[:, None] for x in (m, w, g))
    h = np.atleast_1d(np.asarray(lags, float))[None, :]
    a = g / (2 * m)
    d = w / m - a**2
    out = np.empty(np.broadcast_shapes(a.shape, h.shape))
    under = np.broadcast_to(d > 0, out.shape)
    wd = np.sqrt(np.abs(d))
    wdh = wd * h
    # sin(x)/x -> 1 and sinh(x)/x -> 1 smoothly: use h * sinc-like terms.
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-a * h)
        u = e * (np.cos(wdh) + a * h * np.sinc(wdh / np.pi))
        # Overdamped: r1 = -a + b (slow), r2 = -a - b; e^{-ah} cosh(bh) = (e^{r1 h} + e^{r2 h}) / 2 and
        # e^{-ah} sinh(bh)/b = (e^{r1 h} - e^{r2 h}) / (2b), the latter via expm1 to keep b -> 0 exact.
        e1 = np.exp((-a + wd) * h)
        e2 = np.exp((-a - wd) * h)
        sinh_b = np.where(wdh > 1e-8, e2 * np.expm1(np.minimum(2 * wdh, 700)) / (2 * np.where(wd > 0, wd, 1)), e * h)
        o = 0.5 * (e1 + e2) + a * sinh_b
    out = np.where(under, u, o)
    return np.where(np.isfinite(out), out, 0.0)


# ------------------------------------------------------------------------------ exact propagator

class ExactLangevin:
    """Exact transitions of (*) for a problem A x = b under an encoding (OscillatorParams).

    State (q, v), both length N. ``step(q, v, h, rng)`` is one exact transition; ``q_eq`` is the
    stationary mean of q (A^-1 b resistive, 0 capacitive)."""

    def __init__(self, problem, params: OscillatorParams, kappa: float):
        self.params = params.check()
        self.kappa = float(kappa)
        self.spec = spectrum(problem)
        eigs = self.spec.eigs
        self.gamma = params.resolve_gamma(float(eigs.min()), float(eigs.max()))
        self.m, self.w, self.g = params.modes(eigs, self.gamma)
        if params.coupling == "capacitive":
            if np.any(problem.b != 0):
                raise ProblemError(
                    "capacitive coupling encodes A in the mass (capacitance) matrix: the force b only shifts "
                    "the fluxes and the node voltages have mean 0, so it cannot solve A x = b; pass b = 0 "
                    "(sampling / inverse) or use coupling='resistive'")
            self.q_eq = np.zeros(problem.n)
        else:
            X = problem.b[:, None]
            self.q_eq = self.spec.combine(X, self.spec.project(X), (1.0 / self.w)[None, :])
        self._cache: dict[float, tuple] = {}

    @property
    def zetas(self) -> np.ndarray:
        return damping_ratios(self.m, self.w, self.g)

    def _rates(self) -> np.ndarray:
        return -np.linalg.eigvals(mode_drift(self.m, self.w, self.g)).real.max(axis=1)

    def decay_rate(self) -> float:
        """Slowest decay rate (per tau) over the modes: minus the real part of each mode's slowest
        eigenvalue of its 2x2 drift."""
        return float(self._rates().min())

    def position_response(self, t) -> np.ndarray:
        """max over the modes within 1.5x of the slowest rate of |q_k(t)| for q_k(0) = 1 at rest,
        at each time in t (any other mode has decayed by e^{-0.5 r t} more by then)."""
        rates = self._rates()
        near = rates <= 1.5 * float(rates.min())
        F = np.unique(np.round(mode_drift(self.m[near], self.w[near], self.g[near]), 12), axis=0)
        t = np.atleast_1d(np.asarray(t, float))
        return np.abs(expm_batch(F[None] * t[:, None, None, None])[..., 0, 0]).max(axis=1)

    def settle_time(self, tol: float = MODE_DECAY_TOL) -> float:
        """Time (tau) after which every mode's position, displaced by 1 from rest, stays within tol.
        e^{-r t} alone is not enough here: a critically damped mode decays as (1 + r t) e^{-r t}
        (ln(1e6) / r underestimates it by ~20 %), an underdamped one with an envelope
        sqrt(1 + (r / omega)^2) e^{-r t}."""
        r = self.decay_rate()
        worst = self.position_response
        grid = np.linspace(0.0, 3.0 * settling_time(r, tol), 3001)
        above = np.flatnonzero(worst(grid) > tol)
        if above.size == 0:
            return 0.0
        lo, hi = grid[above[-1]], grid[min(above[-1] + 1, grid.size - 1)]
        for _ in range(50):  # bisection on the last crossing
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if worst(mid)[0] > tol else (lo, mid)
        return float(hi)

    def _trans(self, h: float):
        if h not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            Phi, S = mode_transition(self.m, self.w, self.g, h, self.kappa)
            self._cache[h] = (Phi, chol2(S))
        return self._cache[h]

    def step(self, q, v, h, rng):
        if h == 0:
            return q.copy(), v.copy()
        Phi, L = self._trans(float(h))
        d = q - self.q_eq
        n = q.shape[0]
        if self.kappa > 0:
            z = rng.standard_normal((n, 2))
            X = np.column_stack([d, v, z])
        else:
            X = np.column_stack([d, v])
        P = self.spec.project(X)
        T = X.shape[1]
        Fq = np.zeros((T, Phi.shape[0]))
        Fv = np.zeros((T, Phi.shape[0]))
        Fq[0], Fq[1] = Phi[:, 0, 0], Phi[:, 0, 1]
        Fv[0], Fv[1] = Phi[:, 1, 0], Phi[:, 1, 1]
        if self.kappa > 0:
            Fq[2] = L[:, 0, 0]
            Fv[2], Fv[3] = L[:, 1, 0], L[:, 1, 1]
        q_new = self.q_eq + self.spec.combine(X, P, Fq)
        v_new = self.spec.combine(X, P, Fv)
        return q_new, v_new

    def run(self, t, q0, v0, times, rng):
        """Advance from (q0, v0) to t, recording at `times`. Returns (q, v, Q_traj, V_traj)."""
        q, v, now = q0.copy(), v0.copy(), 0.0
        stops = [] if times is None else list(times)
        Qs, Vs = [], []
        for target in stops + [t]:
            dt = 0.0 if target == now else target - now
            q, v = self.step(q, v, dt, rng)
            now = target
            Qs.append(q)
            Vs.append(v)
        if times is None:
            return q, v, None, None
        return q, v, np.array(Qs[:-1]).reshape(len(stops), -1), np.array(Vs[:-1]).reshape(len(stops), -1)


# --------------------------------------------------------------------------- general dense system

class DenseLangevin:
    """Exact solution of M v' = -(K q - f) - G v + noise, q' = v, for general square M, K, G
    (non-symmetric allowed: as-built circuits with tolerances). noise_cov: covariance rate D of the
    force noise (n x n), default 2 kappa G (equilibrium). Small N only (works with 2N x 2N and
    4N x 4N exponentials)."""

    def __init__(self, M, K, G, f, kappa: float = 0.0, noise_cov=None):
        M, K, G = (np.atleast_2d(np.asarray(a, float)) for a in (M, K, G))
        n = K.shape[0]
        self.n = n
        Minv = np.linalg.inv(M)
        self.Minv = Minv
        self.F = np.block([[np.zeros((n, n)), np.eye(n)], [-Minv @ K, -Minv @ G]])
        D = 2.0 * kappa * G if noise_cov is None else np.asarray(noise_cov, float)
        self.D = 0.5 * (D + D.T)
        self.Qn = np.zeros((2 * n, 2 * n))
        self.Qn[n:, n:] = Minv @ self.D @ Minv.T
        self.q_eq = np.linalg.solve(K, np.asarray(f, float))
        self.z_eq = np.concatenate([self.q_eq, np.zeros(n)])
        ev = np.linalg.eigvals(self.F)
        if ev.real.max() >= 0:
            raise ProblemError(f"the second-order system is not stable: drift eigenvalue with real part {ev.real.max():.3g}")
        self.rate = float(np.abs(ev).max())

    def stationary_cov(self) -> np.ndarray:
        """Sigma with F Sigma + Sigma F^T + Q = 0 (2n x 2n, q block first)."""
        S = linalg.solve_continuous_lyapunov(self.F, -self.Qn)
        return 0.5 * (S + S.T)

    def transition(self, h: float):
        """(Phi, transition covariance) over time h."""
        n2 = 2 * self.n
        if h == 0:
            return np.eye(n2), np.zeros((n2, n2))
        if self.rate * h <= 1.0:
            blk = np.block([[-self.F, self.Qn], [np.zeros((n2, n2)), self.F.T]])
            E = expm_batch(blk * h)
            Phi = E[n2:, n2:].T
            S = Phi @ E[:n2, n2:]
        else:
            Phi = expm_batch(self.F * h)
            Sinf = self.stationary_cov()
            S = Sinf - Phi @ Sinf @ Phi.T
        return Phi, 0.5 * (S + S.T)

    def mean(self, times, q0, v0) -> tuple[np.ndarray, np.ndarray]:
        """Noiseless (mean) trajectory at `times` (any order): (Q (T, n), V (T, n))."""
        z0 = np.concatenate([q0, v0]) - self.z_eq
        ts = np.atleast_1d(np.asarray(times, float))
        out = np.array([expm_batch(self.F * t) @ z0 for t in ts]) + self.z_eq
        return out[:, :self.n], out[:, self.n:]

    def held_noise_cov(self, hold: float) -> np.ndarray:
        """Stationary covariance of (q, v) at the hold boundaries k*hold when the force noise is held
        constant over each interval (ngspice TRRANDOM: a value of variance D/hold held for `hold`).
        The exact discrete-time chain is z+ = Phi z + Psi xi, Psi = int_0^hold e^{F s} ds B, so the
        covariance solves the discrete Lyapunov equation Sigma = Phi Sigma Phi^T + Psi D Psi^T / hold."""
        n, n2 = self.n, 2 * self.n
        blk = np.zeros((2 * n2, 2 * n2))
        blk[:n2, :n2] = self.F
        blk[:n2, n2:] = np.eye(n2)
        E = expm_batch(blk * hold)
        Phi, Int = E[:n2, :n2], E[:n2, n2:]   # Int = int_0^hold e^{F s} ds
        Bm = np.zeros((n2, n))
        Bm[n:, :] = self.Minv          # the force noise enters the velocity equation through M^-1
        Psi = Int @ Bm
        S = linalg.solve_discrete_lyapunov(Phi, Psi @ self.D @ Psi.T / hold)
        return 0.5 * (S + S.T)


def dense_system(problem, params: OscillatorParams, kappa: float) -> DenseLangevin:
    """The DenseLangevin of a problem under an encoding (for checks against ExactLangevin)."""
    A = problem.matrix()
    ev = np.linalg.eigvalsh(A)
    gamma = params.resolve_gamma(float(ev[0]), float(ev[-1]))
    n = A.shape[0]
    if params.coupling == "resistive":
        M, K, f = params.mass * np.eye(n), A, problem.b
    else:
        M, K, f = A, params.stiffness * np.eye(n), np.zeros(n)
    return DenseLangevin(M, K, gamma * np.eye(n), f, kappa)


# --------------------------------------------------------------------------------- BAOAB (matrix-free)

class BAOAB:
    """BAOAB splitting for the resistive encoding, using only problem.matvec (one product per step).

        v += h/2 F(q)/m;  q += h/2 v;  v = c v + sqrt(kappa (1 - c^2) / m) z  (c = e^{-gamma h/m});
        q += h/2 v;  v += h/2 F(q)/m,        F(q) = -(A q - b).

    Stable for h < 2 sqrt(m / lambda_max(A)). For this quadratic potential the stationary law of q is
    exactly N(A^-1 b, kappa A^-1) at any stable h; v has variance (kappa/m)/(1 - h^2 a/(4m)) per mode."""

    def __init__(self, problem, params: OscillatorParams, kappa: float, gamma: float):
        if params.coupling != "resistive":
            raise ProblemError("the matrix-free BAOAB integrator needs coupling='resistive' (capacitive coupling "
                               "puts A in the mass matrix, which would need a solve with A every step); use method='exact'")
        self.p, self.m, self.gamma, self.kappa = problem, params.mass, gamma, float(kappa)

    def force(self, q):
        return -(self.p.matvec(q) - self.p.b)

    def run(self, t, q0, v0, times, rng, dt):
        pts = step_points(t, dt, times)  # the same step grid as Euler-Maruyama
        q, v = q0.copy(), v0.copy()
        Fq = self.force(q)
        rec = record_map(pts, times)
        Qs = None if times is None else np.zeros((len(times), q.shape[0]))
        Vs = None if times is None else np.zeros((len(times), q.shape[0]))
        for j in rec.get(0, []):
            Qs[j], Vs[j] = q, v
        m = self.m
        with np.errstate(over="ignore", invalid="ignore"):
            for i in range(1, pts.size):
                h = pts[i] - pts[i - 1]
                v = v + 0.5 * h * Fq / m
                q = q + 0.5 * h * v
                c = math.exp(-self.gamma * h / m)
                if self.kappa > 0:
                    v = c * v + math.sqrt(self.kappa * (1 - c * c) / m) * rng.standard_normal(q.shape[0])
                else:
                    v = c * v
                q = q + 0.5 * h * v
                Fq = self.force(q)
                v = v + 0.5 * h * Fq / m
                for j in rec.get(i, []):
                    Qs[j], Vs[j] = q, v
                # Divergence: non-finite, or grown past any physical value (an unstable step grows
                # geometrically and may not reach inf within the run).
                if (i % 64 == 0 or i == pts.size - 1) and not (np.abs(q).max() < DIVERGED):
                    raise ProblemError(f"BAOAB diverged after {i} steps: dt={dt} exceeds the stability limit "
                                       f"2 sqrt(m / lambda_max(A)); use a smaller dt or method='exact'")
        return q, v, Qs, Vs, int(pts.size - 1)


# ------------------------------------------------------------------------ sampling theory (exact)

def mode_autocov(eigs, params: OscillatorParams | None, gamma: float | None, kappa: float, lags) -> np.ndarray:
    """Stationary autocovariance of the READ-OUT variable of each mode at each lag, (k, L).

    params None: the RC cell (OU, dx = -a x ds + sqrt(2 kappa) dW): (kappa/a) e^{-a h}.
    resistive: position of mode k: (kappa/a_k) Phi_qq(h).
    capacitive: velocity (node voltage) of mode k: (kappa/m_k) Phi_vv(h), Phi_vv(h) = -(m/w) d^2/dh^2 Phi_qq,
    obtained here from the exact 2x2 transition."""
    eigs = np.asarray(eigs, float)
    lags = np.atleast_1d(np.asarray(lags, float))
    if params is None:
        return (kappa / eigs)[:, None] * np.exp(-eigs[:, None] * lags[None, :])
    m, w, g = params.modes(eigs, gamma)
    if params.coupling == "resistive":
        return (kappa / w)[:, None] * position_acf(m, w, g, lags)
    out = np.empty((eigs.size, lags.size))
    for j, h in enumerate(lags):
        Phi, _ = mode_transition(m, w, g, float(h), 0.0)
        out[:, j] = Phi[:, 1, 1]
    return (kappa / m)[:, None] * out


def lag_sums(c: np.ndarray, K: int) -> np.ndarray:
    """S_kl = (1/K^2) sum_{a,b<K} c_k(|a-b|) c_l(|a-b|) from c (k, >=K) at lags 0..K-1: the covariance
    of the sample second moments of independent Gaussian modes, and (diag of c alone) the variance of
    the sample means: var_k = (1/K^2) sum_{a,b} c_k(|a-b|) = (1/K^2)[K c_k(0) + 2 sum_j (K-j) c_k(j)]."""
    wts = np.full(K, 2.0)
    wts[0] = 1.0
    wts *= (K - np.arange(K))
    c = c[:, :K]
    return (c * wts) @ c.T / K**2


def sampling_theory(problem, params: OscillatorParams | None, kappa: float, K: int, interval: float,
                    gamma: float | None = None) -> dict:
    """Exact second-order statistics of K stationary samples taken `interval` (tau) apart.

    Returns mean_cov (N, N) / mean_sd (N,): covariance / standard deviation of the sample mean; cov_sd (N, N): standard
    deviation of each entry of the sample covariance about the true mean (Isserlis; dense problems
    only); mean_err2 = E||mean - mu||^2; cov_err2 = E||C_hat - C||_F^2 (about the true mean; removing
    the sample mean instead adds a bias of order mean_err2, small when K_eff >> 1); ess: K times the
    ratio of the independent-sample to the actual variance of the mean, per mode (K / (1 + 2 sum rho)).
    Works for the RC cells (params None) and both oscillator couplings."""
    spec = spectrum(problem)
    eigs = spec.eigs
    if params is not None and gamma is None:
        gamma = params.resolve_gamma(float(eigs.min()), float(eigs.max()))
    c = mode_autocov(eigs, params, gamma, kappa, np.arange(K) * interval)
    Skl = lag_sums(c, K)
    wts = np.full(K, 2.0)
    wts[0] = 1.0
    wts *= (K - np.arange(K))
    var_mean_mode = (c * wts).sum(axis=1) / K**2
    mult = spec.mult
    out = {"modes": eigs, "mode_var": c[:, 0], "mean_var_mode": var_mean_mode,
           "ess_mode": c[:, 0] / var_mean_mode, "gamma": gamma,
           "mean_err2": float(np.sum(mult * var_mean_mode)),
           "cov_err2": float(mult @ Skl @ mult + np.sum(mult * np.diag(Skl)))}
    if isinstance(spec, DenseSpectrum):
        Q = spec.Q
        out["mean_cov"] = (Q * var_mean_mode) @ Q.T
        out["mean_sd"] = np.sqrt(np.maximum((Q**2) @ var_mean_mode, 0.0))
        Q2 = Q**2
        term1 = Q2 @ Skl @ Q2.T                        # sum_kl S_kl Q_ik^2 Q_jl^2
        V = Q[:, None, :] * Q[None, :, :]              # V[i, j, k] = Q_ik Q_jk
        term2 = np.einsum("ijk,kl,ijl->ij", V, Skl, V)
        out["cov_sd"] = np.sqrt(np.maximum(term1 + term2, 0.0))
        out["cov_true"] = spec.matrix_function(c[:, 0])
    return out


def integrated_autocorr_time(x: np.ndarray, c: float = 5.0) -> np.ndarray:
    """Integrated autocorrelation time (in samples) of each column of x (K, d), Sokal's automatic
    window (smallest W with W >= c * tau(W)), by FFT. ESS = K / tau. 1 for independent samples."""
    x = np.asarray(x, float)
    if x.ndim == 1:
        x = x[:, None]
    K = x.shape[0]
    if K < 4:
        return np.ones(x.shape[1])
    y = x - x.mean(axis=0)
    nfft = 1 << (2 * K - 1).bit_length()
    f = np.fft.rfft(y, n=nfft, axis=0)
    acf = np.fft.irfft(f * np.conj(f), n=nfft, axis=0)[:K]
    var = acf[0]
    taus = np.ones(x.shape[1])
    for j in range(x.shape[1]):
        if var[j] <= 0:
            continue
        rho = acf[:, j] / var[j]
        tau = 2.0 * np.cumsum(rho) - 1.0
        ok = np.arange(K) >= c * tau
        W = int(np.argmax(ok)) if ok.any() else K - 1
        taus[j] = max(float(tau[W]), 1.0 / K)
    return taus


def continuous_time_errors(problem, params: OscillatorParams | None, kappa: float, gamma: float | None = None) -> dict:
    """Errors of the continuous time average over a long window T (T >> correlation time), as
    error^2 * T:  mean_err2_T = E||mean - mu||^2 T,  cov_err2_T = E||C_hat - C||_F^2 T.

    Var(time-average of mode k) = (1/T) int c_k = 2 I_k / T and Var(C_hat_kl) = 2 (1 + delta_kl) I_kl / T with
    I_k = int_0^inf c_k(h) dh and I_kl = int_0^inf c_k(h) c_l(h) dh. RC: c_k = (kappa/a) e^{-a h}, so
    I_k = kappa/a^2, I_kl = kappa^2 / (a_k a_l (a_k + a_l)). Oscillator: c_k(h) = s_k e^T e^{F_k h} e
    (e = position or velocity read-out), so I_k = -s_k e^T F_k^-1 e and I_kl = s_k s_l (e x e)^T
    [-(F_k (+) F_l)]^-1 (e x e) with the Kronecker sum F_k (+) F_l = F_k x I + I x F_l.
    For the mean, 2 I_k = 2 kappa g_k / w_k^2 (resistive): it grows with the damping."""
    spec = spectrum(problem)
    a = spec.eigs
    mult = spec.mult
    if params is None:
        Ik = kappa / a**2
        Ikl = kappa**2 / (a[:, None] * a[None, :] * (a[:, None] + a[None, :]))
    else:
        if gamma is None:
            gamma = params.resolve_gamma(float(a.min()), float(a.max()))
        m, w, g = params.modes(a, gamma)
        F = mode_drift(m, w, g)
        if params.coupling == "resistive":
            e, s = np.array([1.0, 0.0]), kappa / w
        else:
            e, s = np.array([0.0, 1.0]), kappa / m
        Ik = s * np.array([-(e @ np.linalg.solve(Fk, e)) for Fk in F])
        k = a.size
        I2 = np.eye(2)
        KS = np.einsum("aij,kl->aikjl", F, I2).reshape(k, 1, 4, 4) + np.einsum("ij,bkl->bikjl", I2, F).reshape(1, k, 4, 4)
        ee = np.kron(e, e)
        sol = np.linalg.solve(-KS, np.broadcast_to(ee, (k, k, 4))[..., None])[..., 0]
        Ikl = s[:, None] * s[None, :] * (sol @ ee)
    mean_err2_T = float(np.sum(mult * 2 * Ik))
    cov_err2_T = float(2 * (mult @ Ikl @ mult + np.sum(mult * np.diag(Ikl))))
    cov_norm = math.sqrt(float(np.sum(mult * (kappa / a) ** 2)))   # ||kappa A^-1||_F, the estimated covariance
    return {"mean_err2_T": mean_err2_T, "cov_err2_T": cov_err2_T, "cov_norm": cov_norm, "gamma": gamma}
