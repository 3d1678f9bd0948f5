"""The sampled-label (Monte Carlo) and empirical Fisher against references built independently:
per-example gradients by plain autograd on the nn.Module (no torch.func, no U^T engine), and, for
the MC Fisher, its expectation over labels against the dense GGN with a z-score per entry."""

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_cases
from scipy import stats
from torch_cases import D64, small_cnn

from spu.core.problems import GGNProblem
from spu.device import SPU
from training.curvature import compute_curvature, param_spec, params_to_vector
from training.loop import TrainConfig, train
from training.models import build_model
from training.params import CurvatureError
from training.preconditioners import NGD, NGDCG, TNGD, NGDWoodbury, TrainingError

ENGINES = ("layers", "vjp", "jacobian")


def small_mlp(seed=0):
    return torch_cases.small_mlp(5, 4, 3, seed)  # N = 39


def batch(loss, b=4, image=False, seed=1):
    return torch_cases.batch(loss, b, d_in=5, d_out=10 if image else 3, seed=seed, image=image)


def sample_grad(model, xi, target, loss):
    """Gradient of one sample's loss (not divided by the batch size) by plain autograd."""
    z = model(xi[None])[0]
    if loss == "cross_entropy":
        value = F.cross_entropy(z[None], target.reshape(1), reduction="sum")
    else:
        value = 0.5 * ((z - target) ** 2).sum()
    grads = torch.autograd.grad(value, [p for p in model.parameters()])
    return torch.cat([g.reshape(-1) for g in grads])


def dense_ggn(model, x, loss):
    """J^T H J of the mean loss from torch.autograd.functional.jacobian (dense)."""
    spec = param_spec(model)
    theta = params_to_vector(model)

    def f(th):
        parts = torch.split(th, spec.sizes)
        return torch.func.functional_call(
            model, {n: p.view(s) for n, p, s in zip(spec.names, parts, spec.shapes)}, (x,)
        )

    J = torch.autograd.functional.jacobian(f, theta)  # (b, dz, N)
    b, dz, N = J.shape
    if loss == "cross_entropy":
        p = torch.softmax(f(theta).detach(), -1)
        Hs = [torch.diag(pi) - torch.outer(pi, pi) for pi in p]
    else:
        Hs = [torch.eye(dz, dtype=D64)] * b
    return sum(J[i].T @ Hs[i] @ J[i] for i in range(b)) / b


def every_loss_engine_and_model(test):
    for name, values in (("image", [False, True]), ("engine", ENGINES), ("loss", ["cross_entropy", "mse"])):
        test = pytest.mark.parametrize(name, values)(test)
    return test


@every_loss_engine_and_model
def test_empirical_fisher_is_per_example_gradients(loss, engine, image):
    model = small_cnn() if image else small_mlp()
    x, y = batch(loss, image=image)
    b = x.shape[0]
    c = compute_curvature(model, x, y, loss, method=engine, curvature="empirical")
    want = torch.stack([sample_grad(model, x[i], y[i], loss) for i in range(b)]) / math.sqrt(b)
    assert c.Ut.shape == (b, param_spec(model).N) and c.method == engine
    torch.testing.assert_close(c.Ut, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c.grad, want.sum(0) / math.sqrt(b), rtol=1e-10, atol=1e-12)  # mean gradient


@every_loss_engine_and_model
def test_mc_fisher_columns_are_gradients_of_sampled_label_losses(loss, engine, image):
    model = small_cnn() if image else small_mlp()
    x, y = batch(loss, image=image)
    b, K = x.shape[0], 3
    c = compute_curvature(
        model, x, y, loss, method=engine, curvature="mc", mc_samples=K, generator=torch.Generator().manual_seed(7)
    )
    targets = c.mc_targets
    assert c.Ut.shape == (b * K, param_spec(model).N)
    if loss == "cross_entropy":
        assert targets.shape == (b, K) and targets.dtype == torch.int64
        assert int(targets.min()) >= 0 and int(targets.max()) < c.dz
    else:
        assert targets.shape == (b, K, c.dz)
    want = torch.stack([sample_grad(model, x[i], targets[i, j], loss) for i in range(b) for j in range(K)])
    torch.testing.assert_close(c.Ut, want / math.sqrt(b * K), rtol=1e-10, atol=1e-12)
    # the gradient is still the true labels' one
    ref = compute_curvature(model, x, y, loss, method=engine)
    torch.testing.assert_close(c.grad, ref.grad, rtol=1e-12, atol=1e-14)


def test_mc_draws_are_reproducible_and_independent_of_engine_and_chunks():
    model = small_mlp()
    x, y = batch("cross_entropy", b=6)
    runs = [
        compute_curvature(
            model,
            x,
            y,
            method=e,
            curvature="mc",
            mc_samples=2,
            chunk_size=ch,
            generator=torch.Generator().manual_seed(3),
        )
        for e, ch in (("layers", None), ("layers", 1), ("vjp", 4), ("jacobian", None))
    ]
    for r in runs[1:]:
        assert torch.equal(r.mc_targets, runs[0].mc_targets)
        torch.testing.assert_close(r.Ut, runs[0].Ut, rtol=1e-12, atol=1e-14)
    other = compute_curvature(model, x, y, curvature="mc", mc_samples=2, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(other.mc_targets, runs[0].mc_targets)


def _one_draw_estimates(model, x, y, loss, K):
    """K independent one-draw estimates of the GGN from one call with mc_samples=K.

    With u_ij the column of U for sample i and draw j, X_j = K * sum_i u_ij u_ij^T is the MC Fisher
    of draw j alone (one label per sample), and U U^T = mean_j X_j."""
    c = compute_curvature(model, x, y, loss, curvature="mc", mc_samples=K, generator=torch.Generator().manual_seed(11))
    b, N = x.shape[0], c.N
    U3 = c.Ut.view(b, K, N)
    X = K * torch.einsum("ija,ijb->jab", U3, U3)  # (K, N, N)
    torch.testing.assert_close(X.mean(0), c.ggn_matrix(), rtol=1e-10, atol=1e-13)
    return X


def _z(X, G):
    """Per upper-triangle entry: (mean_j X_j - G) / (standard error of the mean), where the
    sample variance over the draws is nonzero; entries that do not vary must equal G."""
    iu = torch.triu_indices(G.shape[0], G.shape[0])
    mean, var, want = X.mean(0)[iu[0], iu[1]], X.var(0)[iu[0], iu[1]], G[iu[0], iu[1]]
    keep = var > 1e-24
    torch.testing.assert_close(mean[~keep], want[~keep], rtol=0, atol=1e-12)
    return (mean - want)[keep] / torch.sqrt(var[keep] / X.shape[0])


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_mc_fisher_expectation_is_the_ggn(loss):
    """E over sampled labels of U U^T equals J^T H J (softmax: E[(p - e_y)(p - e_y)^T] = diag p - p p^T).
    4000 draws; every upper-triangle entry's z-score within the Bonferroni bound at alpha = 1e-3
    (two-sided, over all entries tested), so the test fails by chance with probability < 1e-3."""
    model = small_mlp()
    x, y = batch(loss, b=3)
    G = dense_ggn(model, x, loss)
    X = _one_draw_estimates(model, x, y, loss, K=4000)
    z = _z(X, G)
    alpha = 1e-3
    bound = float(stats.norm.isf(alpha / (2 * z.numel())))
    print(f"\n{loss}: {z.numel()} entries, max |z| {float(z.abs().max()):.2f}, bound {bound:.2f}")
    assert z.numel() > 100
    assert float(z.abs().max()) < bound
    # the statistic has power: it rejects a GGN that is off by 10 %
    assert float(_z(X, 1.1 * G).abs().max()) > bound


def test_empirical_fisher_is_not_the_ggn():
    """The empirical Fisher uses the true labels, not the model's: on a batch the model does not fit
    the z-test that the MC Fisher passes against the GGN rejects it (Kunstner et al. 2019)."""
    model = small_mlp()
    x, y = batch("cross_entropy", b=3)
    G = dense_ggn(model, x, "cross_entropy")
    emp = compute_curvature(model, x, y, curvature="empirical").ggn_matrix()
    X = _one_draw_estimates(model, x, y, "cross_entropy", K=4000)
    z_emp = _z(X, emp)  # the empirical Fisher as if it were the MC Fisher's expectation
    bound = float(stats.norm.isf(1e-3 / (2 * z_emp.numel())))
    assert float(z_emp.abs().max()) > bound
    assert float(_z(X, G).abs().max()) < bound


def test_bad_curvature_arguments():
    model = small_mlp()
    x, y = batch("cross_entropy")
    with pytest.raises(CurvatureError, match="curvature must be one of"):
        compute_curvature(model, x, y, curvature="fisher")
    with pytest.raises(CurvatureError, match="mc_samples must be an integer >= 1"):
        compute_curvature(model, x, y, curvature="mc", mc_samples=0)
    with pytest.raises(TrainingError, match="curvature must be one of"):
        NGD(model, curvature="kfac")
    with pytest.raises(TrainingError, match="applies to tngd"):
        TrainConfig(optimizer="adam", curvature="mc").resolved()
    with pytest.raises(TrainingError, match="--curvature mc only"):
        TrainConfig(optimizer="tngd", curvature="ggn", mc_samples=2).resolved()


# ------------------------------------------------------------------------------------------
# the natural-gradient methods with these curvatures


def _direction(pre, x, y):
    for p in pre.model.parameters():
        p.grad = None
    pre.step(x, y)
    return torch.cat([p.grad.reshape(-1) for p in pre.model.parameters()])


@pytest.mark.parametrize("curvature", ["mc", "empirical"])
def test_all_methods_solve_the_same_fisher_system(curvature):
    """NGD (dense), NGD-Woodbury, NGD-CG (converged) and TNGD (t -> inf, no noise) give
    (U U^T + lam I)^-1 g for the same U: the reference U from per-example autograd."""
    x, y = batch("cross_entropy", b=6)
    lam, K = 0.05, 2
    model = small_mlp()
    c = compute_curvature(
        model,
        x,
        y,
        curvature=curvature,
        mc_samples=K,
        generator=NGD(model, curvature=curvature, mc_samples=K)._generator(0),
    )
    if curvature == "mc":
        rows = [
            sample_grad(model, x[i], c.mc_targets[i, j], "cross_entropy") / math.sqrt(6 * K)
            for i in range(6)
            for j in range(K)
        ]
    else:
        rows = [sample_grad(model, x[i], y[i], "cross_entropy") / math.sqrt(6) for i in range(6)]
    U = torch.stack(rows).T
    N = U.shape[0]
    want = torch.linalg.solve(U @ U.T + lam * torch.eye(N, dtype=D64), c.grad)
    kw = dict(damping=lam, curvature=curvature, mc_samples=K)
    for pre in (
        NGD(small_mlp(), **kw),
        NGDWoodbury(small_mlp(), **kw),
        NGDCG(small_mlp(), iters=200, **kw),
        TNGD(small_mlp(), t=math.inf, kappa0=0.0, **kw),
    ):
        got = _direction(pre, x, y)
        assert float((got - want).norm() / want.norm()) < 1e-8, type(pre).__name__


def test_mc_steps_draw_new_labels_and_repeat_with_the_seed():
    x, y = batch("cross_entropy", b=6)
    pre = NGD(small_mlp(), curvature="mc", seed=5)
    g0, g1 = pre._generator(0), pre._generator(1)
    assert not torch.equal(torch.rand(8, generator=g0), torch.rand(8, generator=g1))
    same = NGD(small_mlp(), curvature="mc", seed=5)
    other = NGD(small_mlp(), curvature="mc", seed=6)
    d = _direction(pre, x, y)
    assert torch.equal(d, _direction(same, x, y))
    assert not torch.equal(d, _direction(other, x, y))


# ------------------------------------------------------------------------------------------
# the crossbar circuit: factored U sent as J = U^T, H = I


def test_crossbar_gets_Ut_with_identity_H():
    model = small_mlp()
    x, y = batch("cross_entropy", b=4)
    pre = TNGD(model, damping=0.1, curvature="mc", mc_samples=2, spu=SPU("ngspice", topology="crossbar"))
    curv = pre._curvature(x, y)
    prob = pre._problem(curv, 0.1, curv.grad.numpy())
    assert isinstance(prob, GGNProblem) and prob.m == 8
    np.testing.assert_array_equal(prob.H, np.eye(8))
    U = curv.Ut.numpy().T
    np.testing.assert_allclose(prob.matrix(), U @ U.T + 0.1 * np.eye(U.shape[0]), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("curvature", ["mc", "empirical"])
def test_ngspice_crossbar_trains_with_fisher(curvature, tmp_path):
    """3 steps of TNGD on the digits MLP (width 4) with ngspice in the loop: the first step's loss
    is the ou backend's exactly (same parameters, batch and labels), and the circuit's parameters
    follow the ou backend's as closely as the exact GGN's are required to
    (tests/test_train_loop.py::test_ngspice_crossbar_follows_ou_backend)."""
    if shutil.which("ngspice") is None:
        pytest.skip("ngspice not installed")
    import csv

    from training.data import load_digits_split

    data = load_digits_split(flatten=True)
    kw = dict(
        optimizer="tngd",
        model="mlp",
        width=4,
        batch_size=4,
        steps=3,
        lr=0.5,
        damping=0.01,
        t=5.0,
        seed=0,
        eval_every=1000,
        kappa0=0.0,
        timeout=60.0,
        curvature=curvature,
    )
    out = {}
    start = params_to_vector(build_model("mlp", width=4, seed=0))
    for backend in ("ou", "ngspice"):
        model = build_model("mlp", width=4, seed=0)
        cfg = TrainConfig(backend=backend, topology="crossbar" if backend == "ngspice" else None, **kw)
        train(cfg, str(tmp_path / backend), data=data, model=model)
        with open(tmp_path / backend / "metrics.csv", newline="") as f:
            losses = [r["train_loss"] for r in csv.DictReader(f)]
        out[backend] = (losses, params_to_vector(model))
    assert out["ngspice"][0][0] == out["ou"][0][0]
    moved = float((out["ou"][1] - start).norm())
    assert moved > 0
    assert float((out["ngspice"][1] - out["ou"][1]).norm()) < 0.01 * moved
