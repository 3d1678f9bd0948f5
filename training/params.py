"""The model as a function of one flat parameter vector theta, and the checks that make
per-sample derivatives of it meaningful.

theta holds the model's *trainable* parameters in ``named_parameters()`` order, flattened to one
vector of length N (DESIGN.md, "The mathematics"). Every curvature function takes parameters as
None (the model's own), such a vector, or a name -> tensor mapping, and never modifies the model:
the model is called through ``torch.func.functional_call`` with views of theta.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from spu.core.errors import ThermospiceError


class UnsupportedModelError(ThermospiceError, ValueError):
    """The model cannot be differentiated per sample (batch statistics, random masks, ...)."""


class CurvatureError(ThermospiceError, ValueError):
    """Bad arguments to the curvature functions: loss name, shapes, labels, parameter vector."""


# ----------------------------------------------------------------------------------------------
# model checks


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def check_functional(model: nn.Module) -> None:
    """Raise UnsupportedModelError if some layer makes per-sample derivatives meaningless.

    * BatchNorm in training mode (or with track_running_stats=False, which uses batch statistics
      even in eval mode): couples the samples of a batch and updates running statistics in place.
    * InstanceNorm tracking running statistics in training mode: updates them in place.
    * Dropout with p > 0 in training mode: a random mask per call, so the GGN (and every
      GGN-vector product) would differ from call to call.
    * No trainable parameters.
    """
    for name, mod in model.named_modules():
        label = f"layer {name!r} ({type(mod).__name__})" if name else f"model ({type(mod).__name__})"
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if mod.training:
                raise UnsupportedModelError(
                    f"{label} is in training mode: it normalises with batch statistics and updates "
                    "running statistics, so per-sample Jacobians are undefined. Call model.eval() "
                    "(running statistics are then used) or use GroupNorm/LayerNorm instead."
                )
            if not mod.track_running_stats or mod.running_mean is None:
                raise UnsupportedModelError(
                    f"{label} has track_running_stats=False, so it uses batch statistics even in "
                    "eval mode; per-sample Jacobians are undefined. Use GroupNorm/LayerNorm."
                )
        elif isinstance(mod, nn.modules.instancenorm._InstanceNorm):
            if mod.training and mod.track_running_stats:
                raise UnsupportedModelError(
                    f"{label} updates running statistics in training mode; call model.eval() or "
                    "set track_running_stats=False."
                )
        elif isinstance(mod, _DROPOUT):
            if mod.training and mod.p > 0:
                raise UnsupportedModelError(
                    f"{label} has p={mod.p} in training mode: a random mask per call makes the GGN "
                    "differ between calls. Call model.eval() or set p=0."
                )
    if not any(p.requires_grad for p in model.parameters()):
        raise UnsupportedModelError(f"model ({type(model).__name__}) has no trainable parameters")


# ----------------------------------------------------------------------------------------------
# the flat parameter vector and the functional model


@dataclass(frozen=True)
class ParamSpec:
    """Layout of the flat parameter vector: trainable parameters in named_parameters() order."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]

    @property
    def N(self) -> int:
        return sum(self.sizes)

    def slice(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + self.sizes[i])


def param_spec(model: nn.Module) -> ParamSpec:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    sizes = tuple(p.numel() for _, p in named)
    offsets = tuple(itertools.accumulate(sizes[:-1], initial=0)) if named else ()
    return ParamSpec(tuple(n for n, _ in named), tuple(p.shape for _, p in named), sizes, offsets)


def params_to_vector(model: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The trainable parameters as one detached vector (a copy) of length N."""
    ps = [p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]
    v = torch.cat(ps)
    return v.to(dtype) if dtype is not None else v


def vector_to_params(theta: torch.Tensor, model: nn.Module) -> None:
    """Copy the flat vector theta (length N) into the model's trainable parameters, in place."""
    spec = param_spec(model)
    theta = check_vector("theta", theta, spec.N)
    with torch.no_grad():
        for p, part in zip((p for p in model.parameters() if p.requires_grad), torch.split(theta, spec.sizes)):
            p.copy_(part.view_as(p))


def unflatten_params(theta: torch.Tensor, spec: ParamSpec) -> dict[str, torch.Tensor]:
    """Views of theta shaped like the parameters (the split makes gradients w.r.t. theta flat)."""
    return {n: t.view(s) for n, t, s in zip(spec.names, torch.split(theta, spec.sizes), spec.shapes)}


def check_vector(what: str, v, n: int) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(np.asarray(v))
    if v.dim() != 1 or v.shape[0] != n:
        raise CurvatureError(f"{what} must be a vector of length N={n}, got shape {tuple(v.shape)}")
    return v


def resolve_params(model: nn.Module, spec: ParamSpec, params, dtype) -> torch.Tensor:
    """Flat detached theta from None (the model's own), a vector, or a name -> tensor mapping."""
    if params is None:
        theta = params_to_vector(model)
    elif isinstance(params, Mapping):
        missing = [n for n in spec.names if n not in params]
        if missing:
            raise CurvatureError(f"params is missing trainable parameter(s) {missing}")
        for n, s in zip(spec.names, spec.shapes):
            if tuple(params[n].shape) != tuple(s):
                raise CurvatureError(f"params[{n!r}] has shape {tuple(params[n].shape)}, expected {tuple(s)}")
        theta = torch.cat([params[n].detach().reshape(-1) for n in spec.names])
    else:
        theta = check_vector("params", params, spec.N).detach()
    return theta.to(dtype)


def model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _float_buffers(model: nn.Module, dtype) -> dict[str, torch.Tensor]:
    return {n: (b.to(dtype) if b.is_floating_point() else b) for n, b in model.named_buffers()}


def frozen_tensors(model: nn.Module, dtype) -> dict[str, torch.Tensor]:
    """Non-trainable parameters and buffers, passed to functional_call as constants."""
    out = _float_buffers(model, dtype)
    out.update({n: p.detach().to(dtype) for n, p in model.named_parameters() if not p.requires_grad})
    return out


def batch_fn(model, spec, frozen) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def f(theta, x):
        pd = unflatten_params(theta, spec)
        pd.update(frozen)
        return functional_call(model, pd, (x,))

    return f
