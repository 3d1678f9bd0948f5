"""Problem types: the linear system A x = b that the SPU relaxes towards.

Three ways to give A, all with a right-hand side b:

* ``DenseProblem(A, b)``: any symmetric positive definite A.
* ``FactoredProblem(U, lam, b)``: A = lam*I + U U^T (U is N x m). Never forms A unless asked.
* ``GGNProblem(J, H, lam, b)``: A = J^T H J + lam*I, the TNGD system (J is the b*dz x N output
  Jacobian, H the block-diagonal loss Hessian). ``factored()`` turns it into U = J^T S with
  S S^T = H.

Validation happens at construction, so every backend can trust what it gets. All three answer
the questions of the ``Problem`` base (size, products, spectrum, the dense / factored / GGN views,
scaling), so callers ask the problem instead of testing its type.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .errors import ProblemError
from .spectral import DenseSpectrum, LowRankSpectrum

# Relative asymmetry allowed before a matrix is called non-symmetric (float32 round-off of a GGN
# built by torch is ~1e-7; anything a user builds by hand that is meant to be symmetric passes).
SYM_RTOL = 1e-6


def as_finite_array(name: str, value, ndim: int) -> np.ndarray:
    """Convert to a float64 array of the given rank, or raise ProblemError naming `name`."""
    try:
        raw = np.asarray(value)
        if raw.dtype.kind == "c":  # asarray(complex, float64) would silently drop the imaginary part
            raise ProblemError(f"{name} is complex; the SPU takes real numbers only")
        if raw.dtype.kind in "USV":  # text or raw bytes (e.g. a .npy of strings): never parse as numbers
            raise ProblemError(f"{name} holds {raw.dtype} data, not numbers")
        arr = raw.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ProblemError):
            raise
        raise ProblemError(f"{name} is not numeric: {exc}") from None
    if arr.ndim != ndim:
        raise ProblemError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ProblemError(f"{name} is empty (shape {arr.shape})")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[idx]) else "inf"
        raise ProblemError(f"{name} contains {kind} (first at index {idx if ndim > 1 else idx[0]})")
    return arr


def check_symmetric(name: str, M: np.ndarray) -> None:
    if M.shape[0] != M.shape[1]:
        raise ProblemError(f"{name} must be square, got shape {M.shape}")
    scale = max(float(np.abs(M).max()), np.finfo(float).tiny)
    asym = float(np.abs(M - M.T).max())
    if asym > SYM_RTOL * scale:
        i, j = np.unravel_index(int(np.abs(M - M.T).argmax()), M.shape)
        raise ProblemError(f"{name} is not symmetric: {name}[{i},{j}]={M[i, j]:.6g} but {name}[{j},{i}]={M[j, i]:.6g}")


def check_lam(lam) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ProblemError(f"damping lam must be a number, got {lam!r}") from None
    if not np.isfinite(lam) or lam <= 0:
        raise ProblemError(f"damping lam must be finite and > 0, got {lam}")
    return lam


def check_gram(gram, U: np.ndarray) -> np.ndarray:
    """gram as a float64 (m x m) array equal to U^T U, or ProblemError."""
    K = as_finite_array("gram", gram, 2)
    m = U.shape[1]
    if K.shape != (m, m):
        raise ProblemError(f"gram must be U^T U of shape ({m}, {m}), got {K.shape}")
    check_symmetric("gram", K)
    z = np.random.default_rng(0).standard_normal(m)
    err = float(np.linalg.norm(K @ z - U.T @ (U @ z)))
    scale = float(np.linalg.norm(K)) * float(np.linalg.norm(z))
    if err > GRAM_RTOL * max(scale, np.finfo(float).tiny):
        raise ProblemError(
            f"gram is not U^T U: a random product differs by {err / max(scale, 1e-300):.2e} "
            f"of its scale (allowed {GRAM_RTOL:g})"
        )
    return K


def check_rhs(b, n: int, what: str) -> np.ndarray:
    b = as_finite_array("b", b, 1)
    if b.shape[0] != n:
        raise ProblemError(f"b has length {b.shape[0]} but {what} needs length {n}")
    return b


class Problem(ABC):
    """A x = b with A symmetric positive definite, in whichever form it was given.

    low_rank: True when A = lam*I + (a low-rank part held as factors), so that A need never be
    formed; False when A is held as a dense matrix. A class constant, so asking it costs nothing
    (factored() of a GGNProblem is an eigendecomposition)."""

    low_rank: ClassVar[bool]
    b: np.ndarray

    @property
    @abstractmethod
    def n(self) -> int:
        """The size N of the system."""

    @abstractmethod
    def matrix(self) -> np.ndarray:
        """A as a dense N x N array (O(N^2) memory: for checks and small problems)."""

    @abstractmethod
    def matvec(self, x: np.ndarray) -> np.ndarray:
        """A x, in the form's own arithmetic (never forms A)."""

    @abstractmethod
    def eig_extremes(self) -> tuple[float, float]:
        """(smallest, largest) eigenvalue of A: they set the settling time and the stiffness."""

    @abstractmethod
    def scaled(self, s: float) -> Problem:
        """The same form with A/s and b/s (what a circuit at scale s realises)."""

    @abstractmethod
    def with_b(self, b: np.ndarray) -> Problem:
        """The same A (and its cached views) with the right-hand side b."""

    def dense(self) -> DenseProblem:
        """This system with A formed (itself when already dense)."""
        return DenseProblem(self.matrix(), self.b)

    def factored(self) -> FactoredProblem | None:
        """The view A = lam*I + U U^T, or None when A is only known dense."""
        return None

    def ggn(self) -> GGNProblem | None:
        """The view A = J^T H J + lam*I (J, H kept apart, as the crossbar builds them), or None."""
        return None

    def spectrum(self) -> DenseSpectrum | LowRankSpectrum:
        """The symmetric decomposition of A (spu.core.spectral): dense eigh, or the low-rank one
        of the factored view."""
        f = self.factored()
        return LowRankSpectrum(f.U, f.lam, f.gram)


@dataclass(frozen=True, eq=False)
class DenseProblem(Problem):
    low_rank: ClassVar[bool] = False
    A: np.ndarray
    b: np.ndarray
    _lam_min: float = field(init=False, repr=False)

    def __post_init__(self):
        A = as_finite_array("A", self.A, 2)
        check_symmetric("A", A)
        A = 0.5 * (A + A.T)
        b = check_rhs(self.b, A.shape[0], f"A of shape {A.shape}")
        ev = np.linalg.eigvalsh(A)
        if ev[0] <= 0:
            raise ProblemError(f"A is not positive definite: smallest eigenvalue is {ev[0]:.6g}")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "_lam_min", float(ev[0]))

    @property
    def n(self) -> int:
        return self.A.shape[0]

    def matrix(self) -> np.ndarray:
        return self.A

    def matvec(self, x: np.ndarray) -> np.ndarray:
        return self.A @ x

    def eig_extremes(self) -> tuple[float, float]:
        ev = np.linalg.eigvalsh(self.A)
        return float(ev[0]), float(ev[-1])

    def scaled(self, s: float) -> DenseProblem:
        return DenseProblem(self.A / s, self.b / s)

    def with_b(self, b: np.ndarray) -> DenseProblem:
        return DenseProblem(self.A, b)

    def dense(self) -> DenseProblem:
        return self

    def spectrum(self) -> DenseSpectrum:
        return DenseSpectrum(self.A)


# How far a given Gram matrix may be from U^T U, relative to its Frobenius norm, in the one random
# product that checks it: float32 factors (a torch model's) agree to ~1e-8; a wrong Gram is O(1) off.
GRAM_RTOL = 1e-5


@dataclass(frozen=True, eq=False)
class FactoredProblem(Problem):
    """A = lam*I + U U^T with U of shape (N, m).

    gram: optional U^T U (m x m) when the caller has it cheaper than the O(N m^2) product (the
    training loop gets it from the layer structure, see training.curvature.Curvature.gram); the
    exact OU backend then skips that product. It is checked against U by one random product."""

    low_rank: ClassVar[bool] = True

    U: np.ndarray
    lam: float
    b: np.ndarray
    gram: np.ndarray | None = None

    def __post_init__(self):
        U = as_finite_array("U", self.U, 2)
        lam = check_lam(self.lam)
        b = check_rhs(self.b, U.shape[0], f"U of shape {U.shape} (rows)")
        object.__setattr__(self, "U", U)
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "b", b)
        if self.gram is not None:
            object.__setattr__(self, "gram", check_gram(self.gram, U))

    @property
    def n(self) -> int:
        return self.U.shape[0]

    @property
    def m(self) -> int:
        return self.U.shape[1]

    def matrix(self) -> np.ndarray:
        return self.lam * np.eye(self.n) + self.U @ self.U.T

    def matvec(self, x: np.ndarray) -> np.ndarray:
        return self.lam * x + self.U @ (self.U.T @ x)

    def factored(self) -> FactoredProblem:
        return self

    def scaled(self, s: float) -> FactoredProblem:
        # gram is not carried over: the scaled problem recomputes U^T U/s if it needs it.
        return FactoredProblem(self.U / math.sqrt(s), self.lam / s, self.b / s)

    def with_b(self, b: np.ndarray) -> FactoredProblem:
        return FactoredProblem(self.U, self.lam, b, gram=self.gram)

    def gram_matrix(self) -> np.ndarray:
        """U^T U (m x m): the given gram when the caller supplied one, else the O(N m^2) product."""
        return self.U.T @ self.U if self.gram is None else self.gram

    def eig_extremes(self) -> tuple[float, float]:
        s = np.linalg.eigvalsh(self.gram_matrix())
        top = self.lam + float(max(s[-1], 0.0))
        # With m < N, lam itself is an eigenvalue (the null space of U^T).
        low = self.lam + (float(max(s[0], 0.0)) if self.m >= self.n else 0.0)
        return low, top


@dataclass(frozen=True, eq=False)
class GGNProblem(Problem):
    """A = J^T H J + lam*I. J: (m, N) output Jacobian, H: (m, m) symmetric PSD loss Hessian."""

    low_rank: ClassVar[bool] = True

    J: np.ndarray
    H: np.ndarray
    lam: float
    b: np.ndarray

    def __post_init__(self):
        J = as_finite_array("J", self.J, 2)
        H = as_finite_array("H", self.H, 2)
        check_symmetric("H", H)
        if H.shape[0] != J.shape[0]:
            raise ProblemError(
                f"H has shape {H.shape} but J has {J.shape[0]} rows: H must be {J.shape[0]}x{J.shape[0]}"
            )
        H = 0.5 * (H + H.T)
        ev = np.linalg.eigvalsh(H)
        # H_L of a convex loss is PSD; allow float32 round-off (torch builds it) relative to its scale.
        if ev[0] < -1e-6 * max(abs(ev[-1]), abs(ev[0])):
            raise ProblemError(f"H is not positive semidefinite: smallest eigenvalue is {ev[0]:.6g}")
        lam = check_lam(self.lam)
        b = check_rhs(self.b, J.shape[1], f"J of shape {J.shape} (columns)")
        object.__setattr__(self, "J", J)
        object.__setattr__(self, "H", H)
        object.__setattr__(self, "lam", lam)
        object.__setattr__(self, "b", b)

    @property
    def n(self) -> int:
        return self.J.shape[1]

    @property
    def m(self) -> int:
        return self.J.shape[0]

    def matrix(self) -> np.ndarray:
        return self.J.T @ self.H @ self.J + self.lam * np.eye(self.n)

    def matvec(self, x: np.ndarray) -> np.ndarray:
        return self.lam * x + self.J.T @ (self.H @ (self.J @ x))

    def factor_S(self) -> np.ndarray:
        """S (m x r) with S S^T = H, from the symmetric eigendecomposition (zero modes dropped)."""
        w, V = np.linalg.eigh(self.H)
        keep = w > 1e-12 * max(float(w[-1]), 1e-300)
        if not keep.any():
            # H = 0 (e.g. a saturated softmax, p one-hot): A = lam*I. One zero column keeps U = J^T S
            # a valid (N x 1) factor instead of an empty one that every consumer rejects.
            return np.zeros((self.H.shape[0], 1))
        return V[:, keep] * np.sqrt(w[keep])

    def factored(self) -> FactoredProblem:
        """U = J^T S as a FactoredProblem, computed once (the backends and the timing model's
        resistor count both ask; H's eigendecomposition and J^T S are O(N m^2))."""
        cached = self.__dict__.get("_factored")
        if cached is None:
            cached = FactoredProblem(self.J.T @ self.factor_S(), self.lam, self.b)
            object.__setattr__(self, "_factored", cached)
        return cached

    def ggn(self) -> GGNProblem:
        return self

    def eig_extremes(self) -> tuple[float, float]:
        return self.factored().eig_extremes()

    def scaled(self, s: float) -> GGNProblem:
        # J stays: the crossbar programs J and J^T as given and takes the scale on H and lam.
        return GGNProblem(self.J, self.H / s, self.lam / s, self.b / s)

    def with_b(self, b: np.ndarray) -> GGNProblem:
        return GGNProblem(self.J, self.H, self.lam, b)
