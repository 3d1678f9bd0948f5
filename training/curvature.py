"""Curvature of one minibatch: loss, gradient, logits and U^T = S^T J_f (G = J_f^T H J_f = U U^T).

This module is the front: ``compute_curvature`` checks the arguments, picks a U^T engine
(``training.ut_engines``) and hands it the loss's factors (``training.losses``); the model is seen
as a function of one flat parameter vector (``training.params``); matrix-free GGN-vector products
live in ``training.ggn_operator``. DESIGN.md, "The mathematics", has the conventions: N trainable
parameters in ``named_parameters()`` order, b samples with dz outputs each, m = b*dz, and row
``i*dz + k`` of every (m x ...) matrix belongs to sample i, output k.

Methods (U^T is (m x N), contiguous; U = Ut.T is a free view): "layers" (hooked forward, one
vmapped backward to the layer outputs; Linear/Conv2d models), "vjp" (per-sample torch.func.vjp,
any per-sample-functional model), "jacobian" (vmap(jacrev) gives J_f, then U^T = bmm(S^T, J_f)).
"auto" takes "layers" where the model qualifies; "layers" falls back (recorded in .method) when the
model turns out not to qualify during the forward pass. All methods process the batch in chunks so
the temporary workspace stays within ``memory_budget`` bytes (default 256 MiB; the returned J and
U^T, m*N each, come on top).

Model requirements: the model must treat samples independently (no BatchNorm in training mode, no
cross-sample operations) and be deterministic (no active Dropout); ``check_functional`` enforces
what can be checked and raises ``UnsupportedModelError`` naming the layer.

Allocator: a fresh 43 MB U^T per step pays glibc's page faults again (``training.malloc``); pass
``out=`` (a reused (m, N) buffer) to avoid it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from .ggn_operator import make_ggn_vp
from .losses import (check_curvature, check_loss, check_targets, columns_per_sample, curvature_factors, draw_mc,
                     loss_and_grad, loss_value, mc_targets, output_factors)
from .params import (CurvatureError, UnsupportedModelError, check_functional, frozen_tensors, model_dtype,
                     param_spec, params_to_vector, resolve_params)
from .ut_engines import (GramParts, LayersFallback, batch_forward, fill_jacobian, fill_layers, fill_vjp,
                         layer_plan, probe, workspace_per_sample)

__all__ = ["Curvature", "compute_curvature", "loss_and_grad", "make_ggn_vp", "param_spec",
           "params_to_vector", "METHODS", "DEFAULT_MEMORY_BUDGET"]

METHODS = ("auto", "layers", "vjp", "jacobian")
DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of temporary workspace per chunk


# ----------------------------------------------------------------------------------------------
# result type


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
    J: (m, N) output Jacobian J_f; H: (m, m) block-diagonal H_L; S: (m, m) block-diagonal factor,
    S S^T = H; H_blocks, S_blocks: (b, dz, dz) the diagonal blocks; method: which U^T engine ran;
    curvature: "ggn" | "mc" | "empirical"; mc_draws: the random numbers behind "mc"'s targets
    (``mc_targets`` turns them into labels (b, K) for cross_entropy, y~ (b, K, dz) for mse).
    Optional fields are None unless asked for.
    """

    loss: torch.Tensor
    grad: torch.Tensor
    logits: torch.Tensor
    Ut: torch.Tensor | None
    J: torch.Tensor | None = None
    H: torch.Tensor | None = None
    S: torch.Tensor | None = None
    H_blocks: torch.Tensor | None = None
    S_blocks: torch.Tensor | None = None
    method: str = ""
    curvature: str = "ggn"
    mc_draws: torch.Tensor | None = None
    loss_name: str = "cross_entropy"
    gram_parts: GramParts | None = None  # what the layers engine saw of U^T's structure, for gram()

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

    @property
    def U(self) -> torch.Tensor:
        """U = J_f^T F, (N, b*k): a transposed view of Ut (no copy)."""
        if self.Ut is None:
            raise CurvatureError("U was not computed (return_U=False)")
        return self.Ut.T

    def ggn_matrix(self) -> torch.Tensor:
        """Dense GGN U U^T (N x N). Only for small N."""
        return self.U @ self.Ut

    def gram(self) -> np.ndarray:
        """U^T U (m x m, float64), the matrix the exact OU simulation decomposes: from the layers
        engine's factors when it ran (ut_engines.GramParts, ~20x cheaper on the digits CNN),
        otherwise the product of U^T's rows. Equal to U^T U up to float32 round-off of the factors."""
        if self.Ut is None:
            raise CurvatureError("U was not computed (return_U=False)")
        if self.gram_parts is not None:
            return self.gram_parts.gram(self.Ut)
        U64 = self.Ut.double()
        return (U64 @ U64.T).numpy()

    def to_numpy(self) -> dict[str, np.ndarray | None]:
        """All tensor fields as numpy arrays (None where not computed), plus 'U' = Ut.T."""
        out = {f.name: to_numpy(getattr(self, f.name)) for f in fields(self)
               if f.name not in ("method", "curvature", "loss_name", "gram_parts")}
        out["U"] = None if out["Ut"] is None else out["Ut"].T
        out["loss"] = float(out["loss"])
        return out


# ----------------------------------------------------------------------------------------------
# the dispatcher


def compute_curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "cross_entropy",
    *,
    params=None,
    return_U: bool = True,
    return_J: bool = False,
    return_H: bool = False,
    return_S: bool = False,
    method: str = "auto",
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: torch.dtype | None = None,
    out: torch.Tensor | None = None,
    curvature: str = "ggn",
    mc_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Curvature:
    """Loss, gradient, logits and U^T = F^T J_f (plus J_f, H_L, S on request) for one minibatch.

    params: None (the model's current trainable parameters), a flat vector (N,), or a mapping
        name -> tensor. The model itself is never modified.
    method: "auto" ("layers" when the model qualifies, else "jacobian" if return_J else "vjp";
        with return_U=return_J=False only the gradient is computed, by one backward pass), or one
        of "layers", "vjp", "jacobian" (see the module docstring). "layers" falls back (recorded in
        .method) when the model turns out not to qualify during the forward pass.
    chunk_size: samples per chunk; default: as many as fit in memory_budget bytes of workspace.
    dtype: computation dtype (default: the model's); params, buffers and x are converted.
    out: optional preallocated contiguous (b*k, N) tensor of `dtype` to write U^T into (reusing it
        across steps avoids page faults on every step).
    curvature: "ggn" (F = S, k = dz columns per sample: U U^T is the exact GGN), "mc" (the
        sampled-label Fisher, k = mc_samples targets per sample drawn from the model's predictive
        distribution with `generator`; E[U U^T] = GGN) or "empirical" (k = 1: U = per-sample
        gradients / sqrt(b)). training.losses has the factors and their scaling.
    """
    check_loss(loss)
    check_curvature(curvature, mc_samples)
    if method not in METHODS:
        raise CurvatureError(f"method must be one of {METHODS}, got {method!r}")
    check_functional(model)
    dtype = dtype or model_dtype(model)
    spec = param_spec(model)
    N = spec.N
    theta = resolve_params(model, spec, params, dtype)
    frozen = frozen_tensors(model, dtype)
    x = x.to(dtype)
    if x.shape[0] < 1:
        raise CurvatureError("empty batch")
    b = x.shape[0]
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.shape[0] != b:
        raise CurvatureError(f"x has {b} samples but y has {y.shape[0]}")
    if memory_budget <= 0:
        raise CurvatureError(f"memory_budget must be > 0 bytes, got {memory_budget}")
    if chunk_size is not None and chunk_size < 1:
        raise CurvatureError(f"chunk_size must be >= 1, got {chunk_size}")

    plan, why_not = (None, "")
    if method in ("auto", "layers"):
        plan, why_not = layer_plan(model, spec)
        if method == "layers" and plan is None:
            raise UnsupportedModelError(f"method='layers' cannot handle this model: {why_not}")
        if method == "auto":
            method = "layers" if plan is not None else ("jacobian" if return_J else "vjp")

    # dz (and the layers method's workspace) from a one-sample forward pass
    forward = batch_forward(model, spec, theta, frozen, params is not None)
    z0, seen = probe(forward, x[:1], plan)
    dz = z0.shape[1]
    m = b * dz
    k = columns_per_sample(curvature, dz, mc_samples)
    if loss == "mse" and y.dim() == 1 and dz == 1:
        y = y[:, None]
    y = check_targets(loss, z0.expand(b, dz), y)
    draws = draw_mc(loss, b, mc_samples, dz, generator) if curvature == "mc" else None

    def auto_chunk(engine):
        if chunk_size is not None:
            return chunk_size
        per = workspace_per_sample(engine, seen, dz if return_J else k, N, theta.element_size())
        return max(1, min(b, memory_budget // max(per, 1)))

    if not return_U and not return_J:  # gradient only: one ordinary backward pass
        value, g, logits = loss_and_grad(model, x, y, loss, params=theta, dtype=dtype)
        return _result(loss, value, g, logits, None, None, return_H, return_S, "backward", curvature)

    if out is not None:
        if tuple(out.shape) != (b * k, N) or out.dtype != dtype or not out.is_contiguous():
            raise CurvatureError(
                f"out must be a contiguous ({b * k}, {N}) tensor of {dtype}, got "
                f"{tuple(out.shape)} {out.dtype} contiguous={out.is_contiguous()}"
            )
    # rows: the tensor the engines fill: J_f (m, N) when asked for (U^T = F^T J_f follows by
    # bmm), else U^T (b*k, N) itself
    rows = torch.empty(m if return_J else b * k, N, dtype=dtype) if return_J or out is None else out
    rows3 = rows.view(b, -1, N)
    g = torch.zeros(N, dtype=dtype)
    logits = torch.empty(b, dz, dtype=dtype)

    # The rows are U^T itself only without J_f: then their factors give U^T U cheaply (gram()).
    parts = GramParts(k) if method == "layers" and not return_J else None
    if method == "layers":
        # The empirical Fisher's columns are sqrt(b) r_i: the gradient is their sum / sqrt(b), so
        # the backward needs no separate gradient cotangent.
        grad_from_rows = curvature == "empirical" and not return_J

        def cotangents(zc, i0, i1):
            Fc, r = curvature_factors(curvature, loss, zc, y[i0:i1], b,
                                      None if draws is None else draws[i0:i1])
            if return_J:
                Fc = torch.eye(dz, dtype=dtype).expand(zc.shape[0], dz, dz)
            return Fc, r

        try:
            fill_layers(forward, plan, x, cotangents, rows3, None if grad_from_rows else g, logits,
                        auto_chunk("layers"), parts)
            if grad_from_rows:
                torch.sum(rows, 0, out=g).div_(b ** 0.5)
        except LayersFallback:
            method = "jacobian" if return_J else "vjp"
            g.zero_()
            parts = None
    if method == "vjp":
        def per_sample(z, yi, *di):
            Fi, r = curvature_factors(curvature, loss, z[None], yi[None], b, di[0][None] if di else None)
            if return_J:
                return torch.eye(dz, dtype=z.dtype, device=z.device), r[0]
            return Fi[0].T, r[0]

        extra = (y,) if draws is None else (y, draws)
        fill_vjp(model, spec, theta, frozen, x, per_sample, extra, rows3, g, logits, auto_chunk("vjp"))
    if method == "jacobian":
        if not return_J:
            rows = torch.empty(m, N, dtype=dtype)  # J_f scratch; U^T goes into out
            rows3 = rows.view(b, dz, N)
        fill_jacobian(model, spec, theta, frozen, x, rows3, logits, auto_chunk("jacobian"))
        r, _, _ = output_factors(loss, logits, y, b)
        torch.mv(rows.T, r.reshape(-1), out=g)

    J = rows if (return_J or method == "jacobian") else None
    Ut = None
    if J is None:
        Ut = rows
    elif return_U:
        Fb, _ = curvature_factors(curvature, loss, logits, y, b, draws)
        Ut = out if out is not None else torch.empty(b * k, N, dtype=dtype)
        torch.bmm(Fb.transpose(1, 2), J.view(b, dz, N), out=Ut.view(b, k, N))
    value = loss_value(loss, logits, y).detach()
    res = _result(loss, value, g, logits, Ut if return_U else None, J if return_J else None,
                  return_H, return_S, method, curvature, parts if return_U else None)
    res.mc_draws = draws
    return res


def _result(loss, value, g, logits, Ut, J, return_H, return_S, method, curvature, gram_parts=None) -> Curvature:
    Hb = Sb = None
    if return_H or return_S:
        _, Hb, Sb = output_factors(loss, logits, None, logits.shape[0])
    return Curvature(
        loss=value,
        grad=g,
        logits=logits,
        Ut=Ut,
        J=J,
        H=torch.block_diag(*Hb) if return_H else None,
        S=torch.block_diag(*Sb) if return_S else None,
        H_blocks=Hb if return_H else None,
        S_blocks=Sb.contiguous() if return_S else None,
        method=method,
        curvature=curvature,
        loss_name=loss,
        gram_parts=gram_parts,
    )
