"""One fine-tuning run of the span-QA model (training/lm_model.py) on the generated QA set
(training/lm_data.py) with Adam, TNGD or TNGD-Adam: the runs behind `reproduce fig5`.

Optimizers (the paper's Fig. 5):

* ``adam``: the gradient into torch.optim.Adam (betas 0.9, 0.999).
* ``tngd``: training.preconditioners.TNGD (the SPU solves (J^T H J + lam I) x = g for analog time t,
  warm-started from the previous estimate) into plain SGD.
* ``tngd-adam``: the same natural-gradient estimate into Adam with (beta1, beta2) = (0, 0), as the
  paper's TNGD-Adam: each coordinate is then divided by its own magnitude (plus eps).

The model's rows are the two-row encoding of lm_model.rows, so TNGD's curvature is
training.curvature.compute_curvature of the span loss (dz = L per row, 2L per example).

Resume: metrics.csv gets one line per step (flushed); every `checkpoint_every` steps and at the end
the trainable parameters, the optimizer and preconditioner states and the step go to checkpoint.pt
(atomically). A restarted run truncates metrics.csv to the checkpoint's step and goes on from
there; batches depend only on (seed, step), so the resumed run repeats the uninterrupted one.
final.json marks a finished run (with its settings, so changed settings rerun it). The files and
their checks are spu/run_folder.py's, as for `train`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from spu.run_folder import (
    CsvLog,
    atomic_write,
    hold_lock,
    load_checkpoint,
    remove_stale_temps,
    resume_rows,
    save_checkpoint,
)

from .lm_data import QASet, best_spans, exact_match, f1_score, span_texts
from .lm_model import build_span_qa, rows
from .optimizers import OPTIMIZERS, optimizers_for
from .preconditioners import TrainingError

METRICS = ("step", "train_loss", "digital_s", "simulator_s", "heldout_loss", "heldout_em", "heldout_f1")


@dataclass(frozen=True)
class LMRunConfig:
    optimizer: str
    steps: int
    batch: int
    seed: int
    lr: float
    t: float = 0.4  # analog time per step, in tau
    damping: float = 1.0  # lambda
    eval_every: int = 10
    checkpoint_every: int = 10

    def check(self) -> LMRunConfig:
        if self.optimizer not in optimizers_for("lm"):
            raise TrainingError(f"optimizer must be one of {optimizers_for('lm')}, got {self.optimizer!r}")
        for name in ("steps", "batch", "eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise TrainingError(f"{name} must be an integer >= 1, got {v!r}")
        if not self.lr > 0 or self.t < 0 or not self.damping > 0:
            raise TrainingError(
                f"need lr > 0, t >= 0, damping > 0; got lr={self.lr}, t={self.t}, damping={self.damping}"
            )
        return self


def batch_indices(n: int, batch: int, seed: int, step: int) -> np.ndarray:
    """The examples of one step: drawn without replacement from (seed, step) alone (resumable)."""
    return np.random.default_rng([seed, step]).choice(n, size=min(batch, n), replace=False)


def build_optimizer(model, cfg: LMRunConfig):
    """(preconditioner, torch optimizer) of the run: the optimizer's own record, with the run's lr,
    damping and t (TNGD on SPU("ou"); TNGD-Adam's betas are its (0, 0))."""
    return OPTIMIZERS[cfg.optimizer].build(model, lr=cfg.lr, damping=cfg.damping, t=cfg.t)


@torch.no_grad()
def evaluate(model, tokenizer, data: QASet, chunk: int = 64) -> dict:
    """Held-out span loss (the training loss's definition), exact match and F1 (fractions)."""
    losses, em, f1 = [], [], []
    for i0 in range(0, len(data), chunk):
        ids = data.ids[i0 : i0 + chunk]
        z = model.span_logits(ids)
        s, e = data.starts[i0 : i0 + chunk], data.ends[i0 : i0 + chunk]
        ce = torch.nn.functional.cross_entropy
        losses.append(0.5 * (ce(z[:, 0], s, reduction="sum") + ce(z[:, 1], e, reduction="sum")))
        texts = span_texts(tokenizer, ids, best_spans(z[:, 0], z[:, 1]))
        for pred, ans in zip(texts, data.answers[i0 : i0 + chunk]):
            em.append(exact_match(pred, ans))
            f1.append(f1_score(pred, ans))
    return {
        "heldout_loss": float(sum(losses)) / len(data),
        "heldout_em": float(np.mean(em)),
        "heldout_f1": float(np.mean(f1)),
    }


def _trainable_state(model) -> dict:
    """Only the adapters and the head: the frozen encoder is rebuilt from the package."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def finished(run_dir: str, cfg: LMRunConfig) -> bool:
    path = os.path.join(run_dir, "final.json")
    try:
        with open(path) as fh:
            return json.load(fh).get("config") == asdict(cfg)
    except (OSError, ValueError):
        return False


def train_run(cfg: LMRunConfig, encoder, tokenizer, train: QASet, heldout: QASet, run_dir: str, log=None) -> dict:
    """Train (or resume, or skip if finished) one run into run_dir; returns final.json's content."""
    cfg.check()
    os.makedirs(run_dir, exist_ok=True)
    final_path = os.path.join(run_dir, "final.json")
    with hold_lock(run_dir, "train", "train run"):
        remove_stale_temps(run_dir, ("checkpoint.pt", "metrics.csv", "final.json"))
        if finished(run_dir, cfg):
            with open(final_path) as fh:
                return json.load(fh)
        model = build_span_qa(encoder, tokenizer.sep_token_id, seed=cfg.seed)
        pre, opt = build_optimizer(model, cfg)
        start, kept = _resume(run_dir, cfg, model, pre, opt)
        t_start = time.perf_counter()
        with CsvLog(os.path.join(run_dir, "metrics.csv"), METRICS, kept) as metrics:
            for k in range(start, cfg.steps):
                row = _step(cfg, model, pre, opt, tokenizer, train, heldout, k)
                metrics.append([row.get(c, "") for c in METRICS])
                if (k + 1) % cfg.checkpoint_every == 0 or k + 1 == cfg.steps:
                    save_checkpoint(
                        os.path.join(run_dir, "checkpoint.pt"),
                        {
                            "config": asdict(cfg),
                            "step": k + 1,
                            "trainable": _trainable_state(model),
                            "opt": opt.state_dict(),
                            "pre": pre.state_dict(),
                        },
                    )
                if log:
                    log(
                        f"step {k + 1}/{cfg.steps} loss {row['train_loss']:.4f} ({row['digital_s']:.2f} s)"
                        + (f" held-out F1 {row['heldout_f1']:.3f}" if "heldout_f1" in row else "")
                    )
        last = dict(
            zip(METRICS, resume_rows(metrics.path, METRICS, cfg.steps, os.path.join(run_dir, "checkpoint.pt"))[-1])
        )
        out = {
            "config": asdict(cfg),
            "steps": cfg.steps,
            "wall_s": time.perf_counter() - t_start,
            **{c: float(last[c]) for c in ("train_loss", "heldout_loss", "heldout_em", "heldout_f1")},
        }
        atomic_write(final_path, json.dumps(out, indent=1))
        return out


def _resume(run_dir: str, cfg: LMRunConfig, model, pre, opt) -> tuple[int, list[list[str]]]:
    """(step, metrics rows to keep) from run_dir's checkpoint when it holds a run of these settings
    (loaded into model, pre and opt); (0, []) when there is none or it holds other settings."""
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    if not os.path.exists(ckpt_path):
        return 0, []
    ck = load_checkpoint(ckpt_path, TrainingError)
    if ck.get("config") != asdict(cfg):
        return 0, []
    missing = set(_trainable_state(model)) - set(ck["trainable"])
    if missing:
        raise TrainingError(f"{ckpt_path} lacks parameters {sorted(missing)[:3]}")
    model.load_state_dict(ck["trainable"], strict=False)
    opt.load_state_dict(ck["opt"])
    pre.load_state_dict(ck["pre"])
    start = int(ck["step"])
    return start, resume_rows(os.path.join(run_dir, "metrics.csv"), METRICS, start, ckpt_path)


def _step(cfg: LMRunConfig, model, pre, opt, tokenizer, train: QASet, heldout: QASet, k: int) -> dict:
    """Step k (0-based) on its batch; the metrics row (held-out metrics every eval_every steps)."""
    idx = torch.from_numpy(batch_indices(len(train), cfg.batch, cfg.seed, k))
    x, y = rows(train.ids[idx], train.starts[idx], train.ends[idx])
    opt.zero_grad(set_to_none=True)
    info = pre.step(x, y)
    opt.step()
    row = {"step": k + 1, "train_loss": info.loss, "digital_s": info.digital_s, "simulator_s": info.simulator_s}
    if (k + 1) % cfg.eval_every == 0 or k + 1 == cfg.steps:
        row.update(evaluate(model, tokenizer, heldout))
    return row
