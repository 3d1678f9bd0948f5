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

Curvatures (``CURVATURES``): U = [J_i^T F_i]_i with per-sample factor columns F_i (dz x k), so that
U U^T = sum_i J_i^T F_i F_i^T J_i. With l_i(z_i, y) the loss of one sample (not divided by b):

* ``"ggn"``: F_i = S_i, k = dz: U U^T = J^T H J, the exact GGN of the mean loss.
* ``"mc"`` (sampled-label Fisher): K targets per sample drawn from the model's own predictive
  distribution (labels ~ softmax(z_i); mse: y~ = z_i + eps, eps ~ N(0, I)), F_i[:, j] =
  dl_i/dz (z_i, y~_ij) / sqrt(b K), k = K: (p_i - e_{y~_ij}) / sqrt(bK), or -eps_ij / sqrt(bK).
  Each column of U is a per-sample gradient of a sampled-label loss over sqrt(bK), and
  E[F_i F_i^T] = H_i (softmax: E[(p - e_y)(p - e_y)^T] = diag(p) - p p^T), so E[U U^T] = the GGN.
* ``"empirical"`` (empirical Fisher): F_i = sqrt(b) r_i = dl_i/dz (z_i, y_i) / sqrt(b), k = 1:
  U = per-sample gradients / sqrt(b), U U^T = (1/b) sum_i g_i g_i^T with the true labels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .params import CurvatureError, batch_fn, check_functional, frozen_tensors, model_dtype, param_spec, resolve_params

LOSSES = ("cross_entropy", "mse")
CURVATURES = ("ggn", "mc", "empirical")


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
    else:
        eye = torch.eye(dz, dtype=z.dtype, device=z.device).expand(c, dz, dz)
        H = eye / b
        S = eye / math.sqrt(b)
    r = None if y is None else output_gradient(loss, z, p if loss == "cross_entropy" else None, y, b)
    return r, H, S


def output_gradient(loss: str, z: torch.Tensor, p: torch.Tensor | None, y: torch.Tensor, b: int) -> torch.Tensor:
    """r = dL/dz (c, dz) of the mean loss over b samples, for the detached logits z (c, dz) of c of
    them; p = softmax(z) for cross_entropy (the callers have it already), None for mse."""
    if loss == "cross_entropy":
        return (p - F.one_hot(y, z.shape[-1]).to(p.dtype)) / b
    return (z - y) / b


def check_curvature(curvature: str, mc_samples: int) -> None:
    if curvature not in CURVATURES:
        raise CurvatureError(f"curvature must be one of {CURVATURES}, got {curvature!r}")
    if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 1:
        raise CurvatureError(f"mc_samples must be an integer >= 1, got {mc_samples!r}")


def columns_per_sample(curvature: str, dz: int, mc_samples: int) -> int:
    """k: the columns of U per sample (U has b*k columns)."""
    return {"ggn": dz, "mc": mc_samples, "empirical": 1}[curvature]


def draw_mc(loss: str, b: int, K: int, dz: int, generator: torch.Generator | None) -> torch.Tensor:
    """The random numbers behind K sampled targets per sample: uniforms (b, K) in [0, 1), turned
    into labels by the inverse CDF of softmax(z_i) (cross_entropy), or standard normals (b, K, dz)
    added to z_i (mse). float64, from `generator` (None: torch's global generator)."""
    shape = (b, K) if loss == "cross_entropy" else (b, K, dz)
    if loss == "cross_entropy":
        return torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def sample_labels(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Labels (c, K) ~ Categorical(p_i) from uniforms u (c, K): the first class whose cumulative
    probability exceeds u (clamped to dz - 1 against the round-off of a float32 cumsum)."""
    cdf = torch.cumsum(p.double(), -1)
    return (cdf[:, None, :] <= u[:, :, None]).sum(-1).clamp(max=p.shape[-1] - 1)


def mc_targets(loss: str, z: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """The sampled targets: labels (c, K) for cross_entropy, y~ = z + eps (c, K, dz) for mse."""
    z = z.detach()
    if loss == "cross_entropy":
        return sample_labels(torch.softmax(z, -1), draws)
    return z[:, None, :] + draws.to(z.dtype)


def curvature_factors(
    curvature: str, loss: str, z: torch.Tensor, y: torch.Tensor | None, b: int, draws: torch.Tensor | None = None
):
    """(F (c, dz, k), r (c, dz) or None): the factor columns of U = [J_i^T F_i] and r = dL/dz for
    the logits z (c, dz) of c samples of a batch of b (module docstring; draws from draw_mc)."""
    if curvature == "ggn":
        r, _, S = output_factors(loss, z, y, b)
        return S, r
    z = z.detach()
    p = torch.softmax(z, -1) if loss == "cross_entropy" else None
    r = None if y is None else output_gradient(loss, z, p, y, b)
    if curvature == "empirical":
        if r is None:
            raise CurvatureError("the empirical Fisher needs the targets y")
        return (r * math.sqrt(b))[:, :, None], r
    K = draws.shape[1]
    if loss == "cross_entropy":
        labels = sample_labels(p, draws)
        onehot = (labels[:, :, None] == torch.arange(z.shape[-1], device=z.device)).to(z.dtype)
        Ft = p[:, None, :] - onehot  # (c, K, dz)
    else:
        Ft = -draws.to(z.dtype)  # z - y~
    return Ft.transpose(1, 2) / math.sqrt(b * K), r


def apply_H(loss: str, p_or_none: torch.Tensor | None, u: torch.Tensor, b: int) -> torch.Tensor:
    """H u for u (..., b, dz) without forming H."""
    if loss == "cross_entropy":
        p = p_or_none
        return (p * u - p * (p * u).sum(-1, keepdim=True)) / b
    return u / b


def loss_and_grad(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "cross_entropy",
    *,
    params=None,
    dtype: torch.dtype | None = None,
):
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
