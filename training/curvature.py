"""GGN factors of a minibatch with torch.func: gradient, output Jacobian J_f, H_L, S and U^T = S^T J_f.

Conventions (DESIGN.md, "The mathematics")
-------------------------------------------
The parameters are the model's *trainable* parameters in ``named_parameters()`` order, flattened to
one vector theta of length N. For a batch of b samples with dz outputs each, m = b*dz, and row
``i*dz + k`` of every (m x ...) matrix belongs to sample i, output k.

Losses (both are means over the batch; the same functions are used to differentiate and to form H):

* ``"cross_entropy"``: L = mean_i CE(softmax(z_i), y_i), y int64 class labels (b,).
  dL/dz_i = (p_i - e_{y_i}) / b,  H_i = (diag(p_i) - p_i p_i^T) / b,
  S_i = (diag(sqrt p_i) - p_i sqrt(p_i)^T) / sqrt(b)  (S_i S_i^T = H_i because sum(p_i) = 1).
* ``"mse"``: L = mean_i 0.5 * ||z_i - y_i||^2  (half the squared error, SUMMED over outputs,
  averaged over the batch; y float (b, dz)). This is NOT torch's ``MSELoss()`` (which averages over
  all b*dz elements and has no 1/2: it equals 2/dz times this loss).
  dL/dz_i = (z_i - y_i) / b,  H_i = I / b,  S_i = I / sqrt(b).

H (m x m) is block diagonal with blocks H_i, so G = J^T H J = U U^T with U = J^T S is the GGN of the
mean loss itself (the 1/b is inside H and S).

Methods (U^T is (m x N), contiguous; U = Ut.T is a free view)
--------------------------------------------------------------
Each method fills an (m x N) tensor row by row with per-sample vector-Jacobian products: with the dz
columns of S_i as cotangents the rows are U^T directly (J_f is never formed); with the unit vectors
they are J_f, and then U^T = bmm(S^T, J_f) per sample. The gradient's cotangent dL/dz rides along
as one extra cotangent.

* ``"layers"``: for networks whose trainable parameters all sit in ``nn.Linear`` / ``nn.Conv2d``
  layers (groups=1, each called once). One batched forward with hooks records each layer's input
  a and output; one backward w.r.t. the layer outputs, vmapped over the dz+1 cotangents, gives the
  per-sample deltas; the rows are then delta (x) a (Linear: a broadcast multiply) or
  delta @ unfold(a)^T (Conv2d: a bmm), written straight into the preallocated output.
  No per-parameter gradient tensors, no copy of U^T. Fastest (~2-4x an Adam step, digits CNN).
  Falls back to "vjp"/"jacobian" (recorded in .method) when a layer runs twice, its input or
  output is modified in place, or it does not see the batch in dim 0. Assumes batch-first layers.
* ``"vjp"``: any per-sample-functional model. Per sample (vmap), ``torch.func.vjp`` of the model
  output with the dz+1 cotangents batched by an inner vmap; the parameter vector is split into
  views inside the function, so each row comes out flat, and is copied into the output.
* ``"jacobian"``: ``vmap(jacrev(f_single, has_aux=True))`` gives J_f (and the logits) per sample;
  g = J_f^T dL/dz.

All methods process the batch in chunks of samples so the temporary workspace stays within
``memory_budget`` bytes (default 256 MiB; the returned tensors J and U^T, m*N each, come on top).

Model requirements: the model must treat samples independently (no BatchNorm in training mode, no
cross-sample operations) and be deterministic (no active Dropout); ``check_functional`` enforces
what can be checked and raises ``UnsupportedModelError`` naming the layer.

Allocator note: on glibc, tensors over 32 MB are mmapped and handed back to the OS on every free,
so every step pays the page faults again (U^T of the digits CNN at b=64 is 43 MB: 3-5x slower).
Pass ``out=`` (a reused (m, N) buffer), or call ``tune_glibc_malloc()`` once per process, which
has the effect of ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824`` (the process then keeps
its peak heap instead of returning it to the OS).
"""
from __future__ import annotations

import ctypes
import math
import warnings
from dataclasses import dataclass, fields
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap
from torch.func import linearize as _func_linearize

from spu.core.errors import ThermospiceError

LOSSES = ("cross_entropy", "mse")
METHODS = ("auto", "layers", "vjp", "jacobian")
DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of temporary workspace per chunk


class UnsupportedModelError(ThermospiceError, ValueError):
    """The model cannot be differentiated per sample (batch statistics, random masks, ...)."""


class CurvatureError(ThermospiceError, ValueError):
    """Bad arguments to the curvature functions: loss name, shapes, labels, parameter vector."""


def tune_glibc_malloc(trim_threshold: int = 1 << 30) -> bool:
    """mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, trim_threshold) for this process.

    Big tensors then come from the heap and freed memory is kept for the next step instead of
    being unmapped and faulted in again. Process-wide and irreversible in practice; affects only
    later allocations. Returns False (doing nothing) where the C library has no working mallopt.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc <malloc.h>
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


# ----------------------------------------------------------------------------------------------
# model checks and the flat parameter vector


_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)


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
    offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)[:-1]])) if named else ()
    return ParamSpec(tuple(n for n, _ in named), tuple(p.shape for _, p in named), sizes, offsets)


def params_to_vector(model: nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The trainable parameters as one detached vector (a copy) of length N."""
    ps = [p.detach().reshape(-1) for p in model.parameters() if p.requires_grad]
    v = torch.cat(ps)
    return v.to(dtype) if dtype is not None else v


def vector_to_params(theta: torch.Tensor, model: nn.Module) -> None:
    """Copy the flat vector theta (length N) into the model's trainable parameters, in place."""
    spec = param_spec(model)
    theta = _check_vector("theta", theta, spec.N)
    with torch.no_grad():
        for p, part in zip((p for p in model.parameters() if p.requires_grad),
                           torch.split(theta, spec.sizes)):
            p.copy_(part.view_as(p))


def unflatten_params(theta: torch.Tensor, spec: ParamSpec) -> dict[str, torch.Tensor]:
    """Views of theta shaped like the parameters (the split makes gradients w.r.t. theta flat)."""
    return {n: t.view(s) for n, t, s in zip(spec.names, torch.split(theta, spec.sizes), spec.shapes)}


def _check_vector(what: str, v, n: int) -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(np.asarray(v))
    if v.dim() != 1 or v.shape[0] != n:
        raise CurvatureError(f"{what} must be a vector of length N={n}, got shape {tuple(v.shape)}")
    return v


def _resolve_params(model: nn.Module, spec: ParamSpec, params, dtype) -> torch.Tensor:
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
        theta = _check_vector("params", params, spec.N).detach()
    return theta.to(dtype)


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _buffers(model: nn.Module, dtype) -> dict[str, torch.Tensor]:
    return {n: (b.to(dtype) if b.is_floating_point() else b) for n, b in model.named_buffers()}


def _frozen(model: nn.Module, dtype) -> dict[str, torch.Tensor]:
    """Non-trainable parameters and buffers, passed to functional_call as constants."""
    out = _buffers(model, dtype)
    out.update({n: p.detach().to(dtype) for n, p in model.named_parameters() if not p.requires_grad})
    return out


def _batch_fn(model, spec, frozen) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def f(theta, x):
        pd = unflatten_params(theta, spec)
        pd.update(frozen)
        return functional_call(model, pd, (x,))
    return f


# ----------------------------------------------------------------------------------------------
# losses: value, output gradient r, H blocks, S blocks


def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise CurvatureError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def _check_targets(loss: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
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
    _check_loss(loss)
    y = _check_targets(loss, logits, y)
    if loss == "cross_entropy":
        return F.cross_entropy(logits, y)
    return 0.5 * (logits - y).pow(2).sum(-1).mean()


def output_factors(loss: str, logits: torch.Tensor, y: torch.Tensor | None, batch_size: int | None = None):
    """(r, H_blocks, S_blocks) for the mean loss over a batch of `batch_size` samples.

    logits (c, dz) may be a chunk of a batch of batch_size (default c) samples: the 1/b of the mean
    uses batch_size. r = dL/dz (c, dz) (None when y is None); H_blocks, S_blocks (c, dz, dz) with
    S_i S_i^T = H_i.
    """
    _check_loss(loss)
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


def _per_sample_factors(loss: str, z: torch.Tensor, y: torch.Tensor, b: int):
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


def _apply_H(loss: str, p_or_none: torch.Tensor | None, u: torch.Tensor, b: int) -> torch.Tensor:
    """H u for u (..., b, dz) without forming H."""
    if loss == "cross_entropy":
        p = p_or_none
        return (p * u - p * (p * u).sum(-1, keepdim=True)) / b
    return u / b


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
    """Everything TNGD needs from one minibatch. m = b*dz rows, N parameters.

    loss: scalar tensor; grad: (N,); logits: (b, dz); Ut: (m, N) contiguous U^T = S^T J_f
    (U = Ut.T, N x m, G = U U^T); J: (m, N) output Jacobian J_f; H: (m, m) block-diagonal H_L;
    S: (m, m) block-diagonal factor, S S^T = H; H_blocks, S_blocks: (b, dz, dz) the diagonal blocks;
    method: which U^T method ran. Optional fields are None unless asked for.
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
        """U = J_f^T S, (N, m): a transposed view of Ut (no copy)."""
        if self.Ut is None:
            raise CurvatureError("U was not computed (return_U=False)")
        return self.Ut.T

    def ggn_matrix(self) -> torch.Tensor:
        """Dense GGN U U^T (N x N). Only for small N."""
        return self.U @ self.Ut

    def to_numpy(self) -> dict[str, np.ndarray | None]:
        """All tensor fields as numpy arrays (None where not computed), plus 'U' = Ut.T."""
        out = {f.name: to_numpy(getattr(self, f.name)) for f in fields(self) if f.name != "method"}
        out["U"] = None if out["Ut"] is None else out["Ut"].T
        out["loss"] = float(out["loss"])
        return out


# ----------------------------------------------------------------------------------------------
# plain loss and gradient


def loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "cross_entropy", *,
                  params=None, dtype: torch.dtype | None = None):
    """(loss, grad (N,), logits) of the mean loss by one ordinary batched backward pass."""
    _check_loss(loss)
    check_functional(model)
    dtype = dtype or _model_dtype(model)
    spec = param_spec(model)
    theta = _resolve_params(model, spec, params, dtype).requires_grad_()
    f = _batch_fn(model, spec, _frozen(model, dtype))
    logits = f(theta, x.to(dtype))
    value = loss_value(loss, logits, y)
    (g,) = torch.autograd.grad(value, theta)
    return value.detach(), g, logits.detach()


# ----------------------------------------------------------------------------------------------
# the three U^T methods


_LAYER_TYPES = (nn.Linear, nn.Conv2d)


@dataclass
class _LayerPlan:
    modules: dict[str, nn.Module]  # module name -> module (exact Linear / Conv2d)
    rows: dict[str, tuple[slice | None, slice | None]]  # module name -> (weight slice, bias slice)


def _layer_plan(model: nn.Module, spec: ParamSpec) -> tuple[_LayerPlan | None, str]:
    """Plan for the 'layers' method, or (None, reason) when the model does not qualify."""
    covered: set[str] = set()
    modules, rows = {}, {}
    trainable = set(spec.names)
    for name, mod in model.named_modules():
        own = [n for n, p in mod.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        qual = [f"{name}.{n}" if name else n for n in own]
        if type(mod) not in _LAYER_TYPES:
            return None, f"trainable parameters in {type(mod).__name__} layer {name!r}"
        if isinstance(mod, nn.Conv2d) and (mod.groups != 1 or mod.padding_mode != "zeros"
                                           or isinstance(mod.padding, str)):
            return None, f"Conv2d layer {name!r} uses groups/padding mode/string padding"
        if mod._forward_pre_hooks or mod._forward_hooks:
            return None, f"layer {name!r} already has forward hooks"
        if set(own) - {"weight", "bias"} or not set(qual) <= trainable:
            return None, f"layer {name!r} has unexpected or shared parameters"
        pw = f"{name}.weight" if name else "weight"
        pb = f"{name}.bias" if name else "bias"
        rows[name] = (spec.slice(pw) if pw in qual else None, spec.slice(pb) if pb in qual else None)
        modules[name] = mod
        covered.update(qual)
    if covered != trainable:
        return None, f"parameters {sorted(trainable - covered)} are not in Linear/Conv2d layers"
    return _LayerPlan(modules, rows), ""


class _Fallback(Exception):
    pass


def _rows_layers(model, spec, plan, theta, frozen, x, make_C, Ut3, g, i0):
    """Rows i0.. of Ut3 (b, dz, N) and this chunk's gradient added into g, by the layers method.

    make_C(logits) -> (dz+1, c, dz) cotangents: C[k] = S[:, :, k] (rows of U^T) or e_k (rows of
    J_f) for k < dz, C[dz] = r = dL/dz.
    """
    f = _batch_fn(model, spec, frozen)
    store: dict[str, list] = {n: [] for n in plan.modules}

    def hook_for(name):
        def hook(mod, inp, out):
            if not inp or not isinstance(out, torch.Tensor):
                store[name].append(None)
            else:
                store[name].append((inp[0], inp[0]._version, out, out._version))
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in plan.modules.items()]
    try:
        z = f(theta.detach().requires_grad_(), x)
    finally:
        for h in handles:
            h.remove()
    c = x.shape[0]
    for name, calls in store.items():
        if len(calls) != 1:
            raise _Fallback(f"layer {name!r} ran {len(calls)} times in one forward pass")
        if calls[0] is None:
            raise _Fallback(f"layer {name!r} was called with keyword arguments")
        a, va, o, vo = calls[0]
        if a._version != va or o._version != vo:
            raise _Fallback(f"layer {name!r}: input or output modified in place")
        # the sample must be dim 0 of every layer's input and output (a (T, b, d) layout with
        # T == b would slip through: the layers method assumes batch-first layers)
        if a.shape[0] != c or o.shape[0] != c:
            raise _Fallback(f"layer {name!r} does not see the batch in dim 0")
    names = list(plan.modules)
    outs = [store[n][0][2] for n in names]
    C = make_C(z.detach())
    deltas = torch.autograd.grad(z, outs, C, is_grads_batched=True, allow_unused=True)
    dz1, _, dz = C.shape
    dzs = dz1 - 1
    rows = Ut3[i0:i0 + c]  # (c, dz, N)
    for name, d in zip(names, deltas):
        mod = plan.modules[name]
        a = store[name][0][0].detach()
        sw, sb = plan.rows[name]
        if d is None:  # layer output does not reach the model output
            if sw is not None:
                rows[:, :, sw].zero_()
            if sb is not None:
                rows[:, :, sb].zero_()
            continue
        if isinstance(mod, nn.Linear):
            out_f, in_f = mod.out_features, mod.in_features
            d = d.reshape(dz1, c, -1, out_f)  # (dz+1, c, T, out)
            a = a.reshape(c, -1, in_f)  # (c, T, in)
            dS = d[:dzs]
            if sw is not None:
                dst = rows[:, :, sw].view(c, dzs, out_f, in_f)
                if a.shape[1] == 1:
                    torch.mul(dS[:, :, 0].permute(1, 0, 2)[..., None], a[:, None, :, :], out=dst)
                else:
                    dst.copy_(torch.matmul(dS.permute(1, 0, 3, 2), a[:, None]))
                g[sw].view(out_f, in_f).add_(d[dzs].reshape(-1, out_f).T @ a.reshape(-1, in_f))
            if sb is not None:
                rows[:, :, sb].copy_(dS.sum(2).permute(1, 0, 2))
                g[sb].add_(d[dzs].sum((0, 1)))
        else:  # Conv2d, groups=1
            co = mod.out_channels
            d = d.reshape(dz1, c, co, -1)  # (dz+1, c, co, P)
            dS = d[:dzs]
            if sw is not None:
                unf = F.unfold(a, mod.kernel_size, mod.dilation, mod.padding, mod.stride)  # (c, K, P)
                K = unf.shape[1]
                w = torch.bmm(dS.permute(1, 0, 2, 3).reshape(c, dzs * co, -1), unf.transpose(1, 2))
                rows[:, :, sw].copy_(w.view(c, dzs, co * K))
                g[sw].view(co, K).add_(torch.einsum("cop,ckp->ok", d[dzs], unf))
            if sb is not None:
                rows[:, :, sb].copy_(dS.sum(-1).permute(1, 0, 2))
                g[sb].add_(d[dzs].sum((0, 2)))
    return z.detach()


def _probe(model, spec, frozen, theta, x1, plan):
    """One-sample forward (no grad): the logits, and the layers method's workspace per sample."""
    seen = []

    def hook(mod, inp, out):
        seen.append((mod, inp[0][0].numel(), out[0].numel()))

    handles = [m.register_forward_hook(hook) for m in plan.modules.values()] if plan else []
    try:
        with torch.no_grad():
            z0 = _batch_fn(model, spec, frozen)(theta, x1)
    finally:
        for h in handles:
            h.remove()
    if z0.dim() != 2:
        raise CurvatureError(f"model output must be (batch, dz), got shape {tuple(z0.shape)}")
    dz = z0.shape[1]
    words = 0
    for mod, n_in, n_out in seen:  # deltas for dz+1 cotangents (x3 for autograd temporaries)
        words += 3 * (dz + 1) * n_out + n_in
        if isinstance(mod, nn.Conv2d):  # unfolded input and the bmm result before the copy
            kk = mod.kernel_size[0] * mod.kernel_size[1]
            words += n_in * kk + dz * mod.weight.numel()
    return z0, words * theta.element_size()


def _rows_vjp(model, spec, theta, frozen, loss, x, y, b, rows3, g, i0, jacobian=False):
    """Rows i0.. of U^T (or of J_f with jacobian=True) into rows3 (b, dz, N) by per-sample vjp
    with dz+1 batched cotangents (the S columns, or the unit vectors; then dL/dz); adds the chunk's
    gradient into g. Returns the chunk's logits."""
    f = _batch_fn(model, spec, frozen)

    def per_sample(xi, yi):
        z, pull = vjp(lambda th: f(th, xi.unsqueeze(0)).squeeze(0), theta)
        St, r = _per_sample_factors(loss, z, yi, b)
        if jacobian:
            St = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        (rows,) = vmap(pull)(torch.cat([St, r[None]]))  # (dz+1, N)
        return z, rows

    z, rows = vmap(per_sample)(x, y)  # (c, dz), (c, dz+1, N)
    dz = z.shape[1]
    rows3[i0:i0 + z.shape[0]].copy_(rows[:, :dz])
    g.add_(rows[:, dz].sum(0))
    return z


def _jac_chunk(model, spec, theta, frozen, x):
    f = _batch_fn(model, spec, frozen)

    def fs(th, xi):
        z = f(th, xi.unsqueeze(0)).squeeze(0)
        return z, z

    J, z = vmap(jacrev(fs, has_aux=True), in_dims=(None, 0))(theta, x)  # (c, dz, N), (c, dz)
    return J, z


def _chunks(b: int, chunk_size: int):
    for i0 in range(0, b, chunk_size):
        yield i0, min(b, i0 + chunk_size)


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
) -> Curvature:
    """Loss, gradient, logits and U^T = S^T J_f (plus J_f, H_L, S on request) for one minibatch.

    params: None (the model's current trainable parameters), a flat vector (N,), or a mapping
        name -> tensor. The model itself is never modified.
    method: "auto" ("layers" when the model qualifies, else "jacobian" if return_J else "vjp";
        with return_U=return_J=False only the gradient is computed, by one backward pass), or one
        of "layers", "vjp", "jacobian" (see the module docstring). "layers" falls back (recorded in
        .method) when the model turns out not to qualify during the forward pass.
    chunk_size: samples per chunk; default: as many as fit in memory_budget bytes of workspace.
    dtype: computation dtype (default: the model's); params, buffers and x are converted.
    out: optional preallocated contiguous (m, N) tensor of `dtype` to write U^T into (reusing it
        across steps avoids page faults on every step).
    """
    _check_loss(loss)
    if method not in METHODS:
        raise CurvatureError(f"method must be one of {METHODS}, got {method!r}")
    check_functional(model)
    dtype = dtype or _model_dtype(model)
    spec = param_spec(model)
    N = spec.N
    theta = _resolve_params(model, spec, params, dtype)
    frozen = _frozen(model, dtype)
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
        plan, why_not = _layer_plan(model, spec)
        if method == "layers" and plan is None:
            raise UnsupportedModelError(f"method='layers' cannot handle this model: {why_not}")
        if method == "auto":
            method = "layers" if plan is not None else ("jacobian" if return_J else "vjp")

    # dz (and the layers method's workspace) from a one-sample forward pass
    z0, layer_bytes = _probe(model, spec, frozen, theta, x[:1], plan)
    dz = z0.shape[1]
    m = b * dz
    if loss == "mse" and y.dim() == 1 and dz == 1:
        y = y[:, None]
    item = theta.element_size()
    y = _check_targets(loss, z0.expand(b, dz), y)

    def auto_chunk(method):
        if chunk_size is not None:
            return chunk_size
        per = {"layers": layer_bytes, "vjp": 3 * (dz + 1) * N * item, "jacobian": 3 * dz * N * item}[method]
        return max(1, min(b, memory_budget // max(per, 1)))

    if not return_U and not return_J:  # gradient only: one ordinary backward pass
        value, g, logits = loss_and_grad(model, x, y, loss, params=theta, dtype=dtype)
        _, Hb, Sb = output_factors(loss, logits, None, b)
        return Curvature(value, g, logits, None,
                         H=torch.block_diag(*Hb) if return_H else None,
                         S=torch.block_diag(*Sb) if return_S else None,
                         H_blocks=Hb if return_H else None,
                         S_blocks=Sb.contiguous() if return_S else None, method="backward")

    if out is not None:
        if tuple(out.shape) != (m, N) or out.dtype != dtype or not out.is_contiguous():
            raise CurvatureError(
                f"out must be a contiguous ({m}, {N}) tensor of {dtype}, got "
                f"{tuple(out.shape)} {out.dtype} contiguous={out.is_contiguous()}"
            )
    # rows: the (m, N) tensor the row methods fill: J_f when asked for (U^T = S^T J_f follows by
    # bmm), else U^T itself
    rows = torch.empty(m, N, dtype=dtype) if return_J or out is None else out
    rows3 = rows.view(b, dz, N)
    g = torch.zeros(N, dtype=dtype)
    logits = torch.empty(b, dz, dtype=dtype)

    if method == "layers":
        try:
            for i0, i1 in _chunks(b, auto_chunk("layers")):
                def make_C(zc, yc=y[i0:i1]):
                    r, _, S = output_factors(loss, zc, yc, b)
                    if return_J:
                        S = torch.eye(dz, dtype=dtype).expand(zc.shape[0], dz, dz)
                    return torch.cat([S.permute(2, 0, 1), r[None]])

                logits[i0:i1] = _rows_layers(model, spec, plan, theta, frozen, x[i0:i1], make_C, rows3, g, i0)
        except _Fallback:
            method = "jacobian" if return_J else "vjp"
            g.zero_()
    if method == "vjp":
        for i0, i1 in _chunks(b, auto_chunk("vjp")):
            logits[i0:i1] = _rows_vjp(model, spec, theta, frozen, loss, x[i0:i1], y[i0:i1], b, rows3, g,
                                      i0, jacobian=return_J)
    if method == "jacobian":
        if not return_J:
            rows = torch.empty(m, N, dtype=dtype)  # J_f scratch; U^T goes into out
            rows3 = rows.view(b, dz, N)
        for i0, i1 in _chunks(b, auto_chunk("jacobian")):
            Jc, zc = _jac_chunk(model, spec, theta, frozen, x[i0:i1])
            rows3[i0:i1].copy_(Jc)
            logits[i0:i1] = zc
            del Jc
        r, _, _ = output_factors(loss, logits, y, b)
        torch.mv(rows.T, r.reshape(-1), out=g)

    J = rows if (return_J or method == "jacobian") else None
    Ut = None
    if J is None:
        Ut = rows
    elif return_U:
        _, _, S = output_factors(loss, logits, None, b)
        Ut = out if out is not None else torch.empty(m, N, dtype=dtype)
        torch.bmm(S.transpose(1, 2), J.view(b, dz, N), out=Ut.view(b, dz, N))
    if not return_J:
        J = None

    value = loss_value(loss, logits, y).detach()
    _, Hb, Sb = output_factors(loss, logits, None, b)
    return Curvature(
        loss=value,
        grad=g,
        logits=logits,
        Ut=Ut if return_U else None,
        J=J,
        H=torch.block_diag(*Hb) if return_H else None,
        S=torch.block_diag(*Sb) if return_S else None,
        H_blocks=Hb if return_H else None,
        S_blocks=Sb.contiguous() if return_S else None,
        method=method,
    )


# ----------------------------------------------------------------------------------------------
# matrix-free GGN-vector products


class GGNOperator:
    """v -> (J^T H J + damping*I) v for a fixed batch and parameters, never forming a matrix.

    Built once per batch: the forward pass, the softmax probabilities and the vjp (pull-back) are
    stored; each product is one jvp (a forward pass with tangents; or a stored linearization when
    linearize=True, which costs more to build and less per product) and one vjp.
    v may be (N,) or (N, k) (k products at once, vmapped).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, loss: str = "cross_entropy", *,
                 params=None, dtype: torch.dtype | None = None, damping: float = 0.0,
                 linearize: bool = False):
        _check_loss(loss)
        check_functional(model)
        self.loss = loss
        self.dtype = dtype or _model_dtype(model)
        self.spec = param_spec(model)
        self.N = self.spec.N
        self.damping = float(damping)
        self.theta = _resolve_params(model, self.spec, params, self.dtype)
        fb = _batch_fn(model, self.spec, _frozen(model, self.dtype))
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
        (out,) = self._pull(_apply_H(self.loss, self._p, jv, self.b))
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


def make_ggn_vp(model: nn.Module, x: torch.Tensor, loss: str = "cross_entropy", *, params=None,
                dtype: torch.dtype | None = None, damping: float = 0.0,
                linearize: bool = False) -> GGNOperator:
    """Reusable closure v -> (G + damping I) v for repeated products (CG). See GGNOperator."""
    return GGNOperator(model, x, loss, params=params, dtype=dtype, damping=damping, linearize=linearize)


def ggn_vp(model: nn.Module, params, x: torch.Tensor, loss: str, v: torch.Tensor, *,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    """One GGN-vector product J^T H J v (v: (N,) or (N, k)); params as in compute_curvature."""
    return GGNOperator(model, x, loss, params=params, dtype=dtype)(v)
