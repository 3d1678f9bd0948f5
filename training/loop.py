"""One training loop for every optimizer: metrics written as it goes, resumable, plotted at the end.

Files in the output folder:
  config.json    the run's settings (a resume must match them)
  metrics.csv    one row per step (columns in METRIC_COLUMNS), appended and flushed every step
  checkpoint.pt  model, optimizer and preconditioner state, saved at every evaluation (and at the
                 last good step when a TrainingError stops the run)
  loss.png       train/test loss and test accuracy against step and estimated time
  final.json     the final metrics (also returned by `train`)

The files are kept by spu/run_folder.py: a second run on the folder is refused (its lock), a
checkpoint holds only tensors and plain data, and a resume checks config.json, the checkpoint and
that metrics.csv holds every step up to the checkpoint's (a row cut off by a crash after it is
dropped and its step run again).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from spu import backends
from spu.core.errors import ThermospiceError
from spu.device import SPU
from spu.limits import Limits
from spu.outdir import ensure_output_folder
from spu.run_folder import (
    CsvLog,
    RunFolderError,
    atomic_write,
    check_manifest,
    hold_lock,
    load_checkpoint,
    remove_stale_temps,
    resume_rows,
    save_checkpoint,
    write_manifest,
)

from .data import batches, load_digits_split, n_batches
from .losses import check_curvature
from .models import build_model, count_params
from .optimizers import OPTIMIZERS, make_optimizer
from .params import CurvatureError
from .preconditioners import TrainingError

# Each optimizer's settings from its record (training/optimizers.py): the paper's, the ones
# `thermospice reproduce tuning` found (lr and damping of sgd, adam, tngd and tngd-adam), and the
# defaults of `train` (the paper's updated by the tuned ones).
PAPER = {name: o.paper for name, o in OPTIMIZERS.items()}
TUNED = {name: o.tuned for name, o in OPTIMIZERS.items() if o.tuned}
DEFAULTS = {name: o.defaults for name, o in OPTIMIZERS.items()}

# Circuit design for --backend ngspice unless the config says otherwise (circuits.Design fields).
# bits_r = 16: J_f has entries 1e-6 of its largest and smaller, which map to resistors above
# r_max (DesignError); 16-bit resistors round those to zero (relative step 1.5e-5 of the array's
# full scale with autorange) and keep every other one inside [r_min, r_max].
# dt_max = 0.05 tau: ngspice's step control keeps the error ~1e-6 relative on the digits MLP at
# 1/5 of the time points of the default 0.01.
# open_error_max = 1e-2 (the solver's default is 1e-6): a training step reads the device after a
# finite t, far from its steady state along the slow modes (at the tuned lam = 0.003 and t = 50 tau,
# e^{-lam t} = 0.86 of the start is left there), so an open-cell error of 1e-4 in the steady state
# does not matter, while stopping a run at step k for it did: the train-bits sweep on the digits CNN
# lost every 4-bit run and one 6-bit run to U columns whose entries all lie below R0/r_max (open-cell
# errors 9e-6 to 1.2e-4; quantisation at those bits rounds those entries to zero anyway).
TRAINING_OPEN_ERROR_MAX = 1e-2
NGSPICE_DESIGN = {"bits_r": 16, "dt_max": 0.05, "open_error_max": TRAINING_OPEN_ERROR_MAX}
# asbuilt has no time step; r_max = 1 GOhm: an array autoranged to a full scale of 0.1 (the clamp of
# Builder.scale) has its 16-bit LSB at R0 * 65535 / 0.1 = 0.66 GOhm, which the default 100 MOhm
# would leave open (the digits CNN's U^T then misses 1e-5 of its steady state).
ASBUILT_DESIGN = {"bits_r": 16, "r_max": 1e9, "open_error_max": TRAINING_OPEN_ERROR_MAX}
# The circuit backends' training designs, by backend name.
TRAINING_DESIGNS = {"ngspice": NGSPICE_DESIGN, "asbuilt": ASBUILT_DESIGN}

METRIC_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "digital_s",
    "device_s",
    "simulator_s",
    "bookkeeping_s",
    "estimated_s",
    "cumulative_estimated_s",
    "wall_s",
)

# Where a step's wall time goes (metrics.csv columns; final.json "per_step_ms" averages them):
# digital_s the gradient and curvature (what the host of a real SPU computes), simulator_s this
# machine simulating the device (handing it the factors included), bookkeeping_s everything else
# (optimizer update, checks, test evaluation, metrics and checkpoints). device_s is not wall time:
# it is the timing model's estimate of the physical SPU call.
TIME_SPLIT = {
    "digital": "digital_s",
    "simulator": "simulator_s",
    "bookkeeping": "bookkeeping_s",
    "device_model": "device_s",
}


@dataclass
class TrainConfig:
    optimizer: str = "tngd"
    backend: str = "ou"
    topology: str | None = None
    model: str = "cnn"
    width: int = 32
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    damping: float | None = None
    t: float | None = None
    td: float = 0.0
    kappa0: float = 0.0
    betas: tuple[float, float] | None = None
    cg_iters: int | None = None
    seed: int = 0
    eval_every: int = 10
    loss: str = "cross_entropy"
    design: dict | None = None  # circuits.Design fields; merged over the backend's TRAINING_DESIGNS entry
    timeout: float | None = None  # seconds before one ngspice solve is killed (None: backend's 600)
    gain_stage: bool = False  # hand the SPU b/max|b| and scale its answer back (spu.SPU gain_stage)
    chop: bool = False  # subtract a run with b = 0 from every solve (spu.SPU chop)
    max_steps: float | None = None  # most time steps one simulated solve may take (None: spu.limits' default)
    curvature: str | None = None  # "ggn" | "mc" | "empirical" (natural-gradient methods; default "ggn")
    mc_samples: int | None = None  # sampled labels per example for curvature "mc" (default 1)

    def resolved(self) -> TrainConfig:
        """Fill unset hyper-parameters from DEFAULTS and check every value."""
        variant = OPTIMIZERS.get(self.optimizer)
        if variant is None:
            raise TrainingError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        d = variant.defaults
        c = TrainConfig(**{**asdict(self)})
        for key in ("lr", "damping", "t", "betas", "cg_iters"):
            if getattr(c, key) is None and key in d:
                setattr(c, key, d[key])
        if c.steps is None and c.epochs is None:
            c.steps = 100
        if c.steps is not None and c.epochs is not None:
            raise TrainingError("give --steps or --epochs, not both")
        for name in ("steps", "epochs"):
            v = getattr(c, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise TrainingError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(c.batch_size, int) or c.batch_size < 1:
            raise TrainingError(f"batch size must be an integer >= 1, got {c.batch_size!r}")
        if not (isinstance(c.lr, (int, float)) and math.isfinite(c.lr) and c.lr > 0):
            raise TrainingError(f"learning rate must be > 0, got {c.lr!r}")
        if c.damping is not None and not (math.isfinite(c.damping) and c.damping > 0):
            raise TrainingError(f"damping must be > 0, got {c.damping!r}")
        if c.t is not None and not (c.t >= 0):
            raise TrainingError(f"analog time t must be >= 0, got {c.t!r}")
        if not (c.td >= 0):
            raise TrainingError(f"delay td must be >= 0, got {c.td!r}")
        if not (math.isfinite(c.kappa0) and c.kappa0 >= 0):
            raise TrainingError(f"kappa0 must be >= 0, got {c.kappa0!r}")
        if not isinstance(c.eval_every, int) or c.eval_every < 1:
            raise TrainingError(f"eval_every must be an integer >= 1, got {c.eval_every!r}")
        if c.betas is not None:
            c.betas = tuple(float(b) for b in c.betas)
        if variant.needs_curvature:
            c.curvature = c.curvature or "ggn"
        elif c.curvature is not None:
            natural = ", ".join(name for name, o in OPTIMIZERS.items() if o.needs_curvature)
            raise TrainingError(f"--curvature applies to {natural}, not {c.optimizer}")
        if c.curvature == "mc":
            c.mc_samples = 1 if c.mc_samples is None else c.mc_samples
        elif c.mc_samples is not None:
            raise TrainingError("--mc-samples applies to --curvature mc only")
        if c.curvature is not None:
            try:
                check_curvature(c.curvature, 1 if c.mc_samples is None else c.mc_samples)
            except CurvatureError as exc:
                raise TrainingError(str(exc)) from None
        if c.backend in TRAINING_DESIGNS and variant.uses_spu:
            c.design = {**TRAINING_DESIGNS[c.backend], **(c.design or {})}
        if c.timeout is not None and not (math.isfinite(c.timeout) and c.timeout > 0):
            raise TrainingError(f"the SPU timeout must be > 0 seconds, got {c.timeout!r}")
        if c.max_steps is not None and not (math.isfinite(c.max_steps) and c.max_steps >= 1):
            raise TrainingError(f"max_steps must be a number >= 1, got {c.max_steps!r}")
        if c.design is not None:
            c.design = dict(c.design)
            make_design(c.design)  # checked now, not at the first step
        return c


def make_design(fields: dict | None):
    """The checked circuits.Design of a dict of its fields (opamp may be a dict of OpAmp's), made by
    the SPU's circuit bridge; None: none (a circuit backend defaults its own, the others need none)."""
    if fields is None:
        return None
    from spu.backends.circuit import design_from_fields

    try:
        return design_from_fields(fields)
    except TypeError as exc:
        raise TrainingError(str(exc)) from None


def build_optimizer(cfg: TrainConfig, model):
    """(preconditioner, torch optimizer) for a resolved config: make_optimizer with the config's
    settings, and the SPU of its backend for an optimizer that uses one."""
    spu = None
    if OPTIMIZERS[cfg.optimizer].uses_spu:
        takes = backends.get(cfg.backend).options
        options = {"timeout": cfg.timeout} if "timeout" in takes and cfg.timeout else {}
        if "limits" in takes and cfg.max_steps is not None:
            options["limits"] = Limits(steps=cfg.max_steps)
        spu = SPU(
            cfg.backend,
            topology=cfg.topology,
            design=make_design(cfg.design),
            kappa0=cfg.kappa0,
            seed=cfg.seed,
            gain_stage=cfg.gain_stage,
            chop=cfg.chop,
            **options,
        )
    return make_optimizer(
        cfg.optimizer,
        model,
        spu=spu,
        lr=cfg.lr,
        loss=cfg.loss,
        damping=cfg.damping,
        t=cfg.t,
        td=cfg.td,
        betas=cfg.betas,
        cg_iters=cfg.cg_iters,
        curvature=cfg.curvature,
        mc_samples=cfg.mc_samples,
        seed=cfg.seed,
    )


@torch.no_grad()
def evaluate(model, data, loss: str = "cross_entropy") -> tuple[float, float]:
    logits = model(data.x)
    if loss == "cross_entropy":
        return float(F.cross_entropy(logits, data.y)), float((logits.argmax(1) == data.y).float().mean())
    return float(0.5 * ((logits - data.y) ** 2).sum(1).mean()), float("nan")


class _Progress:
    """tqdm on stderr when asked; silent otherwise."""

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False)

    def update(self, loss: float, row: dict) -> None:
        """One step done; the postfix shows the loss and the step's time split, with the simulator's
        (e.g. ngspice's) share of the step."""
        if self.bar is not None:
            ms = {k: 1e3 * float(row[c]) for k, c in TIME_SPLIT.items() if k != "device_model"}
            total = sum(ms.values())
            share = f" ({100 * ms['simulator'] / total:.0f}%)" if total > 0 else ""
            self.bar.set_postfix_str(
                f"loss={loss:.4f}, ms/step: digital {ms['digital']:.0f} simulator "
                f"{ms['simulator']:.0f}{share} other {ms['bookkeeping']:.0f}",
                refresh=False,
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    cfg: TrainConfig,
    out_dir: str | None = None,
    *,
    progress: bool = False,
    resume: bool = True,
    data=None,
    model=None,
    plot: bool = True,
) -> dict:
    """Train the digits classifier; returns the final metrics. See the module docstring.

    data: (train, test) Datasets instead of the digits. model: an nn.Module to train in place
    instead of build_model(cfg.model, cfg.width, cfg.seed) (it is then the caller's to inspect;
    a resume does not check that it is the same model). A TrainingError (non-finite loss, gradient
    or update) leaves the model at the last good step, and with out_dir that step is checkpointed.
    A second train on the same out_dir while this one runs is refused (the folder's lock).
    """
    cfg = cfg.resolved()
    train_set, test_set = data or load_digits_split(flatten=cfg.model == "mlp")
    if model is None:
        model = build_model(cfg.model, width=cfg.width, seed=cfg.seed)
    run = _Run(cfg, model, train_set, test_set)
    if out_dir is None:
        run.steps(progress)
        return run.final(None, plot)
    out_dir = os.fspath(out_dir)
    ensure_output_folder(out_dir, "training results")
    with hold_lock(out_dir, "train", "train run"):
        remove_stale_temps(out_dir, RUN_FILES)
        run.open(out_dir, resume)
        try:
            run.steps(progress)
        finally:
            run.log.close()
        return run.final(out_dir, plot)


# The files of a run folder (module docstring); loss.png is written whole by matplotlib.
RUN_FILES = ("config.json", "metrics.csv", "checkpoint.pt", "final.json")
# A resume may run longer or with another timeout (spu_timeout: its name in older folders); every
# other setting must match.
RESUMABLE_CHANGES = ("steps", "epochs", "timeout", "spu_timeout", "max_steps")


class _Run:
    """One training run: the model, its optimizer, the metrics so far, and (with a folder) the files
    that keep them."""

    def __init__(self, cfg: TrainConfig, model, train_set, test_set):
        self.cfg, self.model, self.train_set, self.test_set = cfg, model, train_set, test_set
        self.pre, self.opt = build_optimizer(cfg, model)
        self.per_epoch = n_batches(len(train_set), cfg.batch_size)
        self.total = cfg.steps if cfg.steps is not None else cfg.epochs * self.per_epoch
        self.step, self.cumulative, self.rows = 0, 0.0, []
        self.out_dir = self.log = None
        self.test_loss = self.test_acc = float("nan")

    # -- the folder --------------------------------------------------------------------------------
    def open(self, out_dir: str, resume: bool) -> None:
        """Resume from the folder's checkpoint when its settings match (refuse when they do not),
        else start afresh; then keep the metrics rows so far and append from there."""
        self.out_dir = out_dir
        cfg_path, ckpt_path = (os.path.join(out_dir, f) for f in ("config.json", "checkpoint.pt"))
        metrics_path = os.path.join(out_dir, "metrics.csv")
        settings = json.loads(json.dumps(asdict(self.cfg)))
        if resume and os.path.exists(cfg_path) and os.path.exists(ckpt_path):
            check_manifest(
                cfg_path,
                settings,
                ignore=RESUMABLE_CHANGES,
                what="run settings",
                refuse=lambda keys, old: self._other_settings(keys, old, settings),
            )
            self.step, self.cumulative = _restore(ckpt_path, self.model, self.pre, self.opt)
            self.rows = [
                dict(zip(METRIC_COLUMNS, r))
                for r in resume_rows(metrics_path, METRIC_COLUMNS, self.step, ckpt_path, optional=("bookkeeping_s",))
            ]
        if self.step > self.total:
            raise ThermospiceError(
                f"{out_dir} holds a run already at step {self.step}, beyond the "
                f"{self.total} steps asked for; ask for more steps or use another --out folder"
            )
        write_manifest(cfg_path, settings)
        self.log = CsvLog(metrics_path, METRIC_COLUMNS, [[r[c] for c in METRIC_COLUMNS] for r in self.rows])

    def _other_settings(self, keys, old, new) -> ThermospiceError:
        what = ", ".join(f"{k} {_at(old, k)!r} there, {_at(new, k)!r} here" for k in keys)
        return ThermospiceError(f"{self.out_dir} holds a run with other settings ({what}); use another --out folder")

    def checkpoint(self) -> None:
        save_checkpoint(
            os.path.join(self.out_dir, "checkpoint.pt"),
            {
                "step": self.step,
                "cumulative": self.cumulative,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "preconditioner": self.pre.state_dict(),
            },
        )

    # -- the steps ---------------------------------------------------------------------------------
    def steps(self, progress: bool) -> None:
        cfg, start = self.cfg, self.step
        wall0 = time.perf_counter() - (float(self.rows[-1]["wall_s"]) if self.rows else 0.0)
        last = time.perf_counter()  # end of the previous step: a step's wall time runs from there
        bar = _Progress(self.total, start, progress, cfg.optimizer)
        try:
            stream = batches(self.train_set, cfg.batch_size, epochs=-(-self.total // self.per_epoch), seed=cfg.seed)
            for _ in range(start):  # deterministic stream: skip what a resumed run already did
                next(stream)
            for x, y in stream:
                if self.step >= self.total:
                    break
                info = self._update(x, y, start)
                row, evaluated, now = self._record(info, last, wall0)
                if self.log is not None and evaluated:
                    self.checkpoint()
                bar.update(info.loss, row)
                # Writing this row and its checkpoint is bookkeeping of the next step.
                last = now
        finally:
            bar.close()

    def _update(self, x, y, start: int):
        """One optimizer step; a TrainingError leaves (and checkpoints) the last good step."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        backup = [p.detach().clone() for p in params]
        self.opt.zero_grad(set_to_none=True)
        try:
            info = self.pre.step(x, y)
        except TrainingError as exc:
            # Nothing has changed yet (model, optimizer, preconditioner): keep this state.
            if self.log is not None and self.step > start:
                self.checkpoint()
                raise TrainingError(f"{exc} (checkpoint of step {self.step} in {self.out_dir})") from None
            raise
        self.opt.step()
        if not all(torch.isfinite(p).all() for p in params):
            with torch.no_grad():
                for p, b in zip(params, backup):
                    p.copy_(b)
            raise TrainingError(
                f"the update at step {self.step + 1} made parameters NaN or inf: stopped, "
                "parameters restored to the last good step"
            )
        self.step += 1
        return info

    def _record(self, info, last: float, wall0: float) -> tuple[dict, bool, float]:
        """The step's metrics row (evaluated on the test set every eval_every steps and at the end),
        appended to metrics.csv; (row, evaluated or not, the time it was taken)."""
        step = self.step
        estimated = info.digital_s + info.device_s
        self.cumulative += estimated
        evaluate_now = step % self.cfg.eval_every == 0 or step == self.total
        if evaluate_now:
            self.test_loss, self.test_acc = evaluate(self.model, self.test_set, self.cfg.loss)
        now = time.perf_counter()
        row = {
            "step": step,
            "epoch": (step - 1) // self.per_epoch,
            "train_loss": info.loss,
            "test_loss": self.test_loss if evaluate_now else "",
            "test_accuracy": self.test_acc if evaluate_now else "",
            "digital_s": info.digital_s,
            "device_s": info.device_s,
            "simulator_s": info.simulator_s,
            "bookkeeping_s": max(0.0, now - last - info.digital_s - info.simulator_s),
            "estimated_s": estimated,
            "cumulative_estimated_s": self.cumulative,
            "wall_s": now - wall0,
        }
        self.rows.append(row)
        if self.log is not None:
            self.log.append([row[c] for c in METRIC_COLUMNS])
        return row, evaluate_now, now

    # -- the end -----------------------------------------------------------------------------------
    def final(self, out_dir: str | None, plot: bool) -> dict:
        """final.json's metrics (written with a folder, beside loss.png unless plot=False: a grid of
        hundreds of runs plots its own summary)."""
        cfg, rows = self.cfg, self.rows
        test_loss, test_acc = self.test_loss, self.test_acc
        if rows and math.isnan(test_loss):  # nothing evaluated in this call (a finished run resumed)
            done = [r for r in rows if r["test_loss"] != ""]
            if done:
                test_loss, test_acc = float(done[-1]["test_loss"]), float(done[-1]["test_accuracy"])
        final = {
            "optimizer": cfg.optimizer,
            "backend": cfg.backend if OPTIMIZERS[cfg.optimizer].uses_spu else None,
            "model": cfg.model,
            "n_params": count_params(self.model),
            "steps": self.step,
            "final_train_loss": float(rows[-1]["train_loss"]) if rows else float("nan"),
            "final_test_loss": test_loss,
            "final_test_accuracy": test_acc,
            "wall_time_s": float(rows[-1]["wall_s"]) if rows else 0.0,
            "estimated_time_s": self.cumulative,
            "per_step_ms": per_step_ms(rows),
            "config": asdict(cfg),
        }
        if out_dir is not None:
            atomic_write(os.path.join(out_dir, "final.json"), json.dumps(final, indent=2))
            if plot:
                from .plots import plot_training

                plot_training(rows, os.path.join(out_dir, "loss.png"), title=f"{cfg.optimizer} on digits ({cfg.model})")
        return final


def per_step_ms(rows: list[dict]) -> dict:
    """Mean milliseconds per step of each part of TIME_SPLIT over these metrics rows (NaN when
    none; rows written before bookkeeping_s existed count as 0 there)."""
    out = {}
    for key, col in TIME_SPLIT.items():
        vals = [float(r[col]) for r in rows if r.get(col) not in (None, "")]
        out[key] = 1e3 * sum(vals) / len(vals) if vals else float("nan")
    return out


def _at(settings: dict, key: str):
    """The value at a dotted key of nested settings (None where absent)."""
    for part in key.split("."):
        settings = settings.get(part) if isinstance(settings, dict) else None
    return settings


def _restore(path: str, model, pre, opt) -> tuple[int, float]:
    """Load the checkpoint at `path` into the model, optimizer and preconditioner; (step, cumulative
    estimated seconds)."""
    state = load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        pre.load_state_dict(state["preconditioner"])
        return int(state["step"]), float(state["cumulative"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        why = " ".join(str(exc).split()[:16]) or type(exc).__name__
        raise RunFolderError(
            f"{path} does not fit this run ({type(exc).__name__}: {why}); remove it to start over"
        ) from None
