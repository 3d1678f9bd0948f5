"""Training sweeps with the circuit's errors: `thermospice sweep train-*` (the TRAIN_KINDS of
analysis/sweep_kinds: bits, tolerance, noise, the op-amp and converter errors, the presets).

Each setting trains the digits CNN with TNGD on the `asbuilt` backend (the realised circuit) for a
fixed number of steps, for several seeds; the ideal `ou` device and Adam train beside it as
reference lines. Writes OUT/KIND.csv (one row per run, appended as runs finish), OUT/KIND.png
(final train loss and test accuracy against the setting), OUT/KIND.manifest.json, and each run's
own folder OUT/KIND.runs/NAME/ (metrics.csv, final.json). Rerun the same command to resume:
finished runs are skipped and a run cut short continues from its checkpoint. Runs go to
--workers processes or a Dask cluster (analysis/executors.py).
"""

from __future__ import annotations

import json
import math
import os
import time
from functools import partial

from circuits import topologies
from circuits.design_file import rename_fields
from spu.core.errors import DesignError, ThermospiceError
from spu.run_folder import CsvLog, check_manifest, hold_lock, read_rows

from .executors import DaskCluster, ProcessPool, connect_scheduler, default_workers, run_points
from .io import fmt
from .sweep_errors import SweepError, SweepMismatchError, SweepOptionError
from .sweep_kinds import train_kind
from .train_sweep_runs import REFERENCE_RUNS, SWEPT_RUN

COLUMNS = (
    "id",
    "kind",
    "run",
    "setting",
    "seed",
    "status",
    "final_train_loss",
    "final_test_accuracy",
    "wall_s",
    "message",
)


def build_points(kind: str, settings, seeds: int, seed: int) -> list[dict]:
    points = []
    for s in range(seed, seed + seeds):
        for k, value in enumerate(settings):
            points.append({"id": f"{k}-s{s}", "run": SWEPT_RUN, "setting": value, "seed": s})
        points += [{"id": f"{name}-s{s}", "run": name, "setting": None, "seed": s} for name in REFERENCE_RUNS]
    return points


# Time steps one simulated solve may take (Limits.check_steps): a clipped or slewing circuit at the
# digits CNN's size needs asbuilt's limited stepper at steps of 0.05/rho, millions per solve (one
# 3-step run with a 0.3 V swing ran 14 minutes without finishing a step); past this the run stops
# with a LimitError row instead of holding a worker for hours.
LIMITED_STEPS = 2000


def evaluate(spec: dict, pt: dict) -> dict:
    """Train one run (resuming its own folder); failures become a row, not a crash."""
    from training.loop import TrainConfig, train
    from training.malloc import tune_glibc_malloc

    tune_glibc_malloc()  # the realised N x m arrays would pay their page faults every step
    kind = spec["kind"]
    t0 = time.perf_counter()
    common = {"steps": spec["steps"], "seed": pt["seed"], "eval_every": spec["steps"], "batch_size": spec["batch"]}
    reference = REFERENCE_RUNS.get(pt["run"])
    if reference is not None:
        cfg = TrainConfig(**reference.config(spec), **common)
    else:
        design, kappa0 = train_kind(kind).design_for(pt["setting"])
        design["component_seed"] = pt["seed"]
        cfg = TrainConfig(
            optimizer="tngd",
            backend="asbuilt",
            topology=spec["topology"],
            t=spec["t"],
            kappa0=kappa0,
            design=design,
            max_steps=LIMITED_STEPS,
            gain_stage=spec.get("gain_stage", False),
            chop=spec.get("chop", False),
            **common,
        )
    folder = os.path.join(spec["out"], f"{kind}.runs", pt["id"])
    try:
        final = train(cfg, folder)
        return {
            "status": "ok",
            "final_train_loss": final["final_train_loss"],
            "final_test_accuracy": final["final_test_accuracy"],
            "wall_s": time.perf_counter() - t0,
            "message": "",
        }
    except ThermospiceError as exc:  # unstable circuit, non-finite loss, out-of-range component
        return {
            "status": type(exc).__name__,
            "final_train_loss": math.nan,
            "final_test_accuracy": math.nan,
            "wall_s": time.perf_counter() - t0,
            "message": " ".join(str(exc).split())[:300],
        }


def run_train_sweep(
    kind: str,
    out: str,
    *,
    settings=None,
    seeds: int = 3,
    seed: int = 0,
    steps: int = 200,
    t: float | None = None,
    batch: int = 64,
    topology: str = "factored",
    gain_stage: bool = False,
    chop: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_timeout: float = 10.0,
    progress: bool = True,
) -> dict:
    sweep = train_kind(kind)
    for name, v in (("seeds", seeds), ("steps", steps), ("batch", batch)):
        if not isinstance(v, int) or v < 1:
            raise SweepOptionError(f"--{name} must be an integer >= 1, got {v!r}")
    if topology not in topologies.choices("asbuilt"):  # the sweeps train on backend asbuilt
        raise SweepOptionError(f"--topology must be {' or '.join(topologies.choices('asbuilt'))}, got {topology!r}")
    settings = sweep.default_settings if settings is None else settings
    if t is None:
        t = sweep.default_t
    for value in settings:  # check every setting now, not in a worker an hour later
        from training.loop import make_design

        fields, kappa0 = sweep.design_for(value)
        try:
            make_design(fields)
        except DesignError as exc:
            raise DesignError(rename_fields(str(exc), sweep.option_names)) from None
        if not (math.isfinite(kappa0) and kappa0 >= 0):
            raise SweepOptionError(f"kappa0 must be >= 0, got {kappa0!r}")
    os.makedirs(out, exist_ok=True)
    spec = {
        "kind": kind,
        "settings": settings,
        "seeds": seeds,
        "seed": seed,
        "steps": steps,
        "t": t,
        "batch": batch,
        "topology": topology,
    }
    # Only when on: manifests written before these options still resume.
    spec.update({k: True for k, on in (("gain_stage", gain_stage), ("chop", chop)) if on})
    with hold_lock(out, kind, f"{kind} sweep", SweepError):
        return _run_locked(kind, out, spec, workers, scheduler, scheduler_timeout, progress)


def _run_locked(kind, out, spec, workers, scheduler, scheduler_timeout, progress) -> dict:
    manifest = os.path.join(out, f"{kind}.manifest.json")
    csv_path = os.path.join(out, f"{kind}.csv")
    check_manifest(
        manifest,
        spec,
        orphans=(csv_path,),
        what="sweep manifest",
        error=SweepMismatchError,
        refuse=lambda keys, old: SweepMismatchError(
            f"{out} holds a {kind} sweep with other settings ({manifest}); use another --out or the same options"
        ),
    )
    rows = [dict(zip(COLUMNS, r)) for r in read_rows(csv_path, COLUMNS, error=SweepMismatchError)]
    done = {r["id"] for r in rows}
    points = build_points(kind, spec["settings"], spec["seeds"], spec["seed"])
    log = CsvLog(csv_path, COLUMNS, [[r[c] for c in COLUMNS] for r in rows], sync=True)
    start = time.perf_counter()
    todo = sum(p["id"] not in done for p in points)
    finished = [0]

    def on_result(pt, res):
        row = {
            "id": pt["id"],
            "kind": kind,
            "run": pt["run"],
            "setting": json.dumps(pt["setting"]),
            "seed": pt["seed"],
            **{k: fmt(v) if isinstance(v, float) else v for k, v in res.items()},
        }
        log.append([row[c] for c in COLUMNS])
        rows.append({k: str(v) for k, v in row.items()})
        finished[0] += 1
        if progress:
            print(
                f"{kind}: {finished[0]}/{todo} runs ({pt['id']}: {res['status']}, "
                f"loss {res['final_train_loss']:.4g}, acc {res['final_test_accuracy']:.3g})",
                flush=True,
            )

    full = {**spec, "out": out}
    if scheduler:
        executor = DaskCluster(
            connect_scheduler(scheduler, scheduler_timeout),
            f"{kind}-{abs(hash(json.dumps(spec)))}",
            key=lambda p: p["id"],
        )
    else:
        executor = ProcessPool(workers or default_workers(), preload=["training.loop", "spu.backends.asbuilt"])
    with log:
        run_points(
            points, partial(evaluate, full), executor=executor, on_result=on_result, key=lambda p: p["id"], done=done
        )
    png = os.path.join(out, f"{kind}.png")
    from .train_sweep_plots import plot_train_sweep

    plot_train_sweep(kind, rows, png)
    return {
        "kind": kind,
        "csv": csv_path,
        "png": png,
        "manifest": manifest,
        "runs": len(points),
        "computed": finished[0],
        "wall_s": time.perf_counter() - start,
    }
