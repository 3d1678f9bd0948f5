import numpy as np
import pytest
import torch
from torch_cases import synthetic_regression

from training.data import (
    Dataset,
    batches,
    load_digits_split,
    n_batches,
)
from training.models import MLP, DigitsCNN, build_model, count_params


def test_digits_split_fixed_and_stratified():
    tr, te = load_digits_split()
    assert (len(tr), len(te)) == (1437, 360)
    assert tr.x.shape == (1437, 1, 8, 8) and tr.x.dtype == torch.float32
    assert tr.y.dtype == torch.int64
    assert float(tr.x.min()) == 0.0 and float(tr.x.max()) == 1.0
    counts = np.bincount(te.y.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each class
    tr2, te2 = load_digits_split()
    assert torch.equal(tr.x, tr2.x) and torch.equal(te.y, te2.y)
    tr2.x.zero_()  # callers get their own copies
    assert float(load_digits_split()[0].x.max()) == 1.0
    flat, _ = load_digits_split(flatten=True)
    assert flat.x.shape == (1437, 64)


def test_batches_deterministic_and_cover_epochs():
    tr, _ = load_digits_split()
    a = list(batches(tr, 64, epochs=2, seed=3))
    b = list(batches(tr, 64, epochs=2, seed=3))
    c = list(batches(tr, 64, epochs=1, seed=4))
    assert len(a) == 2 * n_batches(len(tr), 64) == 44
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][1], c[0][1])
    assert all(x.shape == (64, 1, 8, 8) for x, _ in a)
    assert not torch.equal(a[0][1], a[22][1])  # reshuffled per epoch
    # a longer run starts with the shorter one
    one = list(batches(tr, 64, epochs=1, seed=3))
    assert all(torch.equal(p[1], q[1]) for p, q in zip(one, a))
    # within an epoch no sample repeats
    small = Dataset(torch.arange(10.0)[:, None], torch.arange(10))
    seen = torch.cat([y for _, y in batches(small, 3, seed=0)])
    assert len(seen) == 9 and len(set(seen.tolist())) == 9
    allb = list(batches(small, 3, seed=0, drop_last=False, shuffle=False))
    assert [len(y) for _, y in allb] == [3, 3, 3, 1] and n_batches(10, 3, drop_last=False) == 4
    assert torch.equal(torch.cat([y for _, y in allb]), torch.arange(10))
    with pytest.raises(ValueError):
        list(batches(small, 11))


def test_synthetic_regression():
    d = synthetic_regression(16, 4, 2, seed=1)
    assert d.x.shape == (16, 4) and d.y.shape == (16, 2) and d.x.dtype == torch.float32
    e = synthetic_regression(16, 4, 2, seed=1, dtype=torch.float64)
    torch.testing.assert_close(e.x.float(), d.x)
    assert not torch.equal(synthetic_regression(16, 4, 2, seed=2).y, d.y)


def test_models_sizes_and_forward():
    cnn = build_model("cnn")
    assert isinstance(cnn, DigitsCNN)
    assert count_params(cnn) == 16826  # DESIGN.md's N ~ 16.8k
    mlp = build_model("mlp")
    assert isinstance(mlp, MLP) and count_params(mlp) == 64 * 32 + 32 + 32 * 10 + 10
    assert count_params(build_model("mlp", width=16, depth=2)) == 64 * 16 + 16 + 16 * 16 + 16 + 170
    assert count_params(build_model("cnn", width=16, channels=4)) == 40 + 256 * 16 + 16 + 170
    x = torch.rand(5, 1, 8, 8)
    assert cnn(x).shape == (5, 10) and mlp(x).shape == (5, 10)
    assert build_model("cnn", dtype=torch.float64)(x.double()).dtype == torch.float64


def test_build_model_seeded_and_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("cnn", seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_model("cnn", seed=7)
    c = build_model("cnn", seed=8)
    pa, pb, pc = (torch.cat([p.reshape(-1) for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")
    m = build_model("mlp")
    m.net[1].weight.requires_grad_(False)
    assert count_params(m) == count_params(m, trainable_only=False) - 64 * 32
