"""Fixtures shared by the test files (helpers without fixtures live in tests/cases.py,
tests/torch_cases.py and tests/physics.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """One BLAS and one torch thread for a module: on a shared 2-core machine, numpy's OpenBLAS
    threads and torch's OpenMP threads spinning against each other made a 320 x 320 eigh take
    0.3-1 s instead of 20 ms."""
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread (BLAS left alone): on a loaded 2-core machine two threads spin-wait for
    busy cores and made small steps ~100x slower (docs/RESULTS.md, conditions)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits_flat():
    """The fixed digits train/test split, images flattened to 64-vectors (for MLPs)."""
    from training.data import load_digits_split

    return load_digits_split(flatten=True)
