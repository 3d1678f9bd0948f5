"""TNGD and the NGD baselines as preconditioners that sit beside a torch.optim optimizer.

Why a preconditioner and not a torch.optim.Optimizer subclass: every method here needs the model
and the minibatch (for J_f and H_L), which ``Optimizer.step(closure)`` does not carry; and the
update rule after preconditioning is exactly torch's SGD or Adam, so we reuse them instead of
re-implementing them (the kfac-pytorch pattern). One loop serves every method:

    pre = TNGD(model, damping=0.01, t=50.0, spu=SPU("ou"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)        # TNGD;  Adam(...) -> TNGD-Adam
    for x, y in batches:
        opt.zero_grad()
        info = pre.step(x, y)        # writes the preconditioned direction into p.grad
        opt.step()

``Gradient`` is the identity preconditioner (plain SGD / Adam). Hyper-parameters may be numbers or
callables of the step index (as in kfac-pytorch), e.g. ``t=lambda k: 5.0 if k < 100 else 50.0``.

TNGD (paper, Algorithm 1), at step k with gradient g_k and curvature A_k = J^T H J + lam I:
    x <- g_0 at the first step (the device starts from the first gradient),
    x <- Phi(A_{k-1}, g_{k-1}; t_d)(x)    delay: the device keeps running under the stale system
                                          for t_d (tau) while the digital side computes g_k, A_k;
    x <- Phi(A_k, g_k; t)(x)              the new system is loaded and runs for t (tau);
    g~_k = x                              read out and handed to the update rule.
Phi(A, b; s) is the SPU's evolution for analog time s (exact OU, Euler, or ngspice). So t = 0 and
t_d = 0 keep the previous estimate (the first step is then exactly SGD), t -> inf without noise is
exact NGD, and t_d > 0 pulls each start towards the previous natural gradient, which acts like
momentum (paper, Fig. 4b). ``init="gradient"`` starts every solve from g_k instead (then t = 0 is
SGD at every step).

Precisely: t, t_d and lam are evaluated at the 0-based step k (callables get k); the delay before
step k uses A_{k-1} = J^T H J + lam_{k-1} I and g_{k-1} exactly as loaded at step k-1; step 0 has no
delay (there is no stale system); noise kappa0 acts during the delay as during t; a checkpoint
(state_dict) keeps what built the stale system, so a resumed run delays exactly as an uninterrupted
one. docs/TRAINING.md has the full statement; tests/test_preconditioners.py checks it step by step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spu.core.errors import ThermospiceError
from spu.core.problems import FactoredProblem, GGNProblem
from spu.device import SPU

from .curvature import compute_curvature, jacobian_curvature, loss_and_grad, make_ggn_vp, param_spec, params_to_vector
from .losses import check_curvature
from .params import CurvatureError


class TrainingError(ThermospiceError):
    """Training cannot go on (bad hyper-parameter, non-finite loss or gradient)."""


@dataclass
class StepInfo:
    loss: float
    digital_s: float  # wall time of the digital part (gradient, curvature, digital solves)
    device_s: float = 0.0  # modelled time on the physical SPU (0 for digital methods)
    simulator_s: float = 0.0  # wall time spent simulating the device (ou/euler/ngspice)


def _value(h, k: int, name: str, *, positive: bool = False, allow_zero: bool = True) -> float:
    v = h(k) if callable(h) else h
    where = f" ({name}({k}) at step {k + 1})" if callable(h) else ""
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise TrainingError(f"{name} must be a number, got {v!r}{where}") from None
    if math.isnan(v) or v < 0 or (v == 0 and not allow_zero) or (positive and v <= 0):
        need = "> 0" if positive or not allow_zero else ">= 0"
        raise TrainingError(f"{name} must be {need}, got {v}{where}")
    return v


class Preconditioner:
    """Base: computes loss and gradient and writes a direction into each parameter's .grad."""

    name = "gradient"

    def __init__(self, model: nn.Module, loss: str = "cross_entropy"):
        self.model = model
        self.loss = loss
        self.k = 0
        self.spec = param_spec(model)
        self._params = [p for p in model.parameters() if p.requires_grad]

    def _write_grad(self, direction: torch.Tensor) -> None:
        offset = 0
        for p in self._params:
            n = p.numel()
            p.grad = direction[offset : offset + n].view_as(p).to(p.dtype).clone()
            offset += n

    @staticmethod
    def _check_finite(loss: torch.Tensor, grad: torch.Tensor, k: int) -> None:
        # Steps are reported 1-based, as in the 'step' column of metrics.csv (k is 0-based).
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {float(loss)} at step {k + 1}: stopped, parameters kept from the last good step"
            )
        if not torch.isfinite(grad).all():
            raise TrainingError(
                f"gradient has NaN or inf at step {k + 1}: stopped, parameters kept from the last good step"
            )

    def step(self, x: torch.Tensor, y: torch.Tensor) -> StepInfo:
        start = time.perf_counter()
        loss, grad, _ = loss_and_grad(self.model, x, y, self.loss)
        self._check_finite(loss, grad, self.k)
        self._write_grad(grad)
        self.k += 1
        return StepInfo(float(loss), time.perf_counter() - start)

    def state_dict(self) -> dict:
        return {"k": self.k}

    def load_state_dict(self, state: dict) -> None:
        self.k = int(state["k"])


Gradient = Preconditioner


class _Damped(Preconditioner):
    """Base of the natural-gradient methods: damping lam and the curvature they precondition with.

    curvature: "ggn" (exact GGN, U has b*dz columns), "mc" (sampled-label Fisher: mc_samples
    labels per example from the model's predictive distribution, b*K columns) or "empirical"
    (per-example gradients / sqrt(b), b columns); training.losses states the scaling. The MC
    labels of step k come from a generator seeded by (seed, k), so a run is reproducible and a
    resumed run draws what the uninterrupted one drew (the checkpoint holds k)."""

    def __init__(self, model, loss="cross_entropy", *, damping=1e-2, curvature="ggn", mc_samples=1, seed=0):
        super().__init__(model, loss)
        self.damping = damping
        _value(damping, 0, "damping", positive=True)
        try:
            check_curvature(curvature, mc_samples)
        except CurvatureError as exc:
            raise TrainingError(str(exc)) from None
        self.curvature, self.mc_samples, self.seed = curvature, mc_samples, int(seed)
        self._ut_buffer: torch.Tensor | None = None  # U^T of the last step, reused as out=
        self._ut_key = None  # (batch size, dtype) it was made for

    def _generator(self, k: int) -> torch.Generator | None:
        """The MC labels' generator for step k (None unless curvature == "mc")."""
        if self.curvature != "mc":
            return None
        state = np.random.SeedSequence([self.seed, k]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    def _curvature_U(self, x, y, k=None, **kw):
        """compute_curvature (this method's curvature; MC labels of step k, default self.k) with
        U^T written into the previous step's buffer (same batch size and dtype). A fresh 43 MB
        U^T per step (digits CNN, b = 64) is mmapped and page-faulted again on every step by
        glibc: TNGD's digital part took 2x longer (bench_optimizers.py).
        The returned Ut is overwritten by the next call: copy what must outlive the step."""
        key = (x.shape[0], self._params[0].dtype if self._params else None)
        out = self._ut_buffer if key == self._ut_key else None
        curv = compute_curvature(
            self.model,
            x,
            y,
            self.loss,
            out=out,
            curvature=self.curvature,
            mc_samples=self.mc_samples,
            generator=self._generator(self.k if k is None else k),
            **kw,
        )
        self._ut_buffer, self._ut_key = curv.Ut, key
        return curv


class TNGD(_Damped):
    """Thermodynamic NGD: the SPU solves (J^T H J + lam I) x = g, warm-started (see module doc).

    spu: an spu.SPU (default SPU("ou")): its backend and noise level kappa0 are used unless
    kappa0 is given here. With the ngspice backend and topology "crossbar" the GGN form (J, H) is
    sent (for curvature "mc" / "empirical": J = U^T, H = I); otherwise the factored form U."""

    name = "tngd"

    def __init__(
        self,
        model,
        loss="cross_entropy",
        *,
        damping=1e-2,
        t=50.0,
        td=0.0,
        kappa0=None,
        spu: SPU | None = None,
        init: str = "previous",
        curvature="ggn",
        mc_samples=1,
        seed=0,
    ):
        super().__init__(model, loss, damping=damping, curvature=curvature, mc_samples=mc_samples, seed=seed)
        self.t, self.td, self.kappa0 = t, td, kappa0
        _value(t, 0, "t")
        _value(td, 0, "td")
        if kappa0 is not None:
            _value(kappa0, 0, "kappa0")
        if init not in ("previous", "gradient"):
            raise TrainingError(f"init must be 'previous' or 'gradient', got {init!r}")
        self.init = init
        self.spu = spu or SPU("ou")
        self.estimate: np.ndarray | None = None
        self._stale = None  # the previous step's problem, for the delay t_d
        # What built that problem (parameters before the update, batch, damping): a checkpoint
        # stores these few numbers instead of the m x N factors, and a resume rebuilds the problem.
        self._stale_inputs: dict | None = None

    @property
    def _crossbar(self) -> bool:
        return self.spu.problem_form == "ggn"

    def _curvature(self, x, y, params=None, k=None):
        crossbar = self._crossbar
        # The crossbar takes (J, H); for the exact GGN that is J_f and H_L. The MC and empirical
        # Fisher have no H of their own: they are sent in the factored form J = U^T, H = I.
        if crossbar and self.curvature == "ggn":
            return jacobian_curvature(self.model, x, y, self.loss, params=params)
        return self._curvature_U(x, y, k, params=params)

    def _problem(self, curv, lam: float, g: np.ndarray):
        if self._crossbar:
            if curv.J is None:  # MC / empirical Fisher: G = U U^T = (U^T)^T I (U^T)
                Ut = curv.Ut.to(torch.float64, copy=True).numpy()
                return GGNProblem(Ut, np.eye(Ut.shape[0]), lam, g)
            return GGNProblem(curv.J.double().numpy(), curv.H.double().numpy(), lam, g)
        # A copy: the float32 Ut is the reused buffer (for a float64 model .double() would not copy).
        # The Gram from the layer factors spares the exact OU backend its O(N m^2) U^T U.
        return FactoredProblem(curv.Ut.to(torch.float64, copy=True).numpy().T, lam, g, gram=curv.gram())

    def _stale_problem(self):
        if self._stale is None and self._stale_inputs is not None:  # after a resume
            s = self._stale_inputs
            curv = self._curvature(s["x"], s["y"], params=s["theta"], k=s.get("k", self.k - 1))
            self._stale = self._problem(curv, float(s["lam"]), curv.grad.double().numpy())
        return self._stale

    def step(self, x, y) -> StepInfo:
        k = self.k
        lam = _value(self.damping, k, "damping", positive=True)
        t = _value(self.t, k, "t")
        td = _value(self.td, k, "td")
        kappa = None if self.kappa0 is None else _value(self.kappa0, k, "kappa0")
        start = time.perf_counter()
        curv = self._curvature(x, y)
        self._check_finite(curv.loss, curv.grad, k)
        digital = time.perf_counter() - start
        # Handing the factors to the simulator (float64 copies, problem validation) is not work the
        # digital side of real hardware does; it cost 1-2x the curvature itself (digits CNN, b=64)
        # and made TNGD's estimated runtime look 2-3x worse. Count it as simulator time.
        prep = time.perf_counter()
        g = curv.grad.double().numpy()
        problem = self._problem(curv, lam, g)
        prep = time.perf_counter() - prep
        x0 = g if (self.estimate is None or self.init == "gradient") else self.estimate
        device, sim = 0.0, prep
        stale = self._stale_problem() if td > 0 and self.init == "previous" else None
        if stale is not None:
            r = self.spu.run(stale, t=td, x0=x0, kappa0=kappa)
            x0, device, sim = r.x, device + r.device_time_s, sim + r.wall_time_s
        r = self.spu.run(problem, t=t, x0=x0, kappa0=kappa)
        device, sim = device + r.device_time_s, sim + r.wall_time_s
        if not np.isfinite(r.x).all():
            raise TrainingError(f"the SPU returned NaN or inf at step {k + 1}: stopped, parameters kept")
        self.estimate = r.x
        self._stale = problem
        if self.init == "previous":
            self._stale_inputs = {
                "theta": params_to_vector(self.model),
                "x": x.detach().clone(),
                "y": y.detach().clone(),
                "lam": lam,
                "k": k,
            }
        self._write_grad(torch.from_numpy(r.x))
        self.k += 1
        return StepInfo(float(curv.loss), digital, device, sim)

    def state_dict(self) -> dict:
        # Tensors and plain data only: a checkpoint is loaded with torch.load(weights_only=True).
        estimate = None if self.estimate is None else torch.from_numpy(self.estimate.copy())
        return {"k": self.k, "estimate": estimate, "spu_runs": self.spu.runs, "stale": self._stale_inputs}

    def load_state_dict(self, state: dict) -> None:
        self.k = int(state["k"])
        estimate = state["estimate"]
        self.estimate = (
            None if estimate is None else np.asarray(estimate.numpy() if torch.is_tensor(estimate) else estimate)
        )
        self.spu.runs = int(state.get("spu_runs", 0))
        # The stale system (for the delay t_d) is rebuilt from its inputs at the next step, so a
        # resumed run follows the uninterrupted one exactly.
        self._stale = None
        self._stale_inputs = state.get("stale")


class NGD(_Damped):
    """Exact NGD: form the dense GGN + lam I (N x N) and solve by Cholesky. O(N^3): small N only."""

    name = "ngd"
    MAX_N = 8000  # 8000^2 float64 = 512 MB

    def step(self, x, y) -> StepInfo:
        k = self.k
        lam = _value(self.damping, k, "damping", positive=True)
        if self.spec.N > self.MAX_N:
            raise TrainingError(
                f"exact NGD forms an N x N matrix; N = {self.spec.N} > {self.MAX_N}: use ngd-woodbury or ngd-cg"
            )
        start = time.perf_counter()
        curv = self._curvature_U(x, y)
        self._check_finite(curv.loss, curv.grad, k)
        U = curv.Ut.double().T
        G = U @ U.T
        G.diagonal().add_(lam)
        direction = torch.cholesky_solve(curv.grad.double()[:, None], torch.linalg.cholesky(G))[:, 0]
        self._write_grad(direction)
        self.k += 1
        return StepInfo(float(curv.loss), time.perf_counter() - start)


class NGDWoodbury(_Damped):
    """NGD by the symmetric Woodbury identity: (lam I + U U^T)^-1 g
    = (g - U (lam I + U^T U)^-1 U^T g) / lam, the m x m system in float64."""

    name = "ngd-woodbury"

    def step(self, x, y) -> StepInfo:
        k = self.k
        lam = _value(self.damping, k, "damping", positive=True)
        start = time.perf_counter()
        curv = self._curvature_U(x, y)
        self._check_finite(curv.loss, curv.grad, k)
        Ut, g = curv.Ut, curv.grad
        K = (Ut @ Ut.T).double()
        K.diagonal().add_(lam)
        w = torch.cholesky_solve((Ut @ g).double()[:, None], torch.linalg.cholesky(K))[:, 0]
        direction = (g.double() - Ut.T.double() @ w) / lam
        self._write_grad(direction)
        self.k += 1
        return StepInfo(float(curv.loss), time.perf_counter() - start)


class NGDCG(_Damped):
    """NGD by c conjugate-gradient iterations on matrix-free GGN-vector products, warm-started
    from the previous solution (paper's NGD-CG; c = 200 in its Fig. 2)."""

    name = "ngd-cg"

    def __init__(
        self, model, loss="cross_entropy", *, damping=1e-2, iters=10, tol=0.0, curvature="ggn", mc_samples=1, seed=0
    ):
        super().__init__(model, loss, damping=damping, curvature=curvature, mc_samples=mc_samples, seed=seed)
        if not isinstance(iters, int) or iters < 1:
            raise TrainingError(f"CG iterations must be an integer >= 1, got {iters!r}")
        self.iters, self.tol = iters, float(tol)
        self.estimate: torch.Tensor | None = None

    def step(self, x, y) -> StepInfo:
        k = self.k
        lam = _value(self.damping, k, "damping", positive=True)
        start = time.perf_counter()
        if self.curvature == "ggn":  # matrix-free: one jvp + one vjp per product
            loss, g, _ = loss_and_grad(self.model, x, y, self.loss)
            self._check_finite(loss, g, k)
            op = make_ggn_vp(self.model, x, self.loss, damping=lam)
        else:  # the Fisher's U has only b*K or b columns: products with U and U^T are cheaper
            curv = self._curvature_U(x, y)
            loss, g, Ut = curv.loss, curv.grad, curv.Ut
            self._check_finite(loss, g, k)

            def op(v):
                return Ut.T @ (Ut @ v) + lam * v

        self.estimate = conjugate_gradient(op, g, self.estimate, self.iters, self.tol)
        self._write_grad(self.estimate)
        self.k += 1
        return StepInfo(float(loss), time.perf_counter() - start)

    def state_dict(self) -> dict:
        return {"k": self.k, "estimate": self.estimate}

    def load_state_dict(self, state: dict) -> None:
        self.k, self.estimate = int(state["k"]), state["estimate"]


def conjugate_gradient(matvec, b: torch.Tensor, x0: torch.Tensor | None, iters: int, tol: float = 0.0) -> torch.Tensor:
    """Solve A x = b (A SPD, given as a product) by at most `iters` CG iterations from x0."""
    x = torch.zeros_like(b) if x0 is None else x0.clone().to(b.dtype)
    r = b - matvec(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = torch.dot(r, r)
    stop = (tol * torch.linalg.vector_norm(b)) ** 2
    for _ in range(iters):
        if rr <= stop or rr == 0:
            break
        Ap = matvec(p)
        pAp = torch.dot(p, Ap)
        if not pAp > 0:  # converged to round-off: p ~ 0 gives pAp = 0 and alpha = rr / 0 = inf -> NaN
            break
        alpha = rr / pAp
        x += alpha * p
        r -= alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x
