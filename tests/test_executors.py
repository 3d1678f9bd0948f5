"""analysis.executors.run_points: every point not done is evaluated once, results come back in this
process, resume by key, and an error raised by on_result stops the run."""

from __future__ import annotations

import operator

import pytest

from analysis.executors import ProcessPool, Serial, run_points


@pytest.mark.parametrize("executor", [Serial(), ProcessPool(2, preload=["operator"])], ids=["serial", "pool"])
def test_evaluates_each_point_not_done_once(executor):
    got = {}
    n = run_points(
        range(6),
        operator.neg,
        executor=executor,
        key=lambda p: p,
        done={1, 4},
        on_result=lambda p, r: got.setdefault(p, []).append(r),
    )
    assert n == 4
    assert got == {p: [-p] for p in (0, 2, 3, 5)}


def test_everything_done_evaluates_nothing():
    def fail(_):
        raise AssertionError("evaluated a finished point")

    assert run_points([1, 2], fail, key=lambda p: p, done=[1, 2]) == 0


def test_error_in_on_result_stops_the_run():
    seen = []

    def stop(p, r):
        seen.append(p)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_points(range(5), operator.neg, executor=Serial(), on_result=stop)
    assert seen == [0]
