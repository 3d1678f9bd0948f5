"""Hardware-designer sweeps: what goes wrong in analog hardware, measured in ngspice.

    res = run_sweep("noise", "out/", quick=True)       # -> out/noise.csv, out/noise.png, ...
    res.csv_path, res.computed, res.skipped

Every sweep solves one fixed test problem (``make_problem``: a small TNGD-like GGN system
A = J^T H J + lam I with softmax-cross-entropy Hessian blocks, or a dense SPD system, built from a
seed and scaled so that max |A^-1 b| = 1) from x0 = 0 for an analog time t, on a grid of circuit
parameters, and compares the state with the exact solution x* = A^-1 b of the *ideal* problem:

    rel_error = ||x - x*|| / ||x*||

Kinds (one module each in analysis/sweep_kinds/, with its CSV columns; the same table is in
``thermospice sweep KIND --help``):

* ``noise``      kappa0 x temperature x seeds. Seed index r uses the same noise seed at every
                 (kappa0, T): common random numbers, so differences between grid values are not
                 masked by sampling noise. Backend ngspice (or ``ou`` when every temperature is 0).
* ``tolerance``  Monte Carlo over the relative sigma of R (tol_r) and C (tol_c); draw r uses the same
                 component seed at every (tol_r, tol_c), so the error grows smoothly with sigma.
* ``bits``       resolution of the resistors (r), DAC (dac), ADC (adc), or all three (all).
* ``opamp``      op-amp DC gain x gain-bandwidth product (single-pole model); error and settling.
                 An ideal gain (inf) has no pole, so (ideal, finite GBW) pairs are left out.
* ``time``       analog time t against error, beside the exact OU mean and exp(-lambda_min t).
                 Backend ngspice or ``ou``.

Resumable and deterministic: each point has a stable id (its index in the grid) and fixed seeds,
and its row is appended and flushed to ``KIND.csv`` as soon as it finishes. A rerun on the same
folder skips the points already there, and at the end the CSV is rewritten sorted by point id, so
it is byte-identical to an uninterrupted run. Floats are written with 12 significant digits; no
wall times go into it (they go to ``KIND.timings.csv``). ``KIND.manifest.json`` records the
sweep's parameters; a rerun with different parameters on the same folder is refused. Several
kinds may share one folder (every file is prefixed by the kind).

Only deterministic outcomes become rows: a circuit that diverges or cannot be built (a
DesignError, e.g. a resistor out of range) is a row with status ``diverged`` / ``failed: ...``;
an ngspice timeout depends on the machine's load, so it is logged in ``KIND.errors.log``, gets no
row, and is retried by the next run.

Execution: points run in parallel processes (``workers``, default: the CPU count; 1 runs them in
this process), or on a Dask distributed cluster with ``scheduler="tcp://host:8786"``. Every Dask
worker needs this package and ngspice installed.

Modules: sweep_kinds (one object per kind: its options, grid, point results and plot), sweep_spec
(options, columns, grid), ranges (the range syntax), sweep_point (the test problem and its theory),
sweep_eval (one point's run), executors (serial / process pool / Dask, reusable by other long runs), sweep_summary,
sweep_plots; this one runs and resumes a sweep in its output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from spu.limits import DEFAULT_STEPS, Limits
from spu.run_folder import CsvLog, atomic_write, check_manifest, csv_line, hold_lock, read_rows, remove_stale_temps

from .executors import DaskCluster, ProcessPool, connect_scheduler, default_workers, run_points
from .io import fmt, prepare_folder
from .sweep_errors import SweepError, SweepInterrupted, SweepMismatchError, SweepOptionError
from .sweep_eval import evaluate_point
from .sweep_kinds import sweep_kind
from .sweep_spec import build_spec, grid_points, spec_json
from .sweep_summary import summary_csv


# -- resuming -------------------------------------------------------------------------------------
def _load_partial(path: str, cols: list[str], points: list[dict], kind: str) -> dict[int, list[str]]:
    """Finished rows of an earlier (maybe interrupted) run: {point id: values}. A last line cut
    short by a crash is dropped (its point is recomputed); anything else that does not fit the
    sweep is an error, never silently overwritten."""
    rows = read_rows(path, cols, error=SweepMismatchError, remedy="remove it (and its manifest) to start over")
    done: dict[int, list[str]] = {}
    params = sweep_kind(kind).params
    for ln, vals in enumerate(rows, start=2):
        try:
            pid = int(vals[0])
            pt = points[pid]
        except (ValueError, IndexError):
            raise SweepMismatchError(f"{path} line {ln}: point id {vals[0]!r} is not a point of this sweep") from None
        for c in params:
            if vals[cols.index(c)] != fmt(pt[c]):
                raise SweepMismatchError(
                    f"{path} line {ln}: point {pid} has {c} = {vals[cols.index(c)]}, but this "
                    f"sweep's point {pid} has {c} = {fmt(pt[c])}"
                )
        done.setdefault(pid, vals)
    return done


# -- output folder --------------------------------------------------------------------------------
def _check_manifest(path: str, spec: dict, csv_path: str) -> None:
    """The sweep's manifest (spec) against the one in the folder; a CSV without one is refused."""

    def refuse(keys, old):
        return SweepMismatchError(
            f"{os.path.dirname(path)} holds a different {spec['kind']} sweep (its manifest differs in "
            f"{', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}); use another --out folder, rerun with "
            f"the same options, or delete {spec['kind']}.* there to start over"
        )

    check_manifest(
        path,
        json.loads(spec_json(spec)),
        refuse=refuse,
        orphans=(csv_path,),
        what="sweep manifest",
        error=SweepMismatchError,
    )


# -- running --------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    kind: str
    out: str
    csv_path: str
    png_path: str | None
    summary_path: str | None
    manifest_path: str
    total: int
    skipped: int  # points already finished by an earlier run
    computed: int  # points evaluated (and written) by this run
    failed: int  # rows with status != ok (deterministic failures, written)
    retry: int  # points without a row (ngspice timeout): a rerun retries them
    wall_s: float
    spec: dict = field(repr=False, default_factory=dict)


def run_sweep(
    kind: str,
    out: str = "sweeps",
    *,
    quick: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_timeout: float = 10.0,
    progress: bool = True,
    stop_after: int | None = None,
    plot: bool = True,
    limits: Limits | None = None,
    **options,
) -> SweepResult:
    """Run (or resume) a sweep into folder `out`; see the module docstring.

    stop_after: stop (raising SweepInterrupted, which carries the partial SweepResult) once this
    many points have been written by this run, as a crash would; the next run resumes."""
    sweep_kind(kind)  # an unknown kind is an error before anything else
    t_start = time.perf_counter()
    if workers is None:
        workers = default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise SweepOptionError(f"--workers must be an integer >= 1, got {workers!r}")
    if not (isinstance(scheduler_timeout, (int, float)) and scheduler_timeout > 0):
        raise SweepOptionError(f"--scheduler-timeout must be > 0 seconds, got {scheduler_timeout!r}")
    timeout = options.get("timeout")
    spec = build_spec(kind, quick=quick, limits=limits, **options)
    # The ngspice timeout is an execution setting, not part of the sweep: it stays out of the manifest.
    run_spec = dict(spec, timeout=float(timeout) if timeout is not None else 600.0)
    if limits is not None and limits.steps != DEFAULT_STEPS:  # so is a raised step limit
        run_spec["max_steps"] = limits.steps
    run_json = spec_json(run_spec)
    out = prepare_folder(out, "sweep results")
    # Connect before touching the folder's sweep files, so an unreachable scheduler leaves nothing behind.
    client = connect_scheduler(scheduler, scheduler_timeout) if scheduler is not None else None
    paths = {
        s: os.path.join(out, f"{kind}{s}")
        for s in (".csv", ".png", "_summary.csv", ".manifest.json", ".timings.csv", ".errors.log")
    }
    try:
        with hold_lock(out, kind, f"{kind} sweep", SweepError):
            remove_stale_temps(out, [os.path.basename(p) for p in paths.values()])
            return _run_locked(kind, spec, run_json, out, paths, workers, client, progress, stop_after, plot, t_start)
    finally:
        if client is not None:
            client.close()


def _executor(kind: str, run_json: str, workers: int, client):
    if client is not None:
        tag = hashlib.sha1(run_json.encode()).hexdigest()[:12]
        return DaskCluster(client, f"thermospice-sweep-{kind}-{tag}", key=lambda pt: pt["point"])
    return ProcessPool(workers, preload=["analysis.sweep_eval"])


def _run_locked(kind, spec, run_json, out, paths, workers, client, progress, stop_after, plot, t_start) -> SweepResult:
    from tqdm import tqdm

    sweep = sweep_kind(kind)
    cols = spec["columns"]
    points = grid_points(spec)
    csv_path = paths[".csv"]
    _check_manifest(paths[".manifest.json"], spec, csv_path)
    done: dict[int, list[str]] = {}
    if os.path.exists(csv_path):
        done = _load_partial(csv_path, cols, points, kind)
    # Rewrite what is valid (drops a half-written last line), then append to it, each row fsync'd.
    rows_csv = CsvLog(csv_path, cols, [done[k] for k in sorted(done)], sync=True)
    skipped = len(done)
    count = {"computed": 0, "failed": 0, "retry": 0}
    if len(done) < len(points):
        new_timings = not os.path.exists(paths[".timings.csv"])
        with (
            rows_csv,
            open(paths[".timings.csv"], "a") as ftim,
            tqdm(
                total=len(points),
                initial=skipped,
                desc=f"sweep {kind}",
                unit="pt",
                file=sys.stderr,
                disable=not progress,
                dynamic_ncols=True,
            ) as bar,
        ):
            if new_timings:
                ftim.write("point,wall_s,host,pid\n")

            def write(pt, info):  # in this process, as each point finishes
                if info["error"]:
                    with open(paths[".errors.log"], "a") as fe:
                        fe.write(
                            f"point {pt['point']} {json.dumps({k: pt[k] for k in sweep.params})}: {info['error']}\n"
                        )
                if info["retry"]:
                    count["retry"] += 1
                    bar.update(1)
                    return
                vals = [fmt(info["row"][c]) for c in cols]
                rows_csv.append(vals)
                ftim.write(f"{pt['point']},{info['wall_s']:.4f},{info['host']},{info['pid']}\n")
                ftim.flush()
                done[pt["point"]] = vals
                count["computed"] += 1
                count["failed"] += info["row"]["status"] != "ok"
                bar.update(1)
                if stop_after is not None and count["computed"] >= stop_after and len(done) < len(points):
                    result = _result(kind, out, paths, spec, points, skipped, **count, t_start=t_start, finished=False)
                    raise SweepInterrupted(
                        f"sweep {kind} stopped after {count['computed']} points (stop_after); rerun to resume", result
                    )

            run_points(
                points,
                partial(evaluate_point, run_json),
                executor=_executor(kind, run_json, workers, client),
                key=lambda pt: pt["point"],
                done=set(done),
                on_result=write,
            )
    # Finished (maybe with retries pending): the sorted CSV, summary and plot.
    atomic_write(csv_path, "".join(csv_line(v) for v in [cols] + [done[k] for k in sorted(done)]))
    rows = [dict(zip(cols, done[k])) for k in sorted(done)]
    if sweep.summary:
        atomic_write(paths["_summary.csv"], summary_csv(sweep.summary, rows))
    if plot and rows:
        sweep.plot(rows, spec, paths[".png"])
    return _result(kind, out, paths, spec, points, skipped, **count, t_start=t_start, finished=True)


def _result(kind, out, paths, spec, points, skipped, computed, failed, retry, t_start, finished) -> SweepResult:
    return SweepResult(
        kind=kind,
        out=out,
        csv_path=paths[".csv"],
        png_path=paths[".png"] if finished and os.path.exists(paths[".png"]) else None,
        summary_path=paths["_summary.csv"] if finished and sweep_kind(kind).summary else None,
        manifest_path=paths[".manifest.json"],
        total=len(points),
        skipped=skipped,
        computed=computed,
        failed=failed,
        retry=retry,
        wall_s=time.perf_counter() - t_start,
        spec=spec,
    )
