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

One idea per module:

* ``params``: ``OscillatorParams`` (the cells, the encoding, the damping) and the mode (m_k, w_k, g_k)
  of each eigenvalue.
* ``modes``: the 2x2 algebra of one damped mode, batched: drift, stationary covariance, exact
  transition (the 2x2 exponentials are batched; the covariance comes from Van Loan's block
  exponential for short steps and Sigma_inf - Phi Sigma_inf Phi^T for long ones), closed-form
  position autocorrelation.
* ``propagator``: ``ExactLangevin``, exact transitions per mode from one symmetric decomposition of A
  (``eigh``, O(N^3)) or, for factored / GGN problems A = lam I + U U^T, from the m x m eigenproblem
  of U^T U (the N x N matrix is never formed), as in spu/backends/ou.py.
* ``dense``: ``DenseLangevin``, the same for general (also non-symmetric, e.g. as-built with
  tolerances) M, K, Gamma and any force-noise covariance, from the 2N x 2N drift: exact mean by
  expm, transition covariance by Van Loan, stationary covariance by the Lyapunov equation. O(N^3),
  for small N: it checks the ngspice runs.
* ``baoab``: ``BAOAB``, a matrix-free integrator (one A v product per step, resistive coupling). For
  a quadratic potential its stationary law of q is EXACT for any stable step h < 2 sqrt(m/lambda_max)
  (Leimkuhler & Matthews 2013); the velocities carry an O(h^2) bias, and the transients an O(h^2)
  error.
* ``sampling_errors``: theory for sampling: position autocovariances of each mode in closed form,
  the exact variance of sample means and sample covariances from K samples at interval dt, and
  continuous-time limits.

The names below are what the rest of the project uses.
"""

from .baoab import BAOAB
from .dense import DenseLangevin, dense_system
from .modes import expm_batch, mode_drift, mode_transition, position_acf
from .params import COUPLINGS, OscillatorParams, damping_ratios
from .propagator import ExactLangevin
from .sampling_errors import continuous_time_errors, integrated_autocorr_time, lag_sums, mode_autocov, sampling_theory

__all__ = [
    "BAOAB",
    "COUPLINGS",
    "DenseLangevin",
    "ExactLangevin",
    "OscillatorParams",
    "continuous_time_errors",
    "damping_ratios",
    "dense_system",
    "expm_batch",
    "integrated_autocorr_time",
    "lag_sums",
    "mode_autocov",
    "mode_drift",
    "mode_transition",
    "position_acf",
    "sampling_theory",
]
