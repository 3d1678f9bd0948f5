"""Matrix-free GGN-vector products v -> (J^T H J + damping I) v (NGD-CG's operator)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torch.func import jvp, vjp, vmap
from torch.func import linearize as _func_linearize

from .losses import apply_H, check_loss
from .params import CurvatureError, batch_fn, check_functional, frozen_tensors, model_dtype, param_spec, resolve_params


class GGNOperator:
    """v -> (J^T H J + damping*I) v for a fixed batch and parameters, never forming a matrix.

    Built once per batch: the forward pass, the softmax probabilities and the vjp (pull-back) are
    stored; each product is one jvp (a forward pass with tangents; or a stored linearization when
    linearize=True, which costs more to build and less per product) and one vjp.
    v may be (N,) or (N, k) (k products at once, vmapped).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        loss: str = "cross_entropy",
        *,
        params=None,
        dtype: torch.dtype | None = None,
        damping: float = 0.0,
        linearize: bool = False,
    ):
        check_loss(loss)
        check_functional(model)
        self.loss = loss
        self.dtype = dtype or model_dtype(model)
        self.spec = param_spec(model)
        self.N = self.spec.N
        self.damping = float(damping)
        self.theta = resolve_params(model, self.spec, params, self.dtype)
        fb = batch_fn(model, self.spec, frozen_tensors(model, self.dtype))
        xd = x.to(self.dtype)
        self._f = lambda th: fb(th, xd)
        z, self._pull = vjp(self._f, self.theta)
        if z.dim() != 2:
            raise CurvatureError(f"model output must be (batch, dz), got shape {tuple(z.shape)}")
        self.logits = z.detach()
        self.b = z.shape[0]
        self._p = torch.softmax(self.logits, -1) if loss == "cross_entropy" else None
        self._lin = None
        if linearize:  # torch.func.linearize traces with fx/jit and warns about it; harmless
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", (UserWarning, DeprecationWarning))
                self._lin = _func_linearize(self._f, self.theta)[1]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.N, self.N)

    def _one(self, v: torch.Tensor) -> torch.Tensor:
        if self._lin is not None:
            jv = self._lin(v)
        else:
            _, jv = jvp(self._f, (self.theta,), (v,))
        (out,) = self._pull(apply_H(self.loss, self._p, jv, self.b))
        return out

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(np.asarray(v))
        if v.shape[0] != self.N or v.dim() not in (1, 2):
            raise CurvatureError(f"v must be (N,) or (N, k) with N={self.N}, got {tuple(v.shape)}")
        v = v.to(self.dtype)
        if v.dim() == 1:
            out = self._one(v)
        else:
            out = vmap(self._one, in_dims=1, out_dims=1)(v)
        return out + self.damping * v if self.damping else out

    matvec = __call__

    def to_dense(self) -> torch.Tensor:
        """The N x N matrix, column by column (small N only)."""
        return self(torch.eye(self.N, dtype=self.dtype))


def make_ggn_vp(
    model: nn.Module,
    x: torch.Tensor,
    loss: str = "cross_entropy",
    *,
    params=None,
    dtype: torch.dtype | None = None,
    damping: float = 0.0,
    linearize: bool = False,
) -> GGNOperator:
    """Reusable closure v -> (G + damping I) v for repeated products (CG). See GGNOperator."""
    return GGNOperator(model, x, loss, params=params, dtype=dtype, damping=damping, linearize=linearize)


def ggn_vp(
    model: nn.Module, params, x: torch.Tensor, loss: str, v: torch.Tensor, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """One GGN-vector product J^T H J v (v: (N,) or (N, k)); params as in compute_curvature."""
    return GGNOperator(model, x, loss, params=params, dtype=dtype)(v)
