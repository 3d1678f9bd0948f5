"""What one minibatch's curvature request returns: ``Curvature``.

The engines fill what was asked for (U^T, or J_f) eagerly; everything that follows from it and the
logits is formed on first use and kept: H_L and its factor S (block diagonal, from the logits), the
GGN factor U^T = S^T J_f of a Jacobian request, the Gram U^T U, the MC Fisher's sampled targets.
So a caller names the quantity it needs and pays only for that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from .losses import mc_targets, output_factors
from .params import CurvatureError
from .ut_engines import GramParts

# The quantities to_numpy returns (the fields and the derived ones alike).
_ARRAYS = ("loss", "grad", "logits", "Ut", "J", "H", "S", "H_blocks", "S_blocks", "mc_draws")


def to_numpy(t) -> np.ndarray | None:
    """Tensor -> numpy array (detached, on the CPU); None stays None."""
    if t is None:
        return None
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


@dataclass(eq=False)
class Curvature:
    """Everything TNGD needs from one minibatch. m = b*dz outputs, N parameters.

    loss: scalar tensor; grad: (N,); logits: (b, dz); Ut: (b*k, N) contiguous U^T = F^T J_f
    (U = Ut.T, G = U U^T; k = dz and F = S for the exact GGN, k = K for "mc", 1 for "empirical");
    J: (m, N) output Jacobian J_f (jacobian_curvature only); H: (m, m) block-diagonal H_L; S: (m, m)
    block-diagonal factor, S S^T = H; H_blocks, S_blocks: (b, dz, dz) the diagonal blocks; method:
    which engine ran ("backward" for the gradient alone); curvature: "ggn" | "mc" | "empirical";
    mc_draws: the random numbers behind "mc"'s targets (``mc_targets`` turns them into labels
    (b, K) for cross_entropy, y~ (b, K, dz) for mse).
    """

    loss: torch.Tensor
    grad: torch.Tensor
    logits: torch.Tensor
    method: str
    curvature: str = "ggn"
    loss_name: str = "cross_entropy"
    J: torch.Tensor | None = None
    mc_draws: torch.Tensor | None = None
    gram_parts: GramParts | None = None  # what the layers engine saw of U^T's structure, for gram()
    # U^T as an engine wrote it; a Jacobian request leaves it None and forms S^T J_f on first use,
    # into _Ut_out when the caller gave a buffer
    _Ut: torch.Tensor | None = field(default=None, repr=False)
    _Ut_out: torch.Tensor | None = field(default=None, repr=False)

    @property
    def Ut(self) -> torch.Tensor | None:
        """U^T (b*k, N); None after gradient_curvature."""
        if self._Ut is None and self.J is not None:
            self._Ut = self._ggn_factor_of_J()
        return self._Ut

    def _ggn_factor_of_J(self) -> torch.Tensor:
        b, dz, N = self.batch_size, self.dz, self.J.shape[1]
        Ut = self._Ut_out if self._Ut_out is not None else torch.empty(b * dz, N, dtype=self.J.dtype)
        torch.bmm(self._output_factors[1].transpose(1, 2), self.J.view(b, dz, N), out=Ut.view(b, dz, N))
        return Ut

    @cached_property
    def _output_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_blocks, S_blocks) of the loss at these logits."""
        _, Hb, Sb = output_factors(self.loss_name, self.logits, None, self.batch_size)
        return Hb, Sb

    @property
    def H_blocks(self) -> torch.Tensor:
        return self._output_factors[0]

    @property
    def S_blocks(self) -> torch.Tensor:
        return self._output_factors[1].contiguous()

    @cached_property
    def H(self) -> torch.Tensor:
        return torch.block_diag(*self._output_factors[0])

    @cached_property
    def S(self) -> torch.Tensor:
        return torch.block_diag(*self._output_factors[1])

    @property
    def mc_targets(self) -> torch.Tensor | None:
        """The sampled targets of curvature "mc" (None otherwise)."""
        return None if self.mc_draws is None else mc_targets(self.loss_name, self.logits, self.mc_draws)

    @property
    def N(self) -> int:
        return self.grad.shape[0]

    @property
    def batch_size(self) -> int:
        return self.logits.shape[0]

    @property
    def dz(self) -> int:
        return self.logits.shape[1]

    @property
    def m(self) -> int:
        return self.logits.shape[0] * self.logits.shape[1]

    def _require_Ut(self) -> torch.Tensor:
        if self.Ut is None:
            raise CurvatureError("U was not computed (gradient_curvature gives the gradient only)")
        return self.Ut

    @property
    def U(self) -> torch.Tensor:
        """U = J_f^T F, (N, b*k): a transposed view of Ut (no copy)."""
        return self._require_Ut().T

    def ggn_matrix(self) -> torch.Tensor:
        """Dense GGN U U^T (N x N). Only for small N."""
        return self.U @ self.Ut

    def gram(self) -> np.ndarray:
        """U^T U (m x m, float64), the matrix the exact OU simulation decomposes: from the layers
        engine's factors when it ran (ut_engines.GramParts, ~20x cheaper on the digits CNN),
        otherwise the product of U^T's rows. Equal to U^T U up to float32 round-off of the factors."""
        Ut = self._require_Ut()
        if self.gram_parts is not None:
            return self.gram_parts.gram(Ut)
        U64 = Ut.double()
        return (U64 @ U64.T).numpy()

    def to_numpy(self) -> dict[str, np.ndarray | None]:
        """Every tensor quantity as a numpy array (the derived ones formed now; None where there is
        none), plus 'U' = Ut.T."""
        out = {name: to_numpy(getattr(self, name)) for name in _ARRAYS}
        out["U"] = None if out["Ut"] is None else out["Ut"].T
        out["loss"] = float(out["loss"])
        return out
