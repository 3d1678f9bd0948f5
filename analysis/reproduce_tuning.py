"""`thermospice reproduce tuning`: SGD, Adam, TNGD and TNGD-Adam tuned against each other.

    res = reproduce_tuning("runs/reproduce/tuning-quick", quick=True)   # tuning.csv, tuning_lr.png, ...

Every method gets the same step budget (150 steps at full size), the same batches and the same
5 seeds, on the digits CNN and the MLP. The grid has two stages per (model, method):

1. learning rate: LR_GRID[method], 6 log-spaced values each; the natural-gradient methods at
   the paper's damping lambda = 0.01;
2. damping (TNGD, TNGD-Adam): the other values of DAMPING_GRID at the best learning rate of
   stage 1 (lambda sets how far the SPU's estimate moves along weak curvature, so it is tuned
   where the learning rate is already good; a full lr x lambda product would not fit 45 min on
   2 cores).

"Best" is the lowest final training loss (the minibatch loss averaged over the last 10 % of the
steps, then over seeds; a configuration with a diverged seed is never best). Runtime axes use the
estimated runtime of training.loop (measured digital part + the timing model's device time for
TNGD; measured time for the digital methods): the machine's load enters the measured part.

Files (OUT = runs/reproduce/tuning[-quick]):
  tuning_runs.csv      one row per run (RUN_COLUMNS), appended as runs finish: the resume record
  tuning.csv           one row per configuration, mean/std over seeds (CONFIG_COLUMNS)
  tuning_best.csv      the best configuration of each (model, method): the tuned defaults
  tuning_curves.csv    the best configurations' mean training loss against step and estimated time
  tuning_lr.png        final train loss and test accuracy against lr (stage 1), lambda (stage 2)
  tuning_best.png      the best of each method against steps and against estimated runtime
  runs/NAME/           each run's training.loop folder (metrics.csv, checkpoint, final.json)
  tuning.manifest.json the settings; a folder holding another grid is refused

Resume: a rerun on the same folder skips the runs in tuning_runs.csv and continues a half-done
run from its checkpoint. Execution: runs go to a process pool (``workers``) or a Dask cluster
(``scheduler``), one BLAS/torch thread each.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from functools import partial

import numpy as np

from spu.run_folder import atomic_write, csv_line
from training.optimizers import OPTIMIZERS

from .executors import run_points
from .io import REPRODUCE_CELLS, fmt, read_csv, write_csv
from .reproduce import ReproduceError, log

METHODS = ("sgd", "adam", "tngd", "tngd-adam")
NATURAL = tuple(m for m in METHODS if OPTIMIZERS[m].uses_spu)  # the methods whose damping is tuned too
PAPER_DAMPING = 0.01

# Learning-rate grids, 6 log-spaced values each. Where the pilot (digits CNN, b = 64, 150 steps,
# seed 0) found the optimum they step by factors of 2 around it, so Adam and TNGD are resolved
# equally finely: Adam best near 3e-2 (0.1 stalls at chance level), TNGD near 0.2 (0.3 stalls for
# 2 of 3 seeds), TNGD-Adam near 3e-3. SGD, unpiloted and cheap, spans half-decades.
LR_GRID = {
    "sgd": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
    "adam": [0.0025, 0.005, 0.01, 0.02, 0.04, 0.08],
    "tngd": [0.025, 0.05, 0.1, 0.2, 0.4, 0.8],
    "tngd-adam": [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016],
}
# Stage 2 tries the paper's lambda's neighbours (half-decades) at stage 1's best lr. The pilot's
# lambda = 0.001 stalled at lr 0.3 and 0.1 trained more slowly at every lr it tried.
DAMPING_GRID = [0.003, 0.01, 0.03]

SIZES = {
    # quick: the CLI's --quick (about a minute on 2 cores); tests shrink it further by overrides
    True: {
        "models": ["mlp"],
        "width": 8,
        "batch": 16,
        "steps": 10,
        "seeds": 2,
        "eval_every": 5,
        "lr_grid": {"sgd": [0.1, 1.0], "adam": [1e-3, 1e-2], "tngd": [0.03, 0.3], "tngd-adam": [1e-3, 1e-2]},
        "damping_grid": [0.001, 0.01, 0.1],
        "t": 50.0,
    },
    False: {
        "models": ["cnn", "mlp"],
        "width": 32,
        "batch": 64,
        "steps": 150,
        "seeds": 5,
        "eval_every": 25,
        "lr_grid": LR_GRID,
        "damping_grid": DAMPING_GRID,
        "t": 50.0,
    },
}

RUN_COLUMNS = (
    ("run", "the run's folder name under runs/ (its key: every setting that changes it)"),
    ("model", "cnn or mlp"),
    ("method", "sgd, adam, tngd or tngd-adam"),
    ("stage", "1: learning-rate grid; 2: damping grid at stage 1's best learning rate"),
    ("lr", "learning rate"),
    ("damping", "lambda (natural-gradient methods; empty otherwise)"),
    ("seed", "seed of the initial weights and of the batch order"),
    ("status", "ok, or diverged (non-finite loss or update: the run stopped)"),
    ("steps", "steps done"),
    ("final_train_loss", "minibatch training loss averaged over the last 10 % of the steps"),
    ("last_train_loss", "the last step's minibatch loss (train's final_train_loss)"),
    ("final_test_loss", "test-set cross-entropy after the last step"),
    ("final_test_accuracy", "test accuracy after the last step"),
    ("estimated_s", "estimated runtime of the whole run, s (digital measured + device modelled)"),
    ("wall_s", "wall time of the run on this machine, s (simulating the device included)"),
    ("digital_ms", "mean digital part per step, ms (measured)"),
    ("simulator_ms", "mean wall time simulating the device per step, ms"),
    ("device_ms", "mean timing-model device time per step, ms"),
)

CONFIG_COLUMNS = (
    ("model", "cnn or mlp"),
    ("method", "sgd, adam, tngd or tngd-adam"),
    ("stage", "1 or 2 (as in tuning_runs.csv)"),
    ("lr", "learning rate"),
    ("damping", "lambda (natural-gradient methods)"),
    ("seeds", "runs averaged"),
    ("diverged", "runs that diverged"),
    ("final_train_loss_mean", "final training loss (see tuning_runs.csv), mean over seeds"),
    ("final_train_loss_std", "its standard deviation over seeds"),
    ("final_test_loss_mean", "final test loss, mean over seeds"),
    ("final_test_accuracy_mean", "final test accuracy, mean over seeds"),
    ("final_test_accuracy_std", "its standard deviation over seeds"),
    ("estimated_s_mean", "estimated runtime of a run, s, mean over seeds"),
    ("wall_s_mean", "wall time of a run, s, mean over seeds"),
    ("best", "1 for the best configuration of its (model, method)"),
)

CURVE_COLUMNS = (
    ("model", "cnn or mlp"),
    ("method", "sgd, adam, tngd or tngd-adam"),
    ("lr", "the best learning rate"),
    ("damping", "the best damping (natural-gradient methods)"),
    ("step", "iteration, 1-based"),
    ("train_loss_mean", "minibatch training loss at this step, mean over seeds"),
    ("train_loss_std", "its standard deviation over seeds"),
    ("estimated_s_mean", "cumulative estimated runtime at this step, s, mean over seeds"),
)


def columns_help() -> str:
    parts = []
    for name, cols in (
        ("tuning_runs.csv", RUN_COLUMNS),
        ("tuning.csv / tuning_best.csv", CONFIG_COLUMNS),
        ("tuning_curves.csv", CURVE_COLUMNS),
    ):
        parts.append(f"{name} columns:\n" + "\n".join(f"  {c:24s} {d}" for c, d in cols))
    return "\n\n".join(parts)


# -- the grid ---------------------------------------------------------------------------------------
def check_size(size: dict) -> None:
    for name in ("width", "batch", "steps", "seeds", "eval_every"):
        v = size.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ReproduceError(f"tuning: {name} must be an integer >= 1, got {v!r}")
    if not size["models"] or any(m not in ("cnn", "mlp") for m in size["models"]):
        raise ReproduceError(f"tuning: models must be a non-empty list of cnn/mlp, got {size['models']!r}")
    grid = size["lr_grid"]
    if set(grid) != set(METHODS):
        raise ReproduceError(f"tuning: lr_grid needs exactly the methods {', '.join(METHODS)}")
    for name, values in list(grid.items()) + [("damping", size["damping_grid"])]:
        if not values or any(not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0) for v in values):
            raise ReproduceError(f"tuning: the {name} grid must be a non-empty list of numbers > 0, got {values!r}")
    if PAPER_DAMPING not in size["damping_grid"]:
        raise ReproduceError(f"tuning: damping_grid must contain the paper's {PAPER_DAMPING} (stage 1 uses it)")


def run_name(model: str, method: str, lr: float, damping: float | None, seed: int) -> str:
    d = f"-d{damping:g}" if damping is not None else ""
    return f"{model}-{method}-lr{lr:g}{d}-seed{seed}"


def job(model: str, method: str, lr: float, damping: float | None, seed: int, stage: int) -> dict:
    return {
        "run": run_name(model, method, lr, damping, seed),
        "model": model,
        "method": method,
        "stage": stage,
        "lr": float(lr),
        "damping": None if damping is None else float(damping),
        "seed": seed,
    }


def stage1_jobs(size: dict) -> list[dict]:
    return [
        job(model, method, lr, PAPER_DAMPING if method in NATURAL else None, seed, 1)
        for model in size["models"]
        for method in METHODS
        for lr in size["lr_grid"][method]
        for seed in range(size["seeds"])
    ]


def stage2_jobs(size: dict, configs: list[dict]) -> list[dict]:
    """The damping grid at the best stage-1 learning rate of each (model, natural-gradient method)."""
    jobs = []
    for model in size["models"]:
        for method in NATURAL:
            best = best_config([c for c in configs if c["model"] == model and c["method"] == method])
            if best is None:
                continue
            for d in size["damping_grid"]:
                if d != PAPER_DAMPING:
                    jobs += [job(model, method, best["lr"], d, seed, 2) for seed in range(size["seeds"])]
    return jobs


def train_config(size: dict, j: dict):
    from training.loop import TrainConfig

    natural = j["method"] in NATURAL
    return TrainConfig(
        optimizer=j["method"],
        backend="ou",
        model=j["model"],
        width=size["width"],
        steps=size["steps"],
        batch_size=size["batch"],
        lr=j["lr"],
        damping=j["damping"] if natural else None,
        t=size["t"] if natural else None,
        seed=j["seed"],
        eval_every=size["eval_every"],
    )


# -- one run (runs in a worker process) ---------------------------------------------------------------
def evaluate_run(spec_json: str, j: dict) -> dict:
    """Train one grid point into OUT/runs/NAME (resuming its checkpoint) and return its row."""
    from training.loop import train
    from training.malloc import tune_glibc_malloc
    from training.preconditioners import TrainingError

    from .reproduce import thread_limit

    tune_glibc_malloc()
    spec = json.loads(spec_json)
    size = spec["size"]
    run_dir = os.path.join(spec["out"], "runs", j["run"])
    row = {k: j[k] for k in ("run", "model", "method", "stage", "lr", "damping", "seed")}
    start = time.perf_counter()
    with thread_limit(1):
        try:
            final = train(train_config(size, j), run_dir, resume=True, plot=False)
            row["status"] = "ok"
        except TrainingError:
            final = None
            row["status"] = "diverged"
    metrics = read_csv(os.path.join(run_dir, "metrics.csv"))
    losses = [float(r["train_loss"]) for r in metrics]
    tail = max(1, len(losses) // 10)
    row.update(
        steps=len(losses),
        final_train_loss=float(np.mean(losses[-tail:])) if losses else math.nan,
        last_train_loss=losses[-1] if losses else math.nan,
        wall_s=time.perf_counter() - start,
    )
    if final is not None:
        ms = final["per_step_ms"]
        row.update(
            final_test_loss=final["final_test_loss"],
            final_test_accuracy=final["final_test_accuracy"],
            estimated_s=final["estimated_time_s"],
            wall_s=final["wall_time_s"],
            digital_ms=ms["digital"],
            simulator_ms=ms["simulator"],
            device_ms=ms["device_model"],
        )
    else:  # a diverged run has no meaningful final loss
        row.update(final_train_loss=math.inf, final_test_loss=math.nan, final_test_accuracy=math.nan)
    return row


# -- aggregation ----------------------------------------------------------------------------------
def _num(v) -> float:
    if v in (None, ""):
        return math.nan
    return float(v)


def config_key(r: dict) -> tuple:
    d = r.get("damping")
    return (r["model"], r["method"], float(r["lr"]), None if d in (None, "") else float(d))


def configs_from_runs(runs: list[dict]) -> list[dict]:
    """One row per (model, method, lr, damping): mean/std over its seeds (CONFIG_COLUMNS)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(config_key(r), []).append(r)
    out = []
    for (model, method, lr, damping), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]

        def stat(col, rows=ok):
            v = np.array([_num(r[col]) for r in rows], dtype=float)
            v = v[np.isfinite(v)]
            if not v.size:
                return math.nan, math.nan
            return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0

        diverged = len(rs) - len(ok)
        train_mean, train_std = stat("final_train_loss")
        acc_mean, acc_std = stat("final_test_accuracy")
        out.append(
            {
                "model": model,
                "method": method,
                "stage": min(int(r["stage"]) for r in rs),
                "lr": lr,
                "damping": damping,
                "seeds": len(rs),
                "diverged": diverged,
                "final_train_loss_mean": math.inf if diverged else train_mean,
                "final_train_loss_std": train_std,
                "final_test_loss_mean": stat("final_test_loss")[0],
                "final_test_accuracy_mean": acc_mean,
                "final_test_accuracy_std": acc_std,
                "estimated_s_mean": stat("estimated_s")[0],
                "wall_s_mean": stat("wall_s")[0],
                "best": 0,
            }
        )
    out.sort(key=lambda c: (c["model"], METHODS.index(c["method"]), c["lr"], c["damping"] or 0.0))
    for model in {c["model"] for c in out}:
        for method in METHODS:
            best = best_config([c for c in out if c["model"] == model and c["method"] == method])
            if best is not None:
                best["best"] = 1
    return out


def best_config(configs: list[dict]) -> dict | None:
    """The configuration with the lowest mean final training loss (NaN and diverged never win)."""
    finite = [c for c in configs if math.isfinite(c["final_train_loss_mean"])]
    return min(finite, key=lambda c: c["final_train_loss_mean"]) if finite else None


def best_curves(out: str, size: dict, configs: list[dict]) -> list[dict]:
    """Mean training loss of each best configuration against step and estimated runtime."""
    rows = []
    for c in (c for c in configs if c["best"]):
        loss = np.full((size["seeds"], size["steps"]), np.nan)
        est = np.full((size["seeds"], size["steps"]), np.nan)
        for seed in range(size["seeds"]):
            path = os.path.join(
                out, "runs", run_name(c["model"], c["method"], c["lr"], c["damping"], seed), "metrics.csv"
            )
            for r in read_csv(path) if os.path.exists(path) else []:
                k = int(r["step"]) - 1
                if 0 <= k < size["steps"]:
                    loss[seed, k], est[seed, k] = float(r["train_loss"]), float(r["cumulative_estimated_s"])
        for k in range(size["steps"]):
            lk = loss[:, k][np.isfinite(loss[:, k])]
            ek = est[:, k][np.isfinite(est[:, k])]
            if lk.size:
                rows.append(
                    {
                        "model": c["model"],
                        "method": c["method"],
                        "lr": c["lr"],
                        "damping": c["damping"],
                        "step": k + 1,
                        "train_loss_mean": float(lk.mean()),
                        "train_loss_std": float(lk.std(ddof=1)) if lk.size > 1 else 0.0,
                        "estimated_s_mean": float(ek.mean()) if ek.size else math.nan,
                    }
                )
    return rows


# -- the runner -----------------------------------------------------------------------------------
def _names(columns) -> list[str]:
    return [c for c, _ in columns]


def _cells(row: dict) -> list[str]:
    return [fmt(row.get(c), **REPRODUCE_CELLS) for c in _names(RUN_COLUMNS)]


def _append_row(path: str, row: dict) -> None:
    """Append one run's row and fsync it: a crash loses at most the runs in flight."""
    text = ("" if os.path.exists(path) and os.path.getsize(path) else csv_line(_names(RUN_COLUMNS))) + csv_line(
        _cells(row)
    )
    with open(path, "a", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _done_runs(path: str, planned: set[str]) -> dict[str, dict]:
    """Finished runs of an earlier call, by name; the file is rewritten with exactly those rows, so
    that appending goes on after complete lines (a crash can leave the last line cut short, and a
    line is complete only with its newline)."""
    import csv
    import io

    if not os.path.exists(path):
        return {}
    with open(path, newline="") as fh:
        text = fh.read()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    names = _names(RUN_COLUMNS)
    done = {}
    for r in csv.DictReader(io.StringIO(text)):
        if None in r.values() or None in r or r.get("status") not in ("ok", "diverged"):
            continue  # not a row of this format: that run is done again
        if r["run"] in planned:
            done[r["run"]] = {c: r.get(c, "") for c in names}
    atomic_write(path, "".join(csv_line(v) for v in [names] + [[r[c] for c in names] for r in done.values()]))
    return done


def _stage(spec_json, jobs, done, runs_csv, executor, progress, label):
    """Run the jobs not in `done` on the executor (analysis.executors), writing each row as it
    comes; returns (computed, skipped)."""
    skipped = sum(j["run"] in done for j in jobs)
    log(f"[tuning] {label}: {len(jobs)} runs, {skipped} done before", progress)
    t0 = time.perf_counter()
    count = [0]

    def write(j, row):
        _append_row(runs_csv, row)
        done[j["run"]] = dict(zip(_names(RUN_COLUMNS), _cells(row)))
        count[0] += 1
        log(
            f"[tuning] {label} {count[0]}/{len(jobs) - skipped} {j['run']}: {row['status']}, train loss "
            f"{row['final_train_loss']:.4g} ({row['wall_s']:.1f} s; {time.perf_counter() - t0:.0f} s so far)",
            progress,
        )

    computed = run_points(
        jobs,
        partial(evaluate_run, spec_json),
        executor=executor,
        on_result=write,
        key=lambda j: j["run"],
        done=set(done),
    )
    return computed, skipped


def run_tuning(size: dict, out: str, paths: dict, progress: bool, executor) -> tuple[int, int, list[dict]]:
    """Both stages on an analysis.executors executor, then the tables and figures. Returns
    (computed, skipped, best configurations)."""
    check_size(size)
    spec_json = json.dumps({"size": size, "out": out}, sort_keys=True)
    runs_csv = paths["runs"]
    first = stage1_jobs(size)
    # Stage 2's learning rates follow from stage 1, so every stage-2 name is planned once known.
    done = _done_runs(runs_csv, {j["run"] for j in first} | _possible_stage2(size))
    c1, s1 = _stage(spec_json, first, done, runs_csv, executor, progress, "stage 1 (learning rates)")
    configs = configs_from_runs([done[j["run"]] for j in first])
    second = stage2_jobs(size, configs)
    c2, s2 = _stage(spec_json, second, done, runs_csv, executor, progress, "stage 2 (damping)")
    runs = [done[j["run"]] for j in first + second]
    configs = configs_from_runs(runs)
    write_csv(paths["csv"], _names(CONFIG_COLUMNS), configs, **REPRODUCE_CELLS)
    best = [c for c in configs if c["best"]]
    write_csv(paths["best"], _names(CONFIG_COLUMNS), best, **REPRODUCE_CELLS)
    curves = best_curves(out, size, configs)
    write_csv(paths["curves"], _names(CURVE_COLUMNS), curves, **REPRODUCE_CELLS)
    from .tuning_plots import plot_best, plot_grid

    plot_grid(configs, paths["png_lr"])
    plot_best(curves, best, paths["png_best"])
    return c1 + c2, s1 + s2, best


def _possible_stage2(size: dict) -> set[str]:
    return {
        run_name(model, method, lr, d, seed)
        for model in size["models"]
        for method in NATURAL
        for lr in size["lr_grid"][method]
        for d in size["damping_grid"]
        for seed in range(size["seeds"])
    }


def tuning_paths(out: str) -> dict:
    return {
        "runs": os.path.join(out, "tuning_runs.csv"),
        "csv": os.path.join(out, "tuning.csv"),
        "best": os.path.join(out, "tuning_best.csv"),
        "curves": os.path.join(out, "tuning_curves.csv"),
        "png_lr": os.path.join(out, "tuning_lr.png"),
        "png_best": os.path.join(out, "tuning_best.png"),
    }


# -- entry point ----------------------------------------------------------------------------------
def reproduce_tuning(
    out: str,
    *,
    quick: bool = False,
    progress: bool = True,
    overrides: dict | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
):
    """Run (or resume) the tuning grid into `out`; returns a ReproduceResult (see the module doc).

    workers: processes (default: the CPU count; 1 runs in this process); scheduler: a Dask
    scheduler address instead."""
    from .executors import DaskCluster, ProcessPool, connect_scheduler, default_workers
    from .io import prepare_folder
    from .reproduce import ReproduceResult, figure_folder

    size = json.loads(json.dumps(SIZES[bool(quick)]))
    for k, v in (overrides or {}).items():
        if k not in size:
            raise ReproduceError(f"unknown size parameter {k!r} for tuning; known: {', '.join(sorted(size))}")
        size[k] = v
    check_size(size)
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ReproduceError(f"workers must be an integer >= 1, got {workers!r}")
    out = prepare_folder(out, "results")
    spec = {"quick": bool(quick), "size": size}
    paths = tuning_paths(out)
    start = time.perf_counter()
    with figure_folder(out, "tuning", spec) as manifest:
        client = connect_scheduler(scheduler) if scheduler is not None else None
        try:
            if client is not None:
                # Task keys: the run names, under a hash of the grid, so two grids never share a key.
                tag = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
                executor = DaskCluster(client, f"thermospice-tuning-{tag}", key=lambda j: j["run"])
            else:
                executor = ProcessPool(workers, preload=["analysis.reproduce_tuning"])
            computed, skipped, best = run_tuning(size, out, paths, progress, executor)
        finally:
            if client is not None:
                client.close()
    return ReproduceResult(
        "tuning",
        out,
        paths["csv"],
        paths["png_lr"],
        paths["best"],
        manifest,
        computed,
        skipped,
        best,
        time.perf_counter() - start,
    )
