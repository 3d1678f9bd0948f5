"""The algebra of one damped mode m y'' = -w y - g y' + noise, batched over the modes: its 2x2 drift,
stationary covariance, exact transition (batched matrix exponential, Van Loan), and position
autocorrelation in closed form."""

from __future__ import annotations

import math

import numpy as np


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
        blk[:, 1, 3] = 2.0 * kappa * g[short] / m[short] ** 2  # Q = B B^T, noise on the velocity
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
