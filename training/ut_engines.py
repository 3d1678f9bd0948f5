"""The U^T engines: fill an (m, N) tensor row by row with per-sample vector-Jacobian products.

Every engine is given, per sample i, k cotangent columns F_i (dz x k) and the gradient's cotangent
r_i = dL/dz_i, and writes the k rows F_i^T J_i of sample i (J_i = dz_i/dtheta, dz x N) into rows
``i*k .. i*k + k - 1``, and adds sum_i J_i^T r_i (the gradient) into g. With F_i = S_i the rows
are U^T directly (J_f is never formed); with F_i = I they are J_f. k need not equal dz.

* ``fill_layers``: for networks whose trainable parameters all sit in ``nn.Linear`` /
  ``nn.Conv2d`` layers (groups=1, each called once). One batched forward with hooks records each
  layer's input a and output; one backward w.r.t. the layer outputs, vmapped over the k+1
  cotangents, gives the per-sample deltas; the rows are then delta (x) a (Linear: a broadcast
  multiply) or delta @ unfold(a)^T (Conv2d: a bmm), written straight into the preallocated output.
  No per-parameter gradient tensors, no copy of U^T. Fastest (~2-4x an Adam step, digits CNN).
  Raises ``LayersFallback`` when a layer runs twice, its input or output is modified in place, or
  it does not see the batch in dim 0 (the dispatcher then uses another engine). Batch-first only.
* ``fill_vjp``: any per-sample-functional model. Per sample (vmap), ``torch.func.vjp`` of the
  model output with the k+1 cotangents batched by an inner vmap; the parameter vector is split into
  views inside the function, so each row comes out flat, and is copied into the output.
* ``fill_jacobian``: ``vmap(jacrev(f_single, has_aux=True))`` gives J_f (and the logits) per
  sample; g = J_f^T dL/dz. The dispatcher forms F^T J_f by bmm when it needs other rows.

``forward(x)`` is the model as a function of the batch at the parameters wanted (``batch_forward``).
All engines process the batch in chunks of samples (``chunk`` samples each), sized by the caller
so the temporary workspace stays within its memory budget (``workspace_per_sample``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev, vjp, vmap

from .params import CurvatureError, ParamSpec, batch_fn


def batch_forward(model, spec, theta, frozen, params_given: bool):
    """x -> logits at theta, with autograd reaching every trainable layer's output. Where theta
    is the model's own parameters in their own dtype the module is called as it is: the
    functional_call that substitutes theta cost ~0.15 ms per call on the digits CNN, 5 % of the
    MC Fisher's step (the outputs then depend on the module's parameters, which require grad)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    tensors = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
    if not params_given and trainable and all(v.dtype == theta.dtype for v in tensors):
        return model
    f = batch_fn(model, spec, frozen)
    return lambda x: f(theta.detach().requires_grad_(), x)


def chunks(b: int, chunk_size: int):
    for i0 in range(0, b, chunk_size):
        yield i0, min(b, i0 + chunk_size)


# ----------------------------------------------------------------------------------------------
# the layers engine


_LAYER_TYPES = (nn.Linear, nn.Conv2d)


@dataclass
class _LayerPlan:
    modules: dict[str, nn.Module]  # module name -> module (exact Linear / Conv2d)
    rows: dict[str, tuple[slice | None, slice | None]]  # module name -> (weight slice, bias slice)


def layer_plan(model: nn.Module, spec: ParamSpec) -> tuple[_LayerPlan | None, str]:
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
        if isinstance(mod, nn.Conv2d) and (
            mod.groups != 1 or mod.padding_mode != "zeros" or isinstance(mod.padding, str)
        ):
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


class LayersFallback(Exception):
    """The model turned out not to qualify for the layers engine during the forward pass."""


class GramParts:
    """The factors of the rows the layers engine wrote, for their Gram matrix rows @ rows^T.

    A Linear layer seen once per sample writes rows D[r] (x) A[i] (weight) and D[r] (bias), r the
    row, i = r // k its sample, so its share of the Gram is (D D^T) * (A A^T + 1) elementwise:
    O(m^2 (out + in)) instead of O(m^2 out in). Every other trainable column (Conv2d layers, Linear
    layers applied along an extra dimension) is in `direct` and enters as the product of those
    columns of the rows. The digits CNN (N = 16 826, m = 640): ~10 ms against ~200 ms."""

    def __init__(self, k: int):
        self.k = k  # rows per sample
        self.kron: dict[str, tuple[list, list, bool, bool]] = {}
        self.direct: list[slice] = []

    def add_linear(self, name: str, D: torch.Tensor, A: torch.Tensor, weight: bool, bias: bool) -> None:
        entry = self.kron.setdefault(name, ([], [], weight, bias))
        entry[0].append(D.detach())
        entry[1].append(A.detach())

    def add_direct(self, sl: slice) -> None:
        if sl not in self.direct:
            self.direct.append(sl)

    def gram(self, rows: torch.Tensor):
        """rows @ rows^T (m x m) in float64, as a numpy array; rows: the (m, N) tensor written."""
        m, k = rows.shape[0], self.k
        b = m // k
        K = torch.zeros(m, m, dtype=torch.float64)
        K4 = K.view(b, k, b, k)
        for D_chunks, A_chunks, weight, bias in self.kron.values():
            D = torch.cat(D_chunks).double()  # (m, out)
            DD = (D @ D.T).view(b, k, b, k)
            if weight:
                A = torch.cat(A_chunks).double()  # (b, in)
                AA = A @ A.T
                if bias:
                    AA += 1.0
                K4.addcmul_(DD, AA[:, None, :, None])  # sample pairs (i, j) broadcast over (k, l)
            elif bias:
                K4.add_(DD)
        if self.direct:
            cols = torch.cat([rows[:, sl] for sl in self.direct], dim=1).double()
            K += cols @ cols.T
        return K.numpy()


def _rows_layers(forward, plan, x, make_C, Ut3, g, i0, parts=None):
    """Rows i0.. of Ut3 (b, dz, N) and this chunk's gradient added into g, by the layers method.

    make_C(logits) -> (dz+1, c, dz) cotangents: C[k] = S[:, :, k] (rows of U^T) or e_k (rows of
    J_f) for k < dz, C[dz] = r = dL/dz. parts: a GramParts to record the rows' factors in.
    """
    z, calls = _hooked_forward(forward, plan, x)
    names = list(plan.modules)
    C = make_C(z.detach())
    deltas = torch.autograd.grad(z, [calls[n][2] for n in names], C, is_grads_batched=True, allow_unused=True)
    with_grad = g is not None  # C[-1] is then the gradient's cotangent r
    dz1 = C.shape[0]
    dzs = dz1 - 1 if with_grad else dz1
    rows = Ut3[i0 : i0 + x.shape[0]]  # (c, dz, N)
    for name, d in zip(names, deltas):
        mod = plan.modules[name]
        a = calls[name][0].detach()
        sw, sb = plan.rows[name]
        if d is None:  # layer output does not reach the model output
            if sw is not None:
                rows[:, :, sw].zero_()
            if sb is not None:
                rows[:, :, sb].zero_()
            continue
        write = _linear_rows if isinstance(mod, nn.Linear) else _conv_rows
        write(name, mod, a, d, (sw, sb), rows, g if with_grad else None, dzs, parts)
    return z.detach()


def _hooked_forward(forward, plan, x):
    """(logits, name -> (input, output) of the one call of each planned layer), or LayersFallback
    when some layer breaks what the layers method assumes."""
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
        z = forward(x)
    finally:
        for h in handles:
            h.remove()
    c = x.shape[0]
    for name, calls in store.items():
        if len(calls) != 1:
            raise LayersFallback(f"layer {name!r} ran {len(calls)} times in one forward pass")
        if calls[0] is None:
            raise LayersFallback(f"layer {name!r} was called with keyword arguments")
        a, va, o, vo = calls[0]
        if a._version != va or o._version != vo:
            raise LayersFallback(f"layer {name!r}: input or output modified in place")
        # the sample must be dim 0 of every layer's input and output (a (T, b, d) layout with
        # T == b would slip through: the layers method assumes batch-first layers)
        if a.shape[0] != c or o.shape[0] != c:
            raise LayersFallback(f"layer {name!r} does not see the batch in dim 0")
    return z, {name: calls[0] for name, calls in store.items()}


def _linear_rows(name, mod, a, d, slices, rows, g, dzs, parts):
    """A Linear layer's rows delta (x) a (weight) and delta (bias), from its deltas d (dz+1, c, ...,
    out) and input a; its share of the gradient into g (None: no gradient cotangent in d)."""
    sw, sb = slices
    c, dz1 = rows.shape[0], d.shape[0]
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
        if g is not None:
            g[sw].view(out_f, in_f).add_(d[dzs].reshape(-1, out_f).T @ a.reshape(-1, in_f))
    if sb is not None:
        rows[:, :, sb].copy_(dS.sum(2).permute(1, 0, 2))
        if g is not None:
            g[sb].add_(d[dzs].sum((0, 1)))
    if parts is not None:
        if a.shape[1] == 1:
            parts.add_linear(
                name, dS[:, :, 0].permute(1, 0, 2).reshape(c * dzs, out_f), a[:, 0], sw is not None, sb is not None
            )
        else:
            for sl in (sw, sb):
                if sl is not None:
                    parts.add_direct(sl)


def _conv_rows(name, mod, a, d, slices, rows, g, dzs, parts):
    """A Conv2d layer's (groups=1) rows delta @ unfold(a)^T (weight) and the summed deltas (bias)."""
    sw, sb = slices
    c, dz1 = rows.shape[0], d.shape[0]
    co = mod.out_channels
    d = d.reshape(dz1, c, co, -1)  # (dz+1, c, co, P)
    dS = d[:dzs]
    if sw is not None:
        unf = F.unfold(a, mod.kernel_size, mod.dilation, mod.padding, mod.stride)  # (c, K, P)
        K = unf.shape[1]
        w = torch.bmm(dS.permute(1, 0, 2, 3).reshape(c, dzs * co, -1), unf.transpose(1, 2))
        rows[:, :, sw].copy_(w.view(c, dzs, co * K))
        if g is not None:
            g[sw].view(co, K).add_(torch.einsum("cop,ckp->ok", d[dzs], unf))
    if sb is not None:
        rows[:, :, sb].copy_(dS.sum(-1).permute(1, 0, 2))
        if g is not None:
            g[sb].add_(d[dzs].sum((0, 2)))
    if parts is not None:
        for sl in (sw, sb):
            if sl is not None:
                parts.add_direct(sl)


def fill_layers(forward, plan, x, cotangents, rows3, g, logits, chunk, parts=None):
    """All rows by the layers engine. cotangents(zc, i0, i1) -> (F (c, dz, k), r (c, dz)) for the
    chunk's logits zc; rows3 is the (b, k, N) view of the output. Fills logits (b, dz), and
    `parts` (a GramParts) when given. g=None: no gradient (cotangents then return r=None; one
    cotangent fewer per backward)."""
    for i0, i1 in chunks(x.shape[0], chunk):

        def make_C(zc, i0=i0, i1=i1):
            Fc, r = cotangents(zc, i0, i1)
            Ct = Fc.permute(2, 0, 1)
            return Ct if g is None else torch.cat([Ct, r[None]])

        logits[i0:i1] = _rows_layers(forward, plan, x[i0:i1], make_C, rows3, g, i0, parts)


def probe(forward, x1, plan):
    """One-sample forward (no grad): (logits (1, dz), the layers' (module, input size, output
    size) per sample, for workspace_per_sample)."""
    seen = []

    def hook(mod, inp, out):
        seen.append((mod, inp[0][0].numel(), out[0].numel()))

    handles = [m.register_forward_hook(hook) for m in plan.modules.values()] if plan else []
    try:
        with torch.no_grad():
            z0 = forward(x1)
    finally:
        for h in handles:
            h.remove()
    if z0.dim() != 2:
        raise CurvatureError(f"model output must be (batch, dz), got shape {tuple(z0.shape)}")
    return z0, seen


def workspace_per_sample(engine: str, seen, k: int, N: int, itemsize: int) -> int:
    """Bytes of temporary workspace per sample of a chunk, for k cotangent columns per sample."""
    if engine == "vjp":
        return 3 * (k + 1) * N * itemsize
    if engine == "jacobian":
        return 3 * k * N * itemsize
    words = 0
    for mod, n_in, n_out in seen:  # deltas for k+1 cotangents (x3 for autograd temporaries)
        words += 3 * (k + 1) * n_out + n_in
        if isinstance(mod, nn.Conv2d):  # unfolded input and the bmm result before the copy
            kk = mod.kernel_size[0] * mod.kernel_size[1]
            words += n_in * kk + k * mod.weight.numel()
    return words * itemsize


# ----------------------------------------------------------------------------------------------
# the torch.func engines


def fill_vjp(model, spec, theta, frozen, x, per_sample_cotangents, extra, rows3, g, logits, chunk):
    """All rows by per-sample vjp. per_sample_cotangents(z_i, *extra_i) -> (Ft_i (k, dz), r_i (dz,))
    runs inside vmap (extra: tuple of per-sample tensors, batch in dim 0)."""
    f = batch_fn(model, spec, frozen)

    def per_sample(xi, *ei):
        z, pull = vjp(lambda th: f(th, xi.unsqueeze(0)).squeeze(0), theta)
        Ft, r = per_sample_cotangents(z, *ei)
        (rows,) = vmap(pull)(torch.cat([Ft, r[None]]))  # (k+1, N)
        return z, rows

    for i0, i1 in chunks(x.shape[0], chunk):
        z, rows = vmap(per_sample)(x[i0:i1], *(e[i0:i1] for e in extra))  # (c, dz), (c, k+1, N)
        k = rows.shape[1] - 1
        rows3[i0:i1].copy_(rows[:, :k])
        g.add_(rows[:, k].sum(0))
        logits[i0:i1] = z


def fill_jacobian(model, spec, theta, frozen, x, rows3, logits, chunk):
    """J_f into rows3 (b, dz, N) and the logits, by vmap(jacrev) per sample (no gradient)."""
    f = batch_fn(model, spec, frozen)

    def fs(th, xi):
        z = f(th, xi.unsqueeze(0)).squeeze(0)
        return z, z

    for i0, i1 in chunks(x.shape[0], chunk):
        J, z = vmap(jacrev(fs, has_aux=True), in_dims=(None, 0))(theta, x[i0:i1])  # (c, dz, N), (c, dz)
        rows3[i0:i1].copy_(J)
        logits[i0:i1] = z
        del J
