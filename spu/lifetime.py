"""Pool workers that do not outlive the run that started them.

A killed sweep (kill -9 or SIGTERM of its process) must leave no process and no temp folder. Its
local pool workers are forked by multiprocessing's forkserver and, left alone, never notice: each
holds the write end of its own task queue, so it waits for a next task forever, with its ngspice
session (a child process and a folder) open, and the forkserver and resource tracker wait for it.

So every worker (``init_pool_worker``, the pool's initializer):

* watches the run's process from a thread (a pidfd, else a poll) and, when it is gone, sends
  SIGTERM to its own main thread;
* turns SIGTERM into ``WorkerExit`` (a SystemExit) raised where the main thread is, so finally
  blocks run: an ngspice batch run kills its process group and removes its folder;
* removes the run's multiprocessing temp folder once the run is gone;
* runs the exit handlers (``atexit``, and so every ``weakref.finalize``: an ngspice session's kills
  its child and removes its folder) when it ends, which multiprocessing skips (workers end with
  os._exit).

``run_task`` wraps each task: a WorkerExit that reaches it ends the worker there, since the
pool's own loop would catch it, report it to nobody and wait for the next task."""

from __future__ import annotations

import atexit
import os
import select
import shutil
import signal
import threading
import time
from multiprocessing import forkserver, util


class WorkerExit(SystemExit):
    """The worker was told to stop (SIGTERM, or the run that started it is gone)."""


def _stop(signum, frame):
    raise WorkerExit(128 + signum)


def _wait_for_exit(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfds (not Linux >= 5.3): poll
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(0.5)
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)


def _remove_run_temp_folder() -> None:
    """The run's multiprocessing folder (pymp-*, holding the forkserver's socket): the run made it
    and would have removed it at its exit."""
    address = getattr(forkserver._forkserver, "_forkserver_address", None)
    if isinstance(address, str):
        folder = os.path.dirname(address)
        if os.path.basename(folder).startswith("pymp-"):
            shutil.rmtree(folder, ignore_errors=True)


def _watch(pid: int) -> None:
    _wait_for_exit(pid)
    _remove_run_temp_folder()
    # At the main thread itself: a blocking call there (a pipe read, a wait) returns EINTR and the
    # handler runs; a signal to the process could land on this thread instead.
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)


def init_pool_worker(run_pid: int) -> None:
    signal.signal(signal.SIGTERM, _stop)
    util.Finalize(None, atexit._run_exitfuncs, exitpriority=0)
    threading.Thread(target=_watch, args=(run_pid,), name="watch-run", daemon=True).start()


def run_task(evaluate, point):
    """evaluate(point), in a pool worker; a WorkerExit ends the worker after its cleanup ran."""
    try:
        return evaluate(point)
    except WorkerExit as exc:
        atexit._run_exitfuncs()
        os._exit(exc.code)
