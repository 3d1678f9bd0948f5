"""Transitions of a non-symmetric low-rank-plus-diagonal OU process, never forming an N x N matrix:

    dx = -(D x + P Q x - c) ds + sqrt(q) dW + Z sqrt(S2) dV + P sqrt(S1) dV',

D diagonal (N), P (N x m), Q (m x N), q >= 0 per coordinate, Z (N x m) with a diagonal S2 and an
m x m S1 (noise that reaches the cells through the arrays). This is what a built circuit realises
(circuits/realised.py): tolerances make P Q non-symmetric, so the symmetric spectra of
spectral.py do not apply.

Uniform diagonal (D = d I, q = sigma^2 I): exact. With K = Q P = V diag(k) V^-1 (m x m),
    exp(-(d I + P Q) r) = e^{-d r} (I + P Phi(r) Q),   Phi(r) = V diag((e^{-k r} - 1)/k) V^-1,
and the transition noise over a step h is
    sigma xi + P (sigma eta + eta1 + eta_z) + Z zeta,
with xi ~ N(0, c I) (c = (1 - e^{-2dh})/(2d)) and the m-vectors drawn from their exact joint law
given u = Q xi (eta depends on W only through Q W): every covariance is an m x m integral
int e^{-2dr} f(r) dr of exponentials, done per eigen-pair by Gauss-Legendre quadrature on
geometric sub-intervals (exact to ~1e-12 for these smooth integrands). Cost O(N m^2 + m^3) once,
O(N m) per step.

Non-uniform diagonal (per-cell capacitance, tolerance of the lam resistors, finite gain):
Strang splitting  e^{-dD h/2} . [exact uniform step] . e^{-dD h/2}  with dD = D - mean(D) and the
excess noise q - min(q) in the diagonal half-steps, both exact flows. The scheme is second order:
its error is O(h^2 |dD| |L|) per unit time at worst, much less once stiff modes have decayed;
`SplitTransition.error_estimate` measures it by step halving (Richardson). The mean is handled
exactly: the splitting acts on x - x*, x* = (D + P Q)^-1 c by Woodbury, so the steady state has
no step error at all.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ProblemError, UnstableCircuitError

_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(12)


def woodbury_solve(D: np.ndarray, P: np.ndarray, Q: np.ndarray, c: np.ndarray, K=None) -> np.ndarray:
    """(diag(D) + P Q)^-1 c in O(N m^2); the m x m system in float64. K = Q P, if known, saves the
    O(N m^2) product when D is uniform."""
    y = c / D
    if K is not None and not (D - D[0]).any():
        small = np.eye(P.shape[1]) + K / D[0]
    else:
        small = np.eye(P.shape[1]) + Q @ (P / D[:, None])
    return y - (P @ np.linalg.solve(small, Q @ y)) / D


def psd_sqrt(S: np.ndarray) -> np.ndarray:
    """L with L L^T = S for a symmetric PSD S (round-off negatives clipped to 0)."""
    S = 0.5 * (S + S.T)
    w, V = np.linalg.eigh(S)
    return V * np.sqrt(np.clip(w, 0.0, None))


def _quadrature(h: float, fastest: float):
    """Nodes and weights on [0, h] resolving rates up to `fastest`: sub-intervals [0, a], [a, 2a],
    [2a, 4a], ... with a = 0.5/fastest, 12 Gauss points each."""
    a = min(h, 0.5 / max(fastest, 1e-300))
    edges = [0.0, a]
    while edges[-1] < h:
        edges.append(min(h, 2 * edges[-1]))
    s, w = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        half = 0.5 * (hi - lo)
        s.append(lo + half * (_GAUSS_NODES + 1))
        w.append(half * _GAUSS_WEIGHTS)
    return np.concatenate(s), np.concatenate(w)


def _g(k: np.ndarray, r) -> np.ndarray:
    """(e^{-k r} - 1)/k, = -r at k = 0, without cancellation (k may be complex)."""
    z = -np.multiply.outer(np.atleast_1d(r), k)
    small = np.abs(z) < 1e-8
    safe = np.where(small, 1.0, z)
    out = np.where(small, 1.0 + z / 2, np.expm1(safe) / safe)
    return out * (-np.atleast_1d(r))[:, None]


class _Eig:
    """K = V diag(k) V^-1; symmetric K (the ideal circuit) gets eigh, so V^-1 = V^T exactly."""

    def __init__(self, K: np.ndarray):
        if np.abs(K - K.T).max(initial=0.0) <= 1e-13 * max(np.abs(K).max(initial=0.0), 1e-300):
            k, V = np.linalg.eigh(0.5 * (K + K.T))
            self.k, self.V, self.T = k, V, V.T
        else:
            k, V = np.linalg.eig(K)
            self.k, self.V, self.T = k, V, np.linalg.inv(V)

    def fn(self, f: np.ndarray) -> np.ndarray:
        """V diag(f) V^-1, real part (f(K) of a real K is real)."""
        return np.real((self.V * f) @ self.T)

    def hadamard(self, X: np.ndarray, Gam: np.ndarray) -> np.ndarray:
        """V [(V^-1 X V^-T) o Gam] V^T: the integral of f(K) X f(K)^T given Gam_ij = int f_i f_j."""
        return np.real(self.V @ ((self.T @ X @ self.T.T) * Gam) @ self.V.T)


class UniformTransition:
    """Exact transition over one step h of dx = -(d I + P Q) x ds + noise (x measured from x*)."""

    def __init__(self, d: float, P, Q, eig: _Eig, h: float, sigma2: float, QQ, S1, Z, QZ, S2):
        self.P, self.Q, self.Z = P, Q, Z
        k = eig.k
        self.decay = math.exp(-d * h)
        self.Phi = eig.fn(_g(k, h)[0])
        self.noisy = sigma2 > 0 or S1 is not None or S2 is not None
        if not self.noisy:
            return
        fastest = 2 * abs(d) + 2 * float(np.abs(k).max(initial=0.0))
        s, wq = _quadrature(h, fastest)
        om = wq * np.exp(-2 * d * s)  # weights of int_0^h e^{-2dr} (.) dr
        c = float(om.sum())
        G = _g(k, s)  # (nodes, m)
        Gam_g = om @ G
        Gam_gg = (G * om[:, None]).T @ G
        m = P.shape[1]
        self.sigma, self.c = math.sqrt(sigma2), c
        if sigma2 > 0:
            # (u, eta): u = Q xi, eta = int e^{-d r} Phi(r) Q dW; eta | u Gaussian.
            Suu = c * QQ
            Seu = eig.fn(Gam_g) @ QQ
            See = eig.hadamard(QQ, Gam_gg)
            w, V = np.linalg.eigh(0.5 * (Suu + Suu.T))
            keep = w > 1e-12 * max(w.max(initial=0.0), 1e-300)
            Suu_pinv = (V[:, keep] / w[keep]) @ V[:, keep].T
            self.A = Seu @ Suu_pinv
            self.L1 = psd_sqrt(See - self.A @ Seu.T)
        else:
            self.A = None
        # Chain noise entering through P: eta1 = int e^{-d r} e^{-K r} sqrt(S1) dV'.
        if S1 is not None:
            E = 1.0 + k[None, :] * G
            Gam_ee = (E * om[:, None]).T @ E
            self.L2 = psd_sqrt(eig.hadamard(S1, Gam_ee))
        else:
            self.L2 = None
        # Chain noise entering through Z: (zeta, eta_z) jointly.
        if S2 is not None:
            YS = QZ * S2[None, :]
            J = np.zeros((2 * m, 2 * m))
            J[:m, :m] = c * np.diag(S2)
            cross = eig.fn(Gam_g) @ YS  # Cov(eta_z, zeta)
            J[m:, :m] = cross
            J[:m, m:] = cross.T
            J[m:, m:] = eig.hadamard(YS @ QZ.T, Gam_gg)
            self.L3 = psd_sqrt(J)
        else:
            self.L3 = None

    def apply(self, e: np.ndarray, rng) -> np.ndarray:
        if not self.noisy:
            return self.decay * (e + self.P @ (self.Phi @ (self.Q @ e)))
        n, m = e.shape[0], self.P.shape[1]
        coef = self.decay * self.Phi
        out_m = np.zeros(m)
        out = self.decay * e
        if self.A is not None:
            xi = math.sqrt(self.c) * rng.standard_normal(n)
            R = self.Q @ np.column_stack([e, xi])  # one pass over Q for both
            out_m += coef @ R[:, 0] + self.sigma * (self.A @ R[:, 1] + self.L1 @ rng.standard_normal(m))
            out += self.sigma * xi
        else:
            out_m += coef @ (self.Q @ e)
        if self.L2 is not None:
            out_m += self.L2 @ rng.standard_normal(m)
        if self.L3 is not None:
            zz = self.L3 @ rng.standard_normal(2 * m)
            out += self.Z @ zz[:m]
            out_m += zz[m:]
        return out + self.P @ out_m


class SplitTransition:
    """Transitions of the full process (see the module docstring); x-space in, x-space out."""

    def __init__(self, D, P, Q, c, q=None, *, Z=None, S2=None, S1=None, step: float = 0.25):
        D, P, Q, c = (np.asarray(a, dtype=np.float64) for a in (D, P, Q, c))
        n, m = P.shape
        if D.shape != (n,) or Q.shape != (m, n) or c.shape != (n,):
            raise ProblemError(f"drift shapes D {D.shape}, P {P.shape}, Q {Q.shape}, c {c.shape} do not fit")
        if not (np.isfinite(step) and step > 0):
            raise ProblemError(f"integration step must be > 0 (in tau), got {step!r}")
        self.P, self.Q, self.step_max = P, Q, float(step)
        K = Q @ P
        # Uniform means all equal (a mean of equal floats can miss them by an ulp).
        self.d = float(D[0]) if D.min() == D.max() else float(D.mean())
        self.dD = D - self.d
        q = np.zeros(n) if q is None else np.asarray(q, dtype=np.float64)
        self.sigma2 = float(q.min()) if q.size else 0.0
        self.dq = q - self.sigma2
        self.uniform = not self.dD.any() and not self.dq.any()
        self.eig = _Eig(K)
        # Growth rate of the fastest-growing mode of the uniform part (the diagonal's spread bounds
        # the rest): a realised drift with a negative eigenvalue runs away, as the circuit would.
        # No chain at all (every column of U dropped, e.g. a saturated softmax): the drift is D alone.
        slowest = self.d + (float(self.eig.k.real.min()) if self.eig.k.size else 0.0)
        if slowest + float(np.abs(self.dD).max(initial=0.0)) <= 0 or not np.isfinite(slowest):
            raise UnstableCircuitError(
                f"the realised circuit is unstable: its drift has a mode with rate {slowest:.4g}/tau <= 0 "
                "(component errors made A_eff indefinite, e.g. a quantised H lost its positive "
                "semi-definiteness); fewer errors or the factored topology keep it stable"
            )
        self.mean = woodbury_solve(D, P, Q, c, K)
        noisy = self.sigma2 > 0 or S1 is not None or S2 is not None
        self.QQ = Q @ Q.T if self.sigma2 > 0 else None
        self.Z, self.S1, self.S2 = Z, S1, S2
        self.QZ = Q @ Z if Z is not None else None
        self.noisy = noisy or self.dq.any()
        self._cache: dict[float, UniformTransition] = {}
        self._diag_cache: dict[float, tuple] = {}
        self._small_inv: np.ndarray | None = None

    def _uniform(self, h: float) -> UniformTransition:
        key = round(h, 15)
        tr = self._cache.get(key)
        if tr is None:
            tr = UniformTransition(
                self.d, self.P, self.Q, self.eig, h, self.sigma2, self.QQ, self.S1, self.Z, self.QZ, self.S2
            )
            self._cache[key] = tr
        return tr

    def _diag_factors(self, h: float) -> tuple[np.ndarray, np.ndarray | None]:
        """(decay, noise std) of the diagonal flow over h, per cell; cached, since a run takes
        hundreds of steps of the same two lengths and each factor is several O(N) passes."""
        key = round(h, 15)
        f = self._diag_cache.get(key)
        if f is None:
            a = self.dD
            std = None
            if self.dq.any():
                # Variance int_0^h e^{-2 a r} dr = h * (1 - e^{-2ah})/(2ah), stable at a -> 0.
                z = -2 * a * h
                ratio = np.where(np.abs(z) < 1e-12, 1.0, np.expm1(z) / np.where(z == 0, 1.0, z))
                std = np.sqrt(self.dq * h * ratio)
            f = self._diag_cache[key] = (np.exp(-a * h), std)
        return f

    def _diag_half(self, e, h, rng):
        decay, std = self._diag_factors(h)
        e = decay * e
        if std is not None:
            e += std * rng.standard_normal(e.shape[0])
        return e

    def solve(self, y: np.ndarray) -> np.ndarray:
        """(D + P Q)^-1 y in O(N m): Woodbury with the m x m factor computed once."""
        if self._small_inv is None:
            D = self.d + self.dD
            self._small_inv = np.linalg.inv(np.eye(self.P.shape[1]) + self.Q @ (self.P / D[:, None]))
        D = self.d + self.dD
        z = y / D
        return z - (self.P @ (self._small_inv @ (self.Q @ z))) / D

    def advance(self, x: np.ndarray, dt: float, rng, step: float | None = None, path=None, visit=None) -> np.ndarray:
        """State after time dt (tau): one exact step if uniform, else Strang steps <= `step`.

        path = (p0, p1): a particular solution of the drift with an extra input, at the start and
        the end of the step (default: the mean, no extra input). The deviation x - p obeys the
        homogeneous drift whatever the input, so it is stepped as without one.
        visit(x, h), if given (only without a path), sees the state after every step of length h (a
        uniform process is then stepped on that grid too, each step still exact)."""
        if dt == 0:
            return x.copy()
        p0, p1 = (self.mean, self.mean) if path is None else path
        e = x - p0
        if self.uniform and visit is None:
            return p1 + self._uniform(dt).apply(e, rng)
        k = max(1, math.ceil(dt / (step or self.step_max) - 1e-9))
        h = dt / k
        tr = self._uniform(h)
        if not self.uniform:
            e = self._diag_half(e, h / 2, rng)
        for i in range(k):
            e = tr.apply(e, rng)
            if not self.uniform:
                e = self._diag_half(e, h if i < k - 1 else h / 2, rng)
            if visit is not None:
                visit(self.mean + e, h)
        return p1 + e
