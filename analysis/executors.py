"""Run many independent points of a long computation (sweeps, tuning, training sweeps) in this
process, in a local process pool or on a Dask cluster, and hand each result back as it finishes.

    from functools import partial
    done = {...keys already finished, e.g. read back from the results file...}
    run_points(points, partial(evaluate, settings), executor=ProcessPool(4),
               key=lambda p: p["id"], done=done, on_result=write_row)

* ``evaluate(point) -> result`` must be picklable (a module-level function, or a functools.partial
  of one with picklable arguments) and, for Dask, importable on the workers.
* ``on_result(point, result)`` runs in the calling process, once per point, in completion order
  (not submission order): it is where results are written, so a crash loses only unfinished
  points. Anything it raises stops the run: pending points are cancelled and the pool shut down.
* Resume by key: points whose ``key(point)`` is in ``done`` are not evaluated again.

Executors: ``Serial()`` (this process), ``ProcessPool(workers, preload=...)`` (forkserver
processes; one worker or one point runs serially), ``DaskCluster(client, name)`` (a
dask.distributed Client, e.g. from ``connect_scheduler``). Each has
``stream(evaluate, points) -> iterator of (point, result)``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from spu.core.errors import ThermospiceError
from spu.lifetime import init_pool_worker, run_task


class SchedulerError(ThermospiceError, ConnectionError):
    """The Dask scheduler cannot be reached (or dask.distributed is missing)."""


class Serial:
    """Every point in this process, in order."""

    def stream(self, evaluate: Callable, points: list) -> Iterator[tuple]:
        for pt in points:
            yield pt, evaluate(pt)


class ProcessPool:
    """Points in `workers` local processes (at most one per point).

    preload: modules each worker imports once at start (those of `evaluate`), so that starting a
    worker costs milliseconds, not an import of numpy/scipy per process."""

    def __init__(self, workers: int, preload: Iterable[str] = ()):
        self.workers = int(workers)
        self.preload = list(preload)

    def stream(self, evaluate: Callable, points: list) -> Iterator[tuple]:
        if self.workers == 1 or len(points) == 1:  # not worth a pool
            yield from Serial().stream(evaluate, points)
            return
        # forkserver, not fork: the parent may hold threads (tqdm, a Dask client) that a fork copies
        # mid-lock.
        ctx = multiprocessing.get_context("forkserver")
        if self.preload:
            ctx.set_forkserver_preload(self.preload)
        # Workers end with this process and close their ngspice sessions on the way out: a killed
        # sweep leaves no process or temp folder (spu/lifetime.py).
        ex = ProcessPoolExecutor(
            max_workers=min(self.workers, len(points)),
            mp_context=ctx,
            initializer=init_pool_worker,
            initargs=(os.getpid(),),
        )
        try:
            futs = {ex.submit(run_task, evaluate, pt): pt for pt in points}
            for f in as_completed(futs):
                yield futs[f], f.result()
        finally:
            ex.shutdown(wait=True, cancel_futures=True)


class DaskCluster:
    """Points on a dask.distributed cluster. Task keys are f"{name}-{key(point)}": give `name` what
    makes the run unique (e.g. a hash of its settings), so that two runs never share a key."""

    def __init__(self, client, name: str, key: Callable[[object], Hashable]):
        self.client, self.name, self.key = client, name, key

    def stream(self, evaluate: Callable, points: list) -> Iterator[tuple]:
        from distributed import as_completed as dask_completed

        futs = {}
        for pt in points:
            f = self.client.submit(evaluate, pt, pure=False, key=f"{self.name}-{self.key(pt)}")
            futs[f.key] = (f, pt)
        pending = dict(futs)
        try:
            for f in dask_completed([f for f, _ in futs.values()], loop=self.client.loop):
                pending.pop(f.key, None)
                yield futs[f.key][1], f.result()
        finally:
            if pending:
                self.client.cancel([f for f, _ in pending.values()])


def connect_scheduler(address: str, timeout: float = 10.0):
    """A dask.distributed Client for `address`, or a SchedulerError within about `timeout` s."""
    try:
        from distributed import Client
    except ImportError as exc:  # pinned in pyproject; only a broken install lands here
        raise SchedulerError(f"--scheduler needs dask.distributed: {exc}") from None
    if not isinstance(address, str) or not address.strip():
        raise SchedulerError("--scheduler needs an address such as tcp://host:8786")
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError/TimeoutError when unreachable, ValueError for a bad address
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise SchedulerError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s: {msg}") from None


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_points(
    points: Iterable,
    evaluate: Callable,
    *,
    executor=None,
    on_result: Callable | None = None,
    key: Callable[[object], Hashable] | None = None,
    done: Iterable[Hashable] = (),
) -> int:
    """Evaluate every point whose key(point) is not in `done` on `executor` (default Serial()),
    calling on_result(point, result) here as each finishes; returns how many were evaluated.
    See the module docstring."""
    done = set(done)
    todo = [p for p in points if key is None or key(p) not in done]
    if not todo:
        return 0
    stream = (executor or Serial()).stream(evaluate, todo)
    n = 0
    try:
        for pt, result in stream:
            n += 1
            if on_result is not None:
                on_result(pt, result)
    finally:
        stream.close()  # on an exception from on_result: cancel what is pending, stop the workers
    return n
