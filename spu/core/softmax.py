"""The softmax cross-entropy Hessian, and random ones for test problems and sweeps.

For logits z with p = softmax(z), the Hessian of CE(p, y) with respect to z is diag(p) - p p^T
(whatever the label y); the TNGD curvature H_L of a batch is block-diagonal with one such block per
sample, divided by the batch size for the mean loss. It is singular (p sums to 1), so A = J^T H J +
lam I relies on lam > 0.
"""

from __future__ import annotations

import numpy as np


def softmax(z) -> np.ndarray:
    """exp(z - max z) / sum, stable for large logits."""
    z = np.asarray(z, dtype=float)
    p = np.exp(z - z.max())
    p /= p.sum()
    return p


def softmax_ce_hessian(probs, *, mean: bool = False) -> np.ndarray:
    """Block-diagonal H_L from class probabilities (one row per sample): diag(p) - p p^T per block,
    each divided by the number of samples when mean=True (the mean cross-entropy of a batch)."""
    blocks = [np.diag(p) - np.outer(p, p) for p in map(np.asarray, probs)]
    size = sum(len(blk) for blk in blocks)
    H = np.zeros((size, size))
    k = 0
    for blk in blocks:
        d = len(blk)
        H[k : k + d, k : k + d] = blk / len(blocks) if mean else blk
        k += d
    return H


def random_softmax_hessian(rng: np.random.Generator, batch: int, dz: int, *, mean: bool = False) -> np.ndarray:
    """softmax_ce_hessian of standard-normal logits, drawn from rng one sample (dz logits) at a time."""
    return softmax_ce_hessian([softmax(rng.normal(size=dz)) for _ in range(batch)], mean=mean)
