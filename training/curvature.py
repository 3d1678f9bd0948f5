"""Curvature of one minibatch: loss, gradient, logits and U^T = S^T J_f (G = J_f^T H J_f = U U^T).

This module is the front. A caller asks for what it needs by calling one function:

* ``compute_curvature``: loss, gradient and the factor U^T (TNGD's request; with the Gram U^T U and
  the MC Fisher's targets on the result);
* ``jacobian_curvature``: loss, gradient and J_f, with H_L, S and the exact GGN's U^T = S^T J_f
  formed from it on first use (the crossbar's (J, H) form, dense references);
* ``gradient_curvature``: loss and gradient alone, by one ordinary backward pass.

Each checks the arguments, picks an engine (``training.ut_engines``) and hands it the loss's
factors (``training.losses``); the result type is ``training.curvature_result.Curvature``. The model
is seen as a function of one flat parameter vector (``training.params``); matrix-free GGN-vector
products live in ``training.ggn_operator``. DESIGN.md, "The mathematics", has the conventions: N
trainable parameters in ``named_parameters()`` order, b samples with dz outputs each, m = b*dz, and
row ``i*dz + k`` of every (m x ...) matrix belongs to sample i, output k.

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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .curvature_result import Curvature
from .ggn_operator import make_ggn_vp
from .losses import (
    check_curvature,
    check_loss,
    check_targets,
    columns_per_sample,
    curvature_factors,
    draw_mc,
    loss_and_grad,
    loss_value,
    output_factors,
)
from .params import (
    CurvatureError,
    ParamSpec,
    UnsupportedModelError,
    check_functional,
    frozen_tensors,
    model_dtype,
    param_spec,
    params_to_vector,
    resolve_params,
)
from .ut_engines import (
    GramParts,
    LayersFallback,
    batch_forward,
    fill_jacobian,
    fill_layers,
    fill_vjp,
    layer_plan,
    probe,
    workspace_per_sample,
)

__all__ = [
    "Curvature",
    "compute_curvature",
    "jacobian_curvature",
    "gradient_curvature",
    "loss_and_grad",
    "make_ggn_vp",
    "param_spec",
    "params_to_vector",
    "METHODS",
    "DEFAULT_MEMORY_BUDGET",
]

METHODS = ("auto", "layers", "vjp", "jacobian")
DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of temporary workspace per chunk


# ----------------------------------------------------------------------------------------------
# the requests


def compute_curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "cross_entropy",
    *,
    params=None,
    method: str = "auto",
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: torch.dtype | None = None,
    out: torch.Tensor | None = None,
    curvature: str = "ggn",
    mc_samples: int = 1,
    generator: torch.Generator | None = None,
) -> Curvature:
    """Loss, gradient, logits and U^T = F^T J_f for one minibatch (J_f is formed only by the
    "jacobian" method, as scratch).

    params: None (the model's current trainable parameters), a flat vector (N,), or a mapping
        name -> tensor. The model itself is never modified.
    method: "auto" ("layers" when the model qualifies, else "vjp"), or one of "layers", "vjp",
        "jacobian" (see the module docstring).
    chunk_size: samples per chunk; default: as many as fit in memory_budget bytes of workspace.
    dtype: computation dtype (default: the model's); params, buffers and x are converted.
    out: optional preallocated contiguous (b*k, N) tensor of `dtype` to write U^T into (reusing it
        across steps avoids page faults on every step).
    curvature: "ggn" (F = S, k = dz columns per sample: U U^T is the exact GGN), "mc" (the
        sampled-label Fisher, k = mc_samples targets per sample drawn from the model's predictive
        distribution with `generator`; E[U U^T] = GGN) or "empirical" (k = 1: U = per-sample
        gradients / sqrt(b)). training.losses has the factors and their scaling.
    """
    B = _prepare(
        model,
        x,
        y,
        loss,
        params=params,
        dtype=dtype,
        method=method,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        curvature=curvature,
        mc_samples=mc_samples,
        generator=generator,
    )
    _check_out(out, B)
    Ut = torch.empty(B.b * B.k, B.N, dtype=B.dtype) if out is None else out
    g, logits = B.gradient_and_logits()
    method, parts = B.method, None
    if method == "layers":
        method, parts = _factor_by_layers(B, Ut, g, logits)
    if method == "vjp":
        _rows_by_vjp(B, Ut, g, logits, jacobian=False)
    if method == "jacobian":
        J = torch.empty(B.m, B.N, dtype=B.dtype)  # scratch: U^T = F^T J_f goes into Ut
        _jacobian_by_jacrev(B, J, g, logits)
        Fb, _ = curvature_factors(B.curvature, B.loss, logits, B.y, B.b, B.draws)
        torch.bmm(Fb.transpose(1, 2), J.view(B.b, B.dz, B.N), out=Ut.view(B.b, B.k, B.N))
    return B.result(g, logits, method, _Ut=Ut, gram_parts=parts)


def jacobian_curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "cross_entropy",
    *,
    params=None,
    method: str = "auto",
    chunk_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: torch.dtype | None = None,
    out: torch.Tensor | None = None,
) -> Curvature:
    """Loss, gradient, logits and the output Jacobian J_f (m, N) for one minibatch; the result forms
    H_L, S and the exact GGN's U^T = S^T J_f when first asked (into `out`, a contiguous (m, N)
    tensor of `dtype`, when given). method: "auto" is "layers" when the model qualifies, else
    "jacobian"; the other arguments as for compute_curvature."""
    B = _prepare(
        model,
        x,
        y,
        loss,
        params=params,
        dtype=dtype,
        method=method,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        want_jacobian=True,
    )
    _check_out(out, B)
    J = torch.empty(B.m, B.N, dtype=B.dtype)
    g, logits = B.gradient_and_logits()
    method = B.method
    if method == "layers":
        method = _jacobian_by_layers(B, J, g, logits)
    if method == "vjp":
        _rows_by_vjp(B, J, g, logits, jacobian=True)
    if method == "jacobian":
        _jacobian_by_jacrev(B, J, g, logits)
    return B.result(g, logits, method, J=J, _Ut_out=out)


def gradient_curvature(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "cross_entropy",
    *,
    params=None,
    dtype: torch.dtype | None = None,
) -> Curvature:
    """Loss, gradient and logits by one ordinary backward pass (method "backward"), the arguments
    checked as for compute_curvature; the result forms H_L and S when first asked."""
    B = _prepare(model, x, y, loss, params=params, dtype=dtype)
    value, g, logits = loss_and_grad(model, B.x, B.y, loss, params=B.theta, dtype=B.dtype)
    return Curvature(loss=value, grad=g, logits=logits, method="backward", loss_name=loss)


# ----------------------------------------------------------------------------------------------
# the checked batch


@dataclass
class _Batch:
    """One checked minibatch and what every engine shares: k rows per sample are written (k = dz
    for J_f), `draws` are the MC Fisher's random numbers."""

    model: nn.Module
    spec: ParamSpec
    theta: torch.Tensor
    frozen: dict
    forward: Callable
    plan: object
    seen: list
    x: torch.Tensor
    y: torch.Tensor
    loss: str
    curvature: str
    draws: torch.Tensor | None
    method: str
    dz: int
    k: int
    chunk_size: int | None
    memory_budget: int

    @property
    def b(self) -> int:
        return self.x.shape[0]

    @property
    def N(self) -> int:
        return self.spec.N

    @property
    def m(self) -> int:
        return self.b * self.dz

    @property
    def dtype(self) -> torch.dtype:
        return self.theta.dtype

    def chunk(self, engine: str) -> int:
        """Samples per chunk for `engine`: chunk_size, or as many as fit in the memory budget."""
        if self.chunk_size is not None:
            return self.chunk_size
        per = workspace_per_sample(engine, self.seen, self.k, self.N, self.theta.element_size())
        return max(1, min(self.b, self.memory_budget // max(per, 1)))

    def factors(self, zc: torch.Tensor, i0: int, i1: int):
        """(F (c, dz, k), r (c, dz)) of samples i0..i1 with logits zc."""
        return curvature_factors(
            self.curvature, self.loss, zc, self.y[i0:i1], self.b, None if self.draws is None else self.draws[i0:i1]
        )

    def gradient_and_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradient (N,) the engines add into and the logits (b, dz) they fill."""
        return torch.zeros(self.N, dtype=self.dtype), torch.empty(self.b, self.dz, dtype=self.dtype)

    def result(self, g, logits, method: str, **rows) -> Curvature:
        value = loss_value(self.loss, logits, self.y).detach()
        return Curvature(
            loss=value,
            grad=g,
            logits=logits,
            method=method,
            curvature=self.curvature,
            loss_name=self.loss,
            mc_draws=self.draws,
            **rows,
        )


def _prepare(
    model,
    x,
    y,
    loss,
    *,
    params,
    dtype,
    method="auto",
    want_jacobian=False,
    chunk_size=None,
    memory_budget=DEFAULT_MEMORY_BUDGET,
    curvature="ggn",
    mc_samples=1,
    generator=None,
) -> _Batch:
    """Check every argument, pick the engine and find dz by a one-sample forward pass."""
    check_loss(loss)
    check_curvature(curvature, mc_samples)
    if method not in METHODS:
        raise CurvatureError(f"method must be one of {METHODS}, got {method!r}")
    check_functional(model)
    dtype = dtype or model_dtype(model)
    spec = param_spec(model)
    theta = resolve_params(model, spec, params, dtype)
    frozen = frozen_tensors(model, dtype)
    x, y = _checked_batch(x, y, dtype)
    if memory_budget <= 0:
        raise CurvatureError(f"memory_budget must be > 0 bytes, got {memory_budget}")
    if chunk_size is not None and chunk_size < 1:
        raise CurvatureError(f"chunk_size must be >= 1, got {chunk_size}")
    method, plan = _pick_engine(model, spec, method, want_jacobian)
    forward = batch_forward(model, spec, theta, frozen, params is not None)
    z0, seen = probe(forward, x[:1], plan)
    b, dz = x.shape[0], z0.shape[1]
    if loss == "mse" and y.dim() == 1 and dz == 1:
        y = y[:, None]
    y = check_targets(loss, z0.expand(b, dz), y)
    draws = draw_mc(loss, b, mc_samples, dz, generator) if curvature == "mc" else None
    return _Batch(
        model,
        spec,
        theta,
        frozen,
        forward,
        plan,
        seen,
        x,
        y,
        loss,
        curvature,
        draws,
        method,
        dz,
        columns_per_sample(curvature, dz, mc_samples),
        chunk_size,
        memory_budget,
    )


def _checked_batch(x, y, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.to(dtype)
    if x.shape[0] < 1:
        raise CurvatureError("empty batch")
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.shape[0] != x.shape[0]:
        raise CurvatureError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    return x, y


def _pick_engine(model, spec, method: str, want_jacobian: bool):
    """(engine, layer plan or None): "auto" is "layers" where the model qualifies, else the engine
    that writes the rows wanted most directly."""
    if method not in ("auto", "layers"):
        return method, None
    plan, why_not = layer_plan(model, spec)
    if method == "layers" and plan is None:
        raise UnsupportedModelError(f"method='layers' cannot handle this model: {why_not}")
    if method == "auto":
        method = "layers" if plan is not None else ("jacobian" if want_jacobian else "vjp")
    return method, plan


def _check_out(out, B: _Batch) -> None:
    if out is not None:
        if tuple(out.shape) != (B.b * B.k, B.N) or out.dtype != B.dtype or not out.is_contiguous():
            raise CurvatureError(
                f"out must be a contiguous ({B.b * B.k}, {B.N}) tensor of {B.dtype}, got "
                f"{tuple(out.shape)} {out.dtype} contiguous={out.is_contiguous()}"
            )


# ----------------------------------------------------------------------------------------------
# the engines, fed the factors of the rows wanted


def _factor_by_layers(B: _Batch, Ut, g, logits) -> tuple[str, GramParts | None]:
    """U^T by the layers engine, with the factors of its Gram; ("vjp", None) when the model turns out
    not to qualify."""
    parts = GramParts(B.k)
    # The empirical Fisher's columns are sqrt(b) r_i: the gradient is their sum / sqrt(b), so the
    # backward needs no separate gradient cotangent.
    grad_from_rows = B.curvature == "empirical"
    try:
        fill_layers(
            B.forward,
            B.plan,
            B.x,
            B.factors,
            Ut.view(B.b, -1, B.N),
            None if grad_from_rows else g,
            logits,
            B.chunk("layers"),
            parts,
        )
        if grad_from_rows:
            torch.sum(Ut, 0, out=g).div_(B.b**0.5)
    except LayersFallback:
        g.zero_()
        return "vjp", None
    return "layers", parts


def _jacobian_by_layers(B: _Batch, J, g, logits) -> str:
    """J_f by the layers engine (unit cotangents); "jacobian" when the model turns out not to qualify."""

    def cotangents(zc, i0, i1):
        _, r = B.factors(zc, i0, i1)
        return torch.eye(B.dz, dtype=B.dtype).expand(zc.shape[0], B.dz, B.dz), r

    try:
        fill_layers(B.forward, B.plan, B.x, cotangents, J.view(B.b, -1, B.N), g, logits, B.chunk("layers"))
    except LayersFallback:
        g.zero_()
        return "jacobian"
    return "layers"


def _rows_by_vjp(B: _Batch, rows, g, logits, jacobian: bool) -> None:
    """U^T (or J_f, with unit cotangents) by per-sample vjp."""

    def per_sample(z, yi, *di):
        Fi, r = curvature_factors(B.curvature, B.loss, z[None], yi[None], B.b, di[0][None] if di else None)
        if jacobian:
            return torch.eye(B.dz, dtype=z.dtype, device=z.device), r[0]
        return Fi[0].T, r[0]

    extra = (B.y,) if B.draws is None else (B.y, B.draws)
    fill_vjp(
        B.model, B.spec, B.theta, B.frozen, B.x, per_sample, extra, rows.view(B.b, -1, B.N), g, logits, B.chunk("vjp")
    )


def _jacobian_by_jacrev(B: _Batch, J, g, logits) -> None:
    """J_f by vmap(jacrev), then the gradient J_f^T r."""
    fill_jacobian(B.model, B.spec, B.theta, B.frozen, B.x, J.view(B.b, B.dz, B.N), logits, B.chunk("jacobian"))
    r, _, _ = output_factors(B.loss, logits, B.y, B.b)
    torch.mv(J.T, r.reshape(-1), out=g)
