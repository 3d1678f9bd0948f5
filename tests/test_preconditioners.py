"""TNGD and the NGD baselines (training/preconditioners.py) against dense float64 references.

Every check compares an optimizer step with an independent computation: torch's SGD/Adam on the
plain gradient, a dense GGN built with torch.autograd.functional.jacobian and solved with
torch.linalg.solve, and the OU propagator of spu/backends/ou.py applied by hand for the delay.
Small float64 MLPs on the digits (N = 460, b = 8) keep the whole file to a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from spu.backends.ou import propagator
from spu.core.problems import FactoredProblem
from spu.device import SPU
from training.curvature import compute_curvature, param_spec, params_to_vector
from training.data import Dataset, batches
from training.loop import TrainConfig, train
from training.models import build_model
from training.params import UnsupportedModelError
from training.preconditioners import NGD, NGDCG, TNGD, Gradient, NGDWoodbury, TrainingError

pytestmark = pytest.mark.usefixtures("one_thread")


WIDTH, BATCH = 6, 8  # N = 64*6 + 6 + 6*10 + 10 = 460, m = 80


@pytest.fixture(scope="module")
def some_batches(digits_flat):
    train_set, _ = digits_flat
    return [(x.double(), y) for _, (x, y) in zip(range(4), batches(train_set, BATCH, seed=3))]


def mlp(seed=0, width=WIDTH):
    return build_model("mlp", width=width, seed=seed, dtype=torch.float64)


def flat(model):
    return params_to_vector(model).clone()


def flat_grad(model):
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def run_steps(pre, opt, data):
    """Run the preconditioner + optimizer; return [(direction, params after the step)] per step."""
    out = []
    for x, y in data:
        opt.zero_grad(set_to_none=True)
        pre.step(x, y)
        d = flat_grad(pre.model).clone()
        opt.step()
        out.append((d, flat(pre.model)))
    return out


# ------------------------------------------------------------------------------------------
# dense references


def dense_natural_gradient(model, x, y, lam):
    """(G + lam I)^-1 g with G = J^T H J from torch.autograd.functional.jacobian, dense solve."""
    spec = param_spec(model)
    theta = params_to_vector(model).double()

    def f(th):
        parts = torch.split(th, spec.sizes)
        return functional_call(model, {n: p.view(s) for n, p, s in zip(spec.names, parts, spec.shapes)}, (x,))

    J = torch.autograd.functional.jacobian(f, theta)  # (b, dz, N)
    b, dz, N = J.shape
    z = f(theta).detach()
    p = torch.softmax(z, -1)
    H = torch.block_diag(*[(torch.diag(pi) - torch.outer(pi, pi)) / b for pi in p])
    Jm = J.reshape(b * dz, N)
    G = Jm.T @ H @ Jm
    th = theta.clone().requires_grad_()
    (g,) = torch.autograd.grad(F.cross_entropy(f(th), y), th)
    return torch.linalg.solve(G + lam * torch.eye(N, dtype=G.dtype), g), g


def ou_phi(model, x, y, lam, t, start):
    """Phi(A, g; t)(start) by hand: the exact OU transition of spu/backends/ou.py, no noise."""
    c = compute_curvature(model, x, y)
    prob = FactoredProblem(c.Ut.double().numpy().T, lam, c.grad.double().numpy())
    return propagator(prob).step(np.asarray(start, dtype=np.float64), t, 0.0, None), c.grad.double().numpy()


# ------------------------------------------------------------------------------------------
# limits of TNGD


def test_t0_step_equals_sgd_step(some_batches):
    x, y = some_batches[0]
    m_tngd, m_sgd = mlp(), mlp()
    pre = TNGD(m_tngd, damping=0.01, t=0.0, spu=SPU("ou"))
    ((d, p_tngd),) = run_steps(pre, torch.optim.SGD(m_tngd.parameters(), lr=0.1), [(x, y)])
    opt = torch.optim.SGD(m_sgd.parameters(), lr=0.1)
    F.cross_entropy(m_sgd(x), y).backward()
    g = flat_grad(m_sgd).clone()
    opt.step()
    assert rel(d, g) < 1e-12
    assert rel(p_tngd, flat(m_sgd)) < 1e-14
    assert rel(p_tngd, flat(mlp())) > 1e-4  # the step did move the parameters


def test_t0_keeps_previous_estimate_or_is_sgd_with_init_gradient(some_batches):
    """Documented: t = 0 (t_d = 0) keeps the previous estimate; init='gradient' is SGD at every step."""
    m1, m2, m3 = mlp(), mlp(), mlp()
    keep = run_steps(TNGD(m1, t=0.0), torch.optim.SGD(m1.parameters(), lr=0.1), some_batches[:3])
    fresh = run_steps(TNGD(m2, t=0.0, init="gradient"), torch.optim.SGD(m2.parameters(), lr=0.1), some_batches[:3])
    sgd = run_steps(Gradient(m3), torch.optim.SGD(m3.parameters(), lr=0.1), some_batches[:3])
    for k in range(3):
        assert rel(keep[k][0], keep[0][0]) < 1e-15  # the device still holds g_0
        assert rel(fresh[k][0], sgd[k][0]) < 1e-12
        assert rel(fresh[k][1], sgd[k][1]) < 1e-14
    assert rel(keep[2][0], sgd[2][0]) > 1e-3


def test_t_inf_without_noise_equals_ngd(some_batches):
    m_t, m_n = mlp(), mlp()
    lam, lr = 0.05, 0.02
    tngd = run_steps(
        TNGD(m_t, damping=lam, t=math.inf, kappa0=0.0, spu=SPU("ou", kappa0=0.5)),
        torch.optim.SGD(m_t.parameters(), lr=lr),
        some_batches[:3],
    )
    ngd = run_steps(NGD(m_n, damping=lam), torch.optim.SGD(m_n.parameters(), lr=lr), some_batches[:3])
    for (d_t, p_t), (d_n, p_n) in zip(tngd, ngd):
        assert rel(d_t, d_n) < 1e-9
        assert rel(p_t, p_n) < 1e-11
    assert rel(ngd[0][0], ngd[1][0]) > 1e-3  # directions change between steps


def test_ngd_equals_dense_solve(some_batches):
    model, ref = mlp(), mlp()
    lam, lr = 0.01, 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    pre = NGD(model, damping=lam)
    for x, y in some_batches[:2]:
        want, g = dense_natural_gradient(ref, x, y, lam)
        opt.zero_grad()
        pre.step(x, y)
        got = flat_grad(model)
        assert rel(got, want) < 1e-9
        assert rel(got, g) > 0.1  # not the plain gradient
        opt.step()
        with torch.no_grad():  # the reference takes the same step by hand
            off = 0
            for p in ref.parameters():
                p -= lr * want[off : off + p.numel()].view_as(p)
                off += p.numel()
        assert rel(flat(model), flat(ref)) < 1e-12


@pytest.mark.parametrize("method", ["cg", "woodbury"])
def test_cg_and_woodbury_equal_ngd(some_batches, method):
    m_b, m_n = mlp(), mlp()
    lam, lr = 0.01, 0.05
    if method == "cg":  # A = lam I + rank-80 GGN: CG is exact after m + 1 = 81 iterations
        pre = NGDCG(m_b, damping=lam, iters=120)
    else:
        pre = NGDWoodbury(m_b, damping=lam)
    base = run_steps(pre, torch.optim.SGD(m_b.parameters(), lr=lr), some_batches[:3])
    ngd = run_steps(NGD(m_n, damping=lam), torch.optim.SGD(m_n.parameters(), lr=lr), some_batches[:3])
    for (d_b, p_b), (d_n, p_n) in zip(base, ngd):
        assert rel(d_b, d_n) < 1e-7
        assert rel(p_b, p_n) < 1e-9


def test_cg_few_iterations_is_not_ngd_but_warm_starts(some_batches):
    m_b, m_n = mlp(), mlp()
    pre = NGDCG(m_b, damping=0.01, iters=3)
    x, y = some_batches[0]
    pre.step(x, y)
    d3 = flat_grad(m_b).clone()
    NGD(m_n, damping=0.01).step(x, y)
    assert rel(d3, flat_grad(m_n)) > 1e-2
    pre.step(x, y)  # same batch, same parameters: 3 more iterations from the warm start
    assert rel(flat_grad(m_b), flat_grad(m_n)) < rel(d3, flat_grad(m_n))


# ------------------------------------------------------------------------------------------
# delay t_d


def test_delay_follows_documented_definition(some_batches):
    """g~_0 = Phi(A0, g0; t)(g0);  g~_1 = Phi(A1, g1; t)(Phi(A0, g0; t_d)(g~_0))."""
    (x0, y0), (x1, y1) = some_batches[:2]
    lam, t, td, lr = 0.05, 2.0, 3.0, 0.1
    model = mlp()
    pre = TNGD(model, damping=lam, t=t, td=td, spu=SPU("ou"))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    (d0, _), (d1, _) = run_steps(pre, opt, [(x0, y0), (x1, y1)])

    ref = mlp()
    c0 = compute_curvature(ref, x0, y0)
    P0 = propagator(FactoredProblem(c0.Ut.double().numpy().T, lam, c0.grad.double().numpy()))
    e0 = P0.step(c0.grad.double().numpy(), t, 0.0, None)
    assert rel(d0, e0) < 1e-12  # the first step has no stale system: no delay
    with torch.no_grad():
        off = 0
        for p in ref.parameters():
            p -= lr * torch.from_numpy(e0[off : off + p.numel()]).view_as(p)
            off += p.numel()
    stale = P0.step(e0, td, 0.0, None)
    e1, _ = ou_phi(ref, x1, y1, lam, t, stale)
    assert rel(d1, e1) < 1e-10
    assert rel(pre.estimate, e1) < 1e-10

    # t_d = 0: the new system starts from g~_0 itself, which gives a different estimate
    no_delay, _ = ou_phi(ref, x1, y1, lam, t, e0)
    m0 = mlp()
    (_, _), (d1_0, _) = run_steps(
        TNGD(m0, damping=lam, t=t, td=0.0), torch.optim.SGD(m0.parameters(), lr=lr), [(x0, y0), (x1, y1)]
    )
    assert rel(d1_0, no_delay) < 1e-10
    assert rel(d1_0, d1) > 1e-2


def test_delay_as_callable_of_step(some_batches):
    """td(k) is the delay before the k-th system is loaded; td(1) = 0 gives the undelayed step."""
    lam, t = 0.05, 2.0
    m_a, m_b = mlp(), mlp()
    a = run_steps(
        TNGD(m_a, damping=lam, t=t, td=lambda k: 0.0 if k < 2 else 3.0),
        torch.optim.SGD(m_a.parameters(), lr=0.1),
        some_batches[:3],
    )
    b = run_steps(TNGD(m_b, damping=lam, t=t, td=0.0), torch.optim.SGD(m_b.parameters(), lr=0.1), some_batches[:3])
    assert rel(a[1][0], b[1][0]) < 1e-14
    assert rel(a[2][0], b[2][0]) > 1e-3


# ------------------------------------------------------------------------------------------
# TNGD-Adam


def test_tngd_adam_zero_betas_uses_preconditioned_direction(some_batches):
    lr, eps = 1e-2, 1e-8
    model = mlp()
    pre = TNGD(model, damping=0.01, t=20.0)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.0, 0.0), eps=eps)
    theta = flat(model)
    for x, y in some_batches[:2]:
        opt.zero_grad()
        pre.step(x, y)
        d = torch.from_numpy(pre.estimate)
        assert rel(flat_grad(model), d) < 1e-14
        opt.step()
        # Adam with beta1 = beta2 = 0: m = d, v = d^2, both bias corrections are 1
        theta = theta - lr * d / (d.abs() + eps)
        assert rel(flat(model), theta) < 1e-13
    g = loss_grad(mlp(), *some_batches[0])
    assert rel(torch.from_numpy(pre.estimate), g) > 0.1  # the direction is not the gradient


def loss_grad(model, x, y):
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return flat_grad(model).clone()


# ------------------------------------------------------------------------------------------
# bad input


def _with_nan_at(data: Dataset, batch_size: int, seed: int, step: int) -> Dataset:
    """A copy of data with NaN in one sample of the `step`-th (0-based) batch of the stream."""
    n = len(data)
    order = np.random.default_rng([seed, 0]).permutation(n)
    idx = int(order[step * batch_size])
    x = data.x.clone()
    x[idx] = float("nan")
    return Dataset(x, data.y.clone())


PRECONDITIONERS = {
    "tngd": lambda m: TNGD(m, damping=0.01, t=5.0),
    "ngd": lambda m: NGD(m, damping=0.01),
    "ngd-cg": lambda m: NGDCG(m, damping=0.01, iters=5),
    "ngd-woodbury": lambda m: NGDWoodbury(m, damping=0.01),
    "gradient": lambda m: Gradient(m),
}


@pytest.mark.parametrize("name", list(PRECONDITIONERS))
def test_nonfinite_loss_stops_and_keeps_parameters(some_batches, name):
    model = mlp()
    pre = PRECONDITIONERS[name](model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    run_steps(pre, opt, some_batches[:2])
    good = flat(model)
    x, y = some_batches[2]
    x = x.clone()
    x[3] = float("nan")
    opt.zero_grad()
    with pytest.raises(TrainingError, match=r"(loss|gradient).*(NaN|nan|inf).*step 3"):
        pre.step(x, y)
    assert torch.equal(flat(model), good)
    assert pre.k == 2  # the failed step did not count


def test_nonfinite_gradient_with_finite_loss_is_caught():
    class SqrtAbs(nn.Module):  # d sqrt|u| / du = inf at u = 0, while the loss stays finite
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2).double()

        def forward(self, x):
            return torch.sqrt(self.fc(x).abs())

    model = SqrtAbs()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
    x = torch.ones(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    for pre in (Gradient(model), NGDWoodbury(model, damping=0.1)):
        with pytest.raises(TrainingError, match="gradient has NaN or inf"):
            pre.step(x, y)


def test_nonfinite_data_in_train_stops_with_last_good_parameters(digits_flat, tmp_path):
    """NaN in the data of step 3: train() raises TrainingError, the model (and the checkpoint in
    the output folder) hold the parameters after step 2."""
    train_set, test_set = digits_flat
    cfg = TrainConfig(
        optimizer="tngd", model="mlp", width=WIDTH, batch_size=BATCH, steps=2, t=5.0, seed=1, eval_every=100
    )
    ref = build_model("mlp", width=WIDTH, seed=1)
    train(cfg, data=(train_set, test_set), model=ref)

    bad = _with_nan_at(train_set, BATCH, seed=1, step=2)
    model = build_model("mlp", width=WIDTH, seed=1)
    cfg5 = TrainConfig(**{**cfg.__dict__, "steps": 5})
    with pytest.raises(TrainingError, match="step 3"):
        train(cfg5, tmp_path / "run", data=(bad, test_set), model=model)
    assert torch.equal(flat(model), flat(ref))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    for name, p in ref.named_parameters():
        assert torch.equal(state["model"][name], p.detach())


def test_unsupported_layer_gets_clear_error(some_batches):
    x, y = some_batches[0]
    model = nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10)).double()
    before = flat(model)
    for make in PRECONDITIONERS.values():
        pre = make(model)
        with pytest.raises(UnsupportedModelError, match=r"layer '1' \(BatchNorm1d\) is in training mode"):
            pre.step(x, y)
    assert torch.equal(flat(model), before)
    model.eval()  # running statistics: a per-sample function again
    TNGD(model, damping=0.01, t=5.0).step(x, y)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda m: TNGD(m, damping=0.0), "damping must be > 0"),
        (lambda m: TNGD(m, damping=-0.1), "damping must be > 0"),
        (lambda m: TNGD(m, damping=float("nan")), "damping must be > 0"),
        (lambda m: TNGD(m, t=-1.0), "t must be >= 0"),
        (lambda m: TNGD(m, t=float("nan")), "t must be >= 0"),
        (lambda m: TNGD(m, td=-0.5), "td must be >= 0"),
        (lambda m: TNGD(m, kappa0=-1e-3), "kappa0 must be >= 0"),
        (lambda m: TNGD(m, t="long"), "t must be a number"),
        (lambda m: NGD(m, damping=0.0), "damping must be > 0"),
        (lambda m: NGDCG(m, damping=-1.0), "damping must be > 0"),
        (lambda m: NGDCG(m, iters=0), "CG iterations"),
        (lambda m: NGDWoodbury(m, damping=0), "damping must be > 0"),
    ],
)
def test_bad_hyperparameters_in_preconditioners(make, match):
    with pytest.raises(TrainingError, match=match):
        make(mlp())


def test_bad_hyperparameter_from_a_callable_stops_at_that_step(some_batches):
    model = mlp()
    pre = TNGD(model, damping=lambda k: 0.01 if k < 2 else 0.0, t=5.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    run_steps(pre, opt, some_batches[:2])
    good = flat(model)
    with pytest.raises(TrainingError, match="damping must be > 0"):
        pre.step(*some_batches[2])
    assert torch.equal(flat(model), good)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"damping": 0.0}, "damping must be > 0"),
        ({"damping": -1.0}, "damping must be > 0"),
        ({"t": -1.0}, "analog time t must be >= 0"),
        ({"t": float("nan")}, "analog time t must be >= 0"),
        ({"td": -1.0}, "delay td must be >= 0"),
    ],
)
def test_bad_hyperparameters_in_train_config(kw, match):
    with pytest.raises(TrainingError, match=match):
        TrainConfig(optimizer="tngd", **kw).resolved()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--damping", "0"], "damping must be > 0"),
        (["--damping", "-0.01"], "damping must be > 0"),
        (["--t", "-2"], "analog time t must be >= 0"),
        (["--td", "-1"], "delay td must be >= 0"),
        (["--curvature", "mc", "--mc-samples", "0"], "mc_samples must be an integer >= 1"),
        (["--mc-samples", "2"], "--mc-samples applies to --curvature mc only"),
    ],
)
def test_bad_hyperparameters_on_the_command_line(argv, match, capsys, tmp_path):
    from analysis.cli import main

    rc = main(
        [
            "train",
            "--optimizer",
            "tngd",
            "--model",
            "mlp",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "x"),
            "--json",
            *argv,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("thermospice: error: ") and match in err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------
# hyper-parameters as callables of the step


def test_hyperparameters_as_callables(some_batches):
    """t(k): SGD at step 0 (t = 0), exact NGD afterwards (t = inf); damping(k) changes per step."""
    lam = lambda k: 0.01 * (k + 1)  # noqa: E731
    m_t, m_n, m_s = mlp(), mlp(), mlp()
    tngd = run_steps(
        TNGD(m_t, damping=lam, t=lambda k: 0.0 if k == 0 else math.inf),
        torch.optim.SGD(m_t.parameters(), lr=0.05),
        some_batches[:3],
    )
    sgd = run_steps(Gradient(m_s), torch.optim.SGD(m_s.parameters(), lr=0.05), some_batches[:1])
    assert rel(tngd[0][0], sgd[0][0]) < 1e-12
    # NGD from the parameters after the SGD step, damping lam(k) at steps 1 and 2
    ngd = NGD(m_n, damping=lam)
    opt = torch.optim.SGD(m_n.parameters(), lr=0.05)
    run_steps(Gradient(m_n), opt, some_batches[:1])
    ngd.k = 1
    rest = run_steps(ngd, opt, some_batches[1:3])
    for (d_t, p_t), (d_n, p_n) in zip(tngd[1:], rest):
        assert rel(d_t, d_n) < 1e-9
        assert rel(p_t, p_n) < 1e-11
    m_c = mlp()  # the schedule matters: a constant damping gives other directions
    const = run_steps(
        TNGD(m_c, damping=0.01, t=lambda k: 0.0 if k == 0 else math.inf),
        torch.optim.SGD(m_c.parameters(), lr=0.05),
        some_batches[:2],
    )
    assert rel(const[1][0], tngd[1][0]) > 1e-3
