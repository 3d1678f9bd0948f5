"""Every optimizer, one record each in one registry, and the one `make_optimizer` that builds them.

An optimizer here is a preconditioner (training/preconditioners.py: TNGD, an NGD baseline, or the
identity) beside a torch.optim update rule (SGD or Adam). Its record says what the rest of the code
may ask: whether it runs on the SPU, whether it preconditions with a curvature, which hyper-parameters
it reads, which tasks it trains, and its defaults. Code elsewhere asks the record, never the name.

Importing this module does not import torch (the CLI's choice list comes from OPTIMIZERS).

To add an optimizer: write its preconditioner (if new) and one `Optimizer(...)` entry below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# The hyper-parameters make_optimizer takes; a variant reads those in its `reads`.
SETTINGS = ("lr", "loss", "damping", "t", "td", "betas", "cg_iters", "curvature", "mc_samples", "seed")
# What a setting is when neither the caller nor the variant's defaults give it.
FALLBACK = {"loss": "cross_entropy", "td": 0.0, "curvature": "ggn", "mc_samples": 1, "seed": 0}
TASKS = ("digits", "lm")  # training/loop.py's classifier, training/lm_train.py's span QA


@dataclass(frozen=True)
class Optimizer:
    """One optimizer: how to build it and what it needs.

    precondition(model, settings, spu) -> Preconditioner; update(params, settings) -> torch.optim.
    paper: the paper's settings where it gives them; tuned: `thermospice reproduce tuning`'s
    (docs/TRAINING.md); defaults = paper updated by tuned."""

    name: str
    precondition: Callable
    update: Callable
    reads: tuple[str, ...]
    paper: dict
    tuned: dict = field(default_factory=dict)
    uses_spu: bool = False  # its direction comes from the SPU (it needs an SPU and a backend)
    needs_curvature: bool = False  # it preconditions with a curvature (takes curvature=, mc_samples=)
    dense: bool = False  # it forms the N x N curvature: O(N^3), small models only
    tasks: tuple[str, ...] = ("digits",)

    @property
    def defaults(self) -> dict:
        return {**self.paper, **self.tuned}

    def build(self, model, spu=None, **given):
        """(preconditioner, torch optimizer) for `model`; settings not given (or None) come from
        the defaults, then FALLBACK."""
        unknown = set(given) - set(SETTINGS)
        if unknown:
            raise TypeError(f"unknown optimizer settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")
        settings = {**FALLBACK, **self.defaults, **{k: v for k, v in given.items() if v is not None}}
        params = [p for p in model.parameters() if p.requires_grad]
        return self.precondition(model, settings, spu), self.update(params, settings)


# -- the parts the records are made of (torch imported on use) --------------------------------------
def _curvature(s: dict) -> dict:
    return {"curvature": s["curvature"], "mc_samples": s["mc_samples"], "seed": s["seed"]}


def _gradient(model, s, spu):
    from .preconditioners import Gradient

    return Gradient(model, s["loss"])


def _tngd(model, s, spu):
    from .preconditioners import TNGD

    return TNGD(model, s["loss"], damping=s["damping"], t=s["t"], td=s["td"], spu=spu, **_curvature(s))


def _ngd(model, s, spu):
    from .preconditioners import NGD

    return NGD(model, s["loss"], damping=s["damping"], **_curvature(s))


def _ngd_cg(model, s, spu):
    from .preconditioners import NGDCG

    return NGDCG(model, s["loss"], damping=s["damping"], iters=s["cg_iters"], **_curvature(s))


def _ngd_woodbury(model, s, spu):
    from .preconditioners import NGDWoodbury

    return NGDWoodbury(model, s["loss"], damping=s["damping"], **_curvature(s))


def _sgd(params, s):
    import torch

    return torch.optim.SGD(params, lr=s["lr"])


def _adam(params, s):
    import torch

    return torch.optim.Adam(params, lr=s["lr"], betas=s["betas"])


_NATURAL = ("lr", "damping")

# The paper's settings where it gives them (MNIST: TNGD lr 0.01, t = 50 tau, lambda = 0.01; Adam
# lr 1e-3; TNGD-Adam with beta1 = beta2 = 0 from the LM runs); SGD's 0.1 and the CG count are ours.
# `reproduce fig3/fig4/fig7` train with these, as the paper did.
# tuned: lr and damping of sgd, adam, tngd and tngd-adam from `thermospice reproduce tuning`
# (digits CNN, batch 64, 150 steps, 5 seeds: the lowest final training loss of each method; the
# grid and its numbers are in docs/TRAINING.md). Everything the grid does not tune (t, betas, the
# NGD baselines) keeps the paper's value.
# The order is the CLI's choice list.
OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        Optimizer(
            "tngd",
            _tngd,
            _sgd,
            (*_NATURAL, "t", "td"),
            {"lr": 0.01, "damping": 0.01, "t": 50.0},
            {"lr": 0.1, "damping": 0.003},
            uses_spu=True,
            needs_curvature=True,
            tasks=TASKS,
        ),
        Optimizer(
            "tngd-adam",
            _tngd,
            _adam,
            (*_NATURAL, "t", "td", "betas"),
            {"lr": 1e-3, "damping": 0.01, "t": 50.0, "betas": (0.0, 0.0)},
            {"lr": 0.004, "damping": 0.01},
            uses_spu=True,
            needs_curvature=True,
            tasks=TASKS,
        ),
        Optimizer(
            "adam", _gradient, _adam, ("lr", "betas"), {"lr": 1e-3, "betas": (0.9, 0.999)}, {"lr": 0.04}, tasks=TASKS
        ),
        Optimizer("sgd", _gradient, _sgd, ("lr",), {"lr": 0.1}, {"lr": 0.3}),
        Optimizer("ngd", _ngd, _sgd, _NATURAL, {"lr": 0.01, "damping": 0.01}, needs_curvature=True, dense=True),
        Optimizer(
            "ngd-cg",
            _ngd_cg,
            _sgd,
            (*_NATURAL, "cg_iters"),
            {"lr": 0.01, "damping": 0.01, "cg_iters": 20},
            needs_curvature=True,
        ),
        Optimizer("ngd-woodbury", _ngd_woodbury, _sgd, _NATURAL, {"lr": 0.01, "damping": 0.01}, needs_curvature=True),
    )
}


def optimizers_for(task: str) -> tuple[str, ...]:
    """Names of the optimizers that train `task`, in registry order."""
    return tuple(name for name, o in OPTIMIZERS.items() if task in o.tasks)


def make_optimizer(name: str, model, *, spu=None, **settings):
    """(preconditioner, torch optimizer) of optimizer `name` for `model` (see Optimizer.build).

    spu: the SPU of an optimizer that uses one (None: TNGD's default, SPU("ou"))."""
    return OPTIMIZERS[name].build(model, spu, **settings)
