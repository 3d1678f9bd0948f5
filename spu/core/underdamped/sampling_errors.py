"""Exact errors of sampling the stationary law: mode autocovariances, the variance of sample means
and covariances from K samples at an interval, their continuous-time limits, and the empirical
integrated autocorrelation time."""

from __future__ import annotations

import math

import numpy as np

from ..spectral import DenseSpectrum
from .modes import mode_drift, mode_transition, position_acf
from .params import OscillatorParams


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
    wts *= K - np.arange(K)
    c = c[:, :K]
    return (c * wts) @ c.T / K**2


def sampling_theory(
    problem, params: OscillatorParams | None, kappa: float, K: int, interval: float, gamma: float | None = None
) -> dict:
    """Exact second-order statistics of K stationary samples taken `interval` (tau) apart.

    Returns mean_cov (N, N) / mean_sd (N,): covariance / standard deviation of the sample mean; cov_sd (N, N): standard
    deviation of each entry of the sample covariance about the true mean (Isserlis; dense problems
    only); mean_err2 = E||mean - mu||^2; cov_err2 = E||C_hat - C||_F^2 (about the true mean; removing
    the sample mean instead adds a bias of order mean_err2, small when K_eff >> 1); ess: K times the
    ratio of the independent-sample to the actual variance of the mean, per mode (K / (1 + 2 sum rho)).
    Works for the RC cells (params None) and both oscillator couplings."""
    spec = problem.spectrum()
    eigs = spec.eigs
    if params is not None and gamma is None:
        gamma = params.resolve_gamma(float(eigs.min()), float(eigs.max()))
    c = mode_autocov(eigs, params, gamma, kappa, np.arange(K) * interval)
    Skl = lag_sums(c, K)
    wts = np.full(K, 2.0)
    wts[0] = 1.0
    wts *= K - np.arange(K)
    var_mean_mode = (c * wts).sum(axis=1) / K**2
    mult = spec.mult
    out = {
        "modes": eigs,
        "mode_var": c[:, 0],
        "mean_var_mode": var_mean_mode,
        "ess_mode": c[:, 0] / var_mean_mode,
        "gamma": gamma,
        "mean_err2": float(np.sum(mult * var_mean_mode)),
        "cov_err2": float(mult @ Skl @ mult + np.sum(mult * np.diag(Skl))),
    }
    if isinstance(spec, DenseSpectrum):
        Q = spec.Q
        out["mean_cov"] = (Q * var_mean_mode) @ Q.T
        out["mean_sd"] = np.sqrt(np.maximum((Q**2) @ var_mean_mode, 0.0))
        Q2 = Q**2
        term1 = Q2 @ Skl @ Q2.T  # sum_kl S_kl Q_ik^2 Q_jl^2
        V = Q[:, None, :] * Q[None, :, :]  # V[i, j, k] = Q_ik Q_jk
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
    spec = problem.spectrum()
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
        KS = np.einsum("aij,kl->aikjl", F, I2).reshape(k, 1, 4, 4) + np.einsum("ij,bkl->bikjl", I2, F).reshape(
            1, k, 4, 4
        )
        ee = np.kron(e, e)
        sol = np.linalg.solve(-KS, np.broadcast_to(ee, (k, k, 4))[..., None])[..., 0]
        Ikl = s[:, None] * s[None, :] * (sol @ ee)
    mean_err2_T = float(np.sum(mult * 2 * Ik))
    cov_err2_T = float(2 * (mult @ Ikl @ mult + np.sum(mult * np.diag(Ikl))))
    cov_norm = math.sqrt(float(np.sum(mult * (kappa / a) ** 2)))  # ||kappa A^-1||_F, the estimated covariance
    return {"mean_err2_T": mean_err2_T, "cov_err2_T": cov_err2_T, "cov_norm": cov_norm, "gamma": gamma}
