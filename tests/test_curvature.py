"""training.curvature against dense autograd references (float64, small models, b = 4)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_cases import D64, batch, small_cnn, small_mlp

from training.curvature import (
    Curvature,
    compute_curvature,
    gradient_curvature,
    jacobian_curvature,
    loss_and_grad,
    make_ggn_vp,
    param_spec,
    params_to_vector,
)
from training.ggn_operator import GGNOperator, ggn_vp
from training.losses import loss_value, output_factors
from training.models import build_model
from training.params import CurvatureError, UnsupportedModelError, check_functional, unflatten_params, vector_to_params

# torch's forward-mode AD scripts its decompositions on first use and warns that jit is deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

METHODS = ("layers", "vjp", "jacobian")


class Reference:
    """Dense quantities from torch.autograd.functional, independent of the code under test."""

    def __init__(self, model, x, y, loss):
        spec = param_spec(model)
        self.theta = params_to_vector(model).clone()

        def f(theta):
            return torch.func.functional_call(model, unflatten_params(theta, spec), (x,))

        def L(theta):
            return loss_value(loss, f(theta), y)

        self.f, self.L = f, L
        self.z = f(self.theta).detach()
        b, dz = self.z.shape
        self.J = torch.autograd.functional.jacobian(f, self.theta).reshape(b * dz, -1)
        Hz = torch.autograd.functional.hessian(lambda z: loss_value(loss, z.reshape(b, dz), y), self.z.reshape(-1))
        self.H = Hz
        self.G = self.J.T @ Hz @ self.J
        self.grad = torch.autograd.functional.jacobian(L, self.theta)
        self.loss = L(self.theta).detach()


@pytest.fixture(scope="module", params=["cross_entropy", "mse"])
def mlp_case(request):
    loss = request.param
    model = small_mlp()
    x, y = batch(loss)
    return loss, model, x, y, Reference(model, x, y, loss)


@pytest.mark.parametrize("method", METHODS)
def test_U_grad_loss_match_dense_ggn(mlp_case, method):
    loss, model, x, y, ref = mlp_case
    c = compute_curvature(model, x, y, loss, method=method)
    assert c.method == method
    assert c.Ut.shape == (12, param_spec(model).N) and c.Ut.is_contiguous()
    torch.testing.assert_close(c.ggn_matrix(), ref.G, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.grad, ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.loss, ref.loss)
    torch.testing.assert_close(c.logits, ref.z)


@pytest.mark.parametrize("method", ["auto", *METHODS])
def test_jacobian_H_S_match_autograd(mlp_case, method):
    loss, model, x, y, ref = mlp_case
    c = jacobian_curvature(model, x, y, loss, method=method)
    assert c.method == ("layers" if method == "auto" else method)
    torch.testing.assert_close(c.J, ref.J, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.H, ref.H, rtol=1e-10, atol=1e-12)  # block diagonal, includes 1/b
    torch.testing.assert_close(c.S @ c.S.T, c.H, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(c.Ut, c.S.T @ c.J, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(c.J.T @ c.H @ c.J, ref.G, rtol=1e-10, atol=1e-12)
    for i in range(4):
        torch.testing.assert_close(c.H[3 * i : 3 * i + 3, 3 * i : 3 * i + 3], c.H_blocks[i])
        torch.testing.assert_close(c.S[3 * i : 3 * i + 3, 3 * i : 3 * i + 3], c.S_blocks[i])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunk", [1, 3])
def test_chunked_equals_unchunked(mlp_case, method, chunk):
    loss, model, x, y, ref = mlp_case
    full = compute_curvature(model, x, y, loss, method=method)
    part = jacobian_curvature(model, x, y, loss, method=method, chunk_size=chunk)
    torch.testing.assert_close(part.Ut, full.Ut, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(part.grad, full.grad, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(part.J, ref.J, rtol=1e-10, atol=1e-12)
    # a tiny memory budget forces one sample per chunk
    tiny = compute_curvature(model, x, y, loss, method=method, memory_budget=1)
    torch.testing.assert_close(tiny.Ut, full.Ut, rtol=1e-12, atol=1e-14)


def test_linear_model_mse_ggn_is_the_hessian():
    torch.manual_seed(3)
    model = nn.Linear(5, 2).to(D64)
    x, y = batch("mse", d_in=5, d_out=2)
    c = compute_curvature(model, x, y, "mse")
    ref = Reference(model, x, y, "mse")
    hess = torch.autograd.functional.hessian(ref.L, ref.theta)
    torch.testing.assert_close(c.ggn_matrix(), hess, rtol=1e-10, atol=1e-12)
    # MSE convention: H = I/b per sample
    _, H, S = output_factors("mse", c.logits, None)
    torch.testing.assert_close(H[0], torch.eye(2, dtype=D64) / 4)


def test_loss_conventions():
    z = torch.randn(4, 3, dtype=D64)
    yc = torch.tensor([0, 2, 1, 2])
    ym = torch.randn(4, 3, dtype=D64)
    torch.testing.assert_close(loss_value("cross_entropy", z, yc), F.cross_entropy(z, yc))
    torch.testing.assert_close(loss_value("mse", z, ym), 0.5 * ((z - ym) ** 2).sum() / 4)
    torch.testing.assert_close(loss_value("mse", z, ym), F.mse_loss(z, ym) * 3 / 2)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_cnn_methods_agree(loss):
    model = small_cnn()
    x, y = batch(loss, d_out=10, image=True)
    cj = jacobian_curvature(model, x, y, loss, method="jacobian")
    ref_grad = loss_and_grad(model, x, y, loss)[1]
    auto = compute_curvature(model, x, y, loss)
    assert auto.method == "layers"
    for method in ("layers", "vjp"):
        c = compute_curvature(model, x, y, loss, method=method, chunk_size=3)
        torch.testing.assert_close(c.Ut, cj.Ut, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(c.grad, ref_grad, rtol=1e-10, atol=1e-13)
        cJ = jacobian_curvature(model, x, y, loss, method=method)
        torch.testing.assert_close(cJ.J, cj.J, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(cJ.Ut, cj.Ut, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(auto.Ut, cj.Ut, rtol=1e-10, atol=1e-13)
    # J against autograd for the conv model too
    ref = torch.autograd.functional.jacobian(
        lambda th: torch.func.functional_call(model, unflatten_params(th, param_spec(model)), (x,)),
        params_to_vector(model),
    ).reshape(40, -1)
    torch.testing.assert_close(cj.J, ref, rtol=1e-10, atol=1e-13)


def test_grad_matches_backward_float32():
    model = build_model("mlp", width=16, seed=2)
    x, y = batch("cross_entropy", b=8, d_in=64, d_out=10)
    x = x.float()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    ref = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    for method in METHODS:
        c = compute_curvature(model, x, y, method=method)
        assert c.Ut.dtype == torch.float32
        torch.testing.assert_close(c.grad, ref, rtol=1e-5, atol=1e-7)


def test_dtype_option_and_params_forms():
    model = build_model("mlp", width=8, seed=1)  # float32 model
    x, y = batch("cross_entropy", b=4, d_in=64, d_out=10)
    theta = params_to_vector(model, D64) * 1.1
    before = params_to_vector(model).clone()
    c = compute_curvature(model, x.float(), y, params=theta, dtype=D64)
    assert c.Ut.dtype == D64 and c.grad.dtype == D64
    torch.testing.assert_close(params_to_vector(model), before)  # model untouched
    d = compute_curvature(model, x, y, params=unflatten_params(theta, param_spec(model)), dtype=D64)
    torch.testing.assert_close(d.Ut, c.Ut)
    m64 = build_model("mlp", width=8, seed=1, dtype=D64)
    vector_to_params(theta, m64)
    e = compute_curvature(m64, x, y)
    torch.testing.assert_close(e.Ut, c.Ut)


def test_gradient_only_path(mlp_case):
    loss, model, x, y, ref = mlp_case
    c = gradient_curvature(model, x, y, loss)
    assert c.method == "backward" and c.Ut is None and c.J is None
    torch.testing.assert_close(c.grad, ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.H, ref.H, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.S @ c.S.T, ref.H, rtol=1e-10, atol=1e-12)
    with pytest.raises(CurvatureError, match="not computed"):
        c.U  # noqa: B018 (reading the property is what raises)


def test_tune_glibc_malloc_in_subprocess():
    import subprocess
    import sys

    code = "from training.malloc import tune_glibc_malloc; print(tune_glibc_malloc())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]),
    )
    import platform

    expected = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert out.stdout.strip() == expected


def test_out_buffer_reused():
    model = small_mlp()
    x, y = batch("cross_entropy")
    N = param_spec(model).N
    buf = torch.empty(12, N, dtype=D64)
    for method in METHODS:
        for want_J in (False, True):
            c = (jacobian_curvature if want_J else compute_curvature)(model, x, y, method=method, out=buf)
            assert c.Ut is buf and (c.J is not None) == want_J
            torch.testing.assert_close(buf, compute_curvature(model, x, y, method=method).Ut)
    with pytest.raises(CurvatureError, match="out must be"):
        compute_curvature(model, x, y, out=torch.empty(11, N, dtype=D64))


def test_frozen_parameters_excluded():
    model = small_mlp()
    model[0].bias.requires_grad_(False)
    x, y = batch("mse")
    N = param_spec(model).N
    assert N == 6 * 7 + 7 * 3 + 3
    ref = Reference(model, x, y, "mse")
    for method in METHODS:
        c = compute_curvature(model, x, y, "mse", method=method)
        assert c.Ut.shape == (12, N)
        torch.testing.assert_close(c.ggn_matrix(), ref.G, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ models the layers method cannot take


class Shared(nn.Module):
    """The same Linear used twice (weight sharing): the layers method must fall back."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.a(torch.tanh(self.a(x)))))


class InplaceAfterLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, x):
        return self.out(torch.relu_(self.a(x)))


class Tokens(nn.Module):
    """Linear applied to a (b, T, d) input, so per-sample weight rows sum over T."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 3)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.a(x.reshape(x.shape[0], 2, 2))).flatten(1))


class FoldedConv(nn.Module):
    """Conv2d over (b*2, 1, 4, 4): the layer does not see the batch in dim 0."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.out = nn.Linear(64, 3)

    def forward(self, x):
        h = torch.tanh(self.conv(x.reshape(-1, 1, 4, 4)))
        return self.out(h.reshape(x.shape[0], -1))


@pytest.mark.parametrize("cls", [Shared, InplaceAfterLinear, Tokens, FoldedConv])
def test_unusual_models_agree_with_jacobian(cls):
    torch.manual_seed(0)
    model = cls().to(D64)
    x, y = batch("cross_entropy", d_in=32 if cls is FoldedConv else 4)
    ref = Reference(model, x, y, "cross_entropy")
    c = compute_curvature(model, x, y)
    if cls is Tokens:
        assert c.method == "layers"
    else:
        assert c.method == "vjp"  # fell back
    torch.testing.assert_close(c.ggn_matrix(), ref.G, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.grad, ref.grad, rtol=1e-10, atol=1e-12)
    cJ = jacobian_curvature(model, x, y)
    assert cJ.method == ("layers" if cls is Tokens else "jacobian")
    torch.testing.assert_close(cJ.J, ref.J, rtol=1e-10, atol=1e-12)


def test_layernorm_model_uses_vjp_and_layers_refuses():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 3)).to(D64)
    x, y = batch("cross_entropy")
    ref = Reference(model, x, y, "cross_entropy")
    c = compute_curvature(model, x, y)
    assert c.method == "vjp"
    torch.testing.assert_close(c.ggn_matrix(), ref.G, rtol=1e-10, atol=1e-12)
    with pytest.raises(UnsupportedModelError, match="LayerNorm"):
        compute_curvature(model, x, y, method="layers")


def test_batchnorm_train_mode_rejected_eval_mode_fine():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).to(D64)
    x, y = batch("cross_entropy")
    with pytest.raises(UnsupportedModelError, match=r"layer '1' \(BatchNorm1d\).*training mode"):
        compute_curvature(model, x, y)
    with pytest.raises(UnsupportedModelError):
        make_ggn_vp(model, x)
    model.eval()
    check_functional(model)
    ref = Reference(model, x, y, "cross_entropy")
    c = compute_curvature(model, x, y)
    torch.testing.assert_close(c.ggn_matrix(), ref.G, rtol=1e-10, atol=1e-12)
    nostats = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5, track_running_stats=False)).eval()
    with pytest.raises(UnsupportedModelError, match="track_running_stats=False"):
        check_functional(nostats)


def test_dropout_train_mode_rejected():
    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.Linear(5, 3))
    with pytest.raises(UnsupportedModelError, match=r"'1' \(Dropout\)"):
        check_functional(model)
    check_functional(model.eval())
    check_functional(nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.0)))


def test_bad_arguments():
    model = small_mlp()
    x, y = batch("cross_entropy")
    with pytest.raises(CurvatureError, match="loss must be"):
        compute_curvature(model, x, y, "hinge")
    with pytest.raises(CurvatureError, match=r"labels must lie in \[0, 3\)"):
        compute_curvature(model, x, y + 3)
    with pytest.raises(CurvatureError, match="integer class labels"):
        compute_curvature(model, x, y.double())
    with pytest.raises(CurvatureError, match="mse targets"):
        compute_curvature(model, x, torch.zeros(4, 2, dtype=D64), "mse")
    with pytest.raises(CurvatureError, match="length N="):
        compute_curvature(model, x, y, params=torch.zeros(5, dtype=D64))
    with pytest.raises(CurvatureError, match="method must be"):
        compute_curvature(model, x, y, method="magic")
    with pytest.raises(UnsupportedModelError, match="no trainable"):
        check_functional(small_mlp().requires_grad_(False))
    assert isinstance(UnsupportedModelError("x"), ValueError)


# ------------------------------------------------------------------ matrix-free products


def test_ggn_vp_matches_dense(mlp_case):
    loss, model, x, y, ref = mlp_case
    N = ref.theta.shape[0]
    g = torch.Generator().manual_seed(5)
    v = torch.randn(N, generator=g, dtype=D64)
    V = torch.randn(N, 3, generator=g, dtype=D64)
    torch.testing.assert_close(ggn_vp(model, None, x, loss, v), ref.G @ v, rtol=1e-10, atol=1e-12)
    op = make_ggn_vp(model, x, loss)
    assert isinstance(op, GGNOperator) and op.shape == (N, N)
    torch.testing.assert_close(op(V), ref.G @ V, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op(v), ref.G @ v, rtol=1e-10, atol=1e-12)  # reusable
    torch.testing.assert_close(op.to_dense(), ref.G, rtol=1e-10, atol=1e-12)
    damped = make_ggn_vp(model, x, loss, damping=0.1, linearize=True)
    torch.testing.assert_close(damped(v), ref.G @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    # at other parameters
    theta2 = ref.theta * 0.9
    c2 = compute_curvature(model, x, y, loss, params=theta2)
    torch.testing.assert_close(ggn_vp(model, theta2, x, loss, v), c2.U @ (c2.Ut @ v), rtol=1e-10, atol=1e-12)


def test_to_numpy():
    model = small_mlp()
    x, y = batch("cross_entropy")
    c = jacobian_curvature(model, x, y)
    assert isinstance(c, Curvature)
    d = c.to_numpy()
    assert isinstance(d["loss"], float)
    assert d["U"].shape == (param_spec(model).N, 12)
    np.testing.assert_allclose(d["U"] @ d["U"].T, d["J"].T @ d["H"] @ d["J"], rtol=1e-10, atol=1e-12)
    assert (c.m, c.batch_size, c.dz, c.N) == (12, 4, 3, param_spec(model).N)


# ------------------------------------------------------------------ U^T U from the layer factors


def _no_bias_mlp():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 5, bias=False), nn.Tanh(), nn.Linear(5, 3)).to(D64)


@pytest.mark.parametrize(
    "make, d_in, image", [(small_mlp, 6, False), (_no_bias_mlp, 6, False), (Tokens, 4, False), (small_cnn, 64, True)]
)
@pytest.mark.parametrize("chunk", [None, 3])
def test_gram_from_layer_factors(make, d_in, image, chunk):
    """Curvature.gram() (Kronecker form for Linear layers, columns for the rest) equals Ut Ut^T, and
    its spectrum is the nonzero spectrum of the dense reference GGN J^T H J."""
    torch.manual_seed(0)
    model = make().to(D64)
    d_out = 10 if image else 3
    x, y = batch("cross_entropy", b=5, d_in=d_in, d_out=d_out, image=image)
    c = compute_curvature(model, x, y, chunk_size=chunk)
    assert c.method == "layers" and c.gram_parts is not None
    K = c.gram()
    np.testing.assert_allclose(K, (c.Ut @ c.Ut.T).numpy(), rtol=1e-10, atol=1e-13)
    ref = Reference(model, x, y, "cross_entropy")
    top = np.sort(np.linalg.eigvalsh(ref.G.numpy()))[::-1][: K.shape[0]]
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(K))[::-1], top, rtol=1e-8, atol=1e-12)
    # the fallback methods have no factors: gram() is the product of the rows
    v = compute_curvature(model, x, y, method="vjp")
    assert v.gram_parts is None
    np.testing.assert_allclose(v.gram(), K, rtol=1e-10, atol=1e-13)
    # with J_f asked for, the rows are J_f, not U^T: no factors are kept
    assert jacobian_curvature(model, x, y).gram_parts is None
