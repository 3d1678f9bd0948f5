"""Data: scikit-learn's bundled 8x8 handwritten digits, and a tiny synthetic regression set.

The digits (1797 images, 10 classes) ship with scikit-learn, so nothing is downloaded. Pixel values
0..16 are scaled to [0, 1]; images come as float32 tensors of shape (n, 1, 8, 8) and labels as int64.
The train/test split is FIXED (stratified, seed 0, 20 % test: 1437 train / 360 test), so every run,
every optimizer and every test sees the same split.

`batches` is a deterministic minibatch iterator: a seed fixes the per-epoch shuffles, so two calls
with the same arguments yield identical batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
N_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    """Tensors of one split: x float32 (n, ...), y int64 class labels (n,) or float32 targets (n, d)."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return self.x.shape[0]


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]  # (n, 1, 8, 8) in [0, 1]
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=y
    )
    for a in (x_tr, x_te, y_tr, y_te):
        a.setflags(write=False)
    return x_tr, x_te, y_tr, y_te


def load_digits_split(flatten: bool = False) -> tuple[Dataset, Dataset]:
    """(train, test) digits. x: float32 (n, 1, 8, 8) in [0, 1] (or (n, 64) with flatten=True).

    Returns fresh tensors each call (callers may modify them without affecting later calls).
    """
    x_tr, x_te, y_tr, y_te = _digits_arrays()

    def mk(x, y):
        xt = torch.tensor(x)
        if flatten:
            xt = xt.reshape(xt.shape[0], -1)
        return Dataset(xt, torch.tensor(y))

    return mk(x_tr, y_tr), mk(x_te, y_te)


def batches(
    data: Dataset,
    batch_size: int,
    *,
    epochs: int = 1,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) minibatches for `epochs` passes over `data`.

    Deterministic: epoch e is shuffled with numpy's default_rng([seed, e]), so the same arguments
    give the same batches, and a longer run repeats the first epochs of a shorter one exactly.
    drop_last=True (default) keeps every batch the same size (the GGN system size b*dz is fixed).
    """
    n = len(data)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if drop_last and batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} samples with drop_last=True")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    for e in range(epochs):
        order = np.random.default_rng([seed, e]).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = torch.from_numpy(order[start : start + batch_size])
            yield data.x[idx], data.y[idx]


def n_batches(n: int, batch_size: int, drop_last: bool = True) -> int:
    """Batches per epoch that `batches` yields for n samples."""
    return n // batch_size if drop_last else -(-n // batch_size)
