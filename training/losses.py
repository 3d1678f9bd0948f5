"""The two losses, their output gradient r = dL/dz, the Hessian blocks H_i and factors S_i.

Both losses are means over the batch; the same functions are used to differentiate and to form H.
For a batch of b samples with dz outputs each, row ``i*dz + k`` of every (b*dz x ...) matrix
belongs to sample i, output k, and H (b*dz x b*dz) is block diagonal with blocks H_i, so
G = J^T H J = U U^T with U = J^T S is the GGN of the mean loss itself (the 1/b is inside H and S).

* ``"cross_entropy"``: L = mean_i CE(softmax(z_i), y_i), y int64 class labels (b,).
  dL/dz_i = (p_i - e_{y_i}) / b,  H_i = (diag(p_i) - p_i p_i^T) / b,
  S_i = (diag(sqrt p_i) - p_i sqrt(p_i)^T) / sqrt(b)  (S_i S_i^T = H_i because sum(p_i) = 1).
* ``"mse"``: L = mean_i 0.5 * ||z_i - y_i||^2  (half the squared error, SUMMED over outputs,
  averaged over the batch; y float (b, dz)). This is NOT torch's ``MSELoss()`` (which averages over
  all b*dz elements and has no 1/2: it equals 2/dz times this loss).
  dL/dz_i = (z_i - y_i) / b,  H_i = I / b,  S_i = I / sqrt(b).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .params import CurvatureError, batch_fn, check_functional, frozen_tensors, model_dtype, param_spec, resolve_params

LOSSES = ("cross_entropy", "mse")


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise CurvatureError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def check_targets(loss: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 2:
        raise CurvatureError(f"model output must be (batch, dz), got shape {tuple(logits.shape)}")
    b, dz = logits.shape
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if loss == "cross_entropy":
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1 or y.shape[0] != b:
            raise CurvatureError(
                f"cross_entropy needs integer class labels of shape ({b},), got {y.dtype} {tuple(y.shape)}"
            )
        if b and (int(y.min()) < 0 or int(y.max()) >= dz):
            raise CurvatureError(f"class labels must lie in [0, {dz}), got range [{int(y.min())}, {int(y.max())}]")
        return y.long()
    if y.dim() == 1 and dz == 1:
        y = y[:, None]
    if tuple(y.shape) != (b, dz):
        raise CurvatureError(f"mse targets must have shape ({b}, {dz}) like the output, got {tuple(y.shape)}")
    return y.to(logits.dtype)


def loss_value(loss: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean-over-batch loss exactly as this module differentiates it (see module docstring)."""
    check_loss(loss)
    y = check_targets(loss, logits, y)
    if loss == "cross_entropy":
        return F.cross_entropy(logits, y)
    return 0.5 * (logits - y).pow(2).sum(-1).mean()


def output_factors(loss: str, logits: torch.Tensor, y: torch.Tensor | None, batch_size: int | None = None):
    """(r, H_blocks, S_blocks) for the mean loss over a batch of `batch_size` samples.

    logits (c, dz) may be a chunk of a batch of batch_size (default c) samples: the 1/b of the mean
    uses batch_size. r = dL/dz (c, dz) (None when y is None); H_blocks, S_blocks (c, dz, dz) with
    S_i S_i^T = H_i.
    """
    check_loss(loss)
    c, dz = logits.shape
    b = c if batch_size is None else batch_size
    z = logits.detach()
    if loss == "cross_entropy":
        p = torch.softmax(z, -1)
        sp = p.sqrt()
        H = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]) / b
        S = (torch.diag_embed(sp) - p[:, :, None] * sp[:, None, :]) / math.sqrt(b)
        r = None if y is None else (p - F.one_hot(y, dz).to(p.dtype)) / b
    else:
        eye = torch.eye(dz, dtype=z.dtype, device=z.device).expand(c, dz, dz)
        H = eye / b
        S = eye / math.sqrt(b)
        r = None if y is None else (z - y) / b
    return r, H, S


def per_sample_factors(loss: str, z: torch.Tensor, y: torch.Tensor, b: int):
    """Per-sample S^T (rows = columns of S_i) and r_i for one sample (used inside vmap)."""
    dz = z.shape[-1]
    if loss == "cross_entropy":
        p = torch.softmax(z, -1)
        sp = p.sqrt()
        St = (torch.diag_embed(sp) - sp[:, None] * p[None, :]) / math.sqrt(b)  # S_i^T
        r = (p - F.one_hot(y, dz).to(p.dtype)) / b
    else:
        St = torch.eye(dz, dtype=z.dtype, device=z.device) / math.sqrt(b)
        r = (z - y) / b
    return St, r


def apply_H(loss: str, p_or_none: torch.Tensor | None, u: torch.Tensor, b: int) -> torch.Tensor:
    """H u for u (..., b, dz) without forming H."""
    if loss == "cross_entropy":
        p = p_or_none
        return (p * u - p * (p * u).sum(-1, keepdim=True)) / b
    return u / b


def loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy", *,
                  params=None, dtype: torch.dtype | None = None):
    """(loss, grad (N,), logits) of the mean loss by one ordinary batched backward pass."""
    check_loss(loss)
    check_functional(model)
    dtype = dtype or model_dtype(model)
    spec = param_spec(model)
    theta = resolve_params(model, spec, params, dtype).requires_grad_()
    f = batch_fn(model, spec, frozen_tensors(model, dtype))
    logits = f(theta, x.to(dtype))
    value = loss_value(loss, logits, y)
    (g,) = torch.autograd.grad(value, theta)
    return value.detach(), g, logits.detach()
