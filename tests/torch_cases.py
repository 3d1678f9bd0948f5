"""Small torch models and batches shared by the curvature, Fisher, data and language-model tests
(float64 where a dense autograd reference is compared)."""

from __future__ import annotations

import torch
from torch import nn

from training.data import Dataset
from training.models import build_model

D64 = torch.float64


def small_mlp(d_in=6, width=7, d_out=3, seed=0, act=nn.Tanh):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, width), act(), nn.Linear(width, d_out)).to(D64)


def small_cnn(seed=0):
    return build_model("cnn", width=5, seed=seed, channels=2, dtype=D64)  # N = 20+645+60 = 725


def batch(loss, b=4, d_in=6, d_out=3, seed=1, image=False):
    """(x, y): b random 8x8 images or d_in-vectors, then class labels (cross_entropy) or d_out
    regression targets, drawn in that order from one generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, 8, 8, generator=g, dtype=D64) if image else torch.randn(b, d_in, generator=g, dtype=D64)
    if loss == "cross_entropy":
        y = torch.randint(0, d_out, (b,), generator=g)
    else:
        y = torch.randn(b, d_out, generator=g, dtype=D64)
    return x, y


def synthetic_regression(
    n: int = 32, d_in: int = 5, d_out: int = 3, *, noise: float = 0.1, seed: int = 0, dtype: torch.dtype = torch.float32
) -> Dataset:
    """Tiny regression set: y = tanh(x W1) W2 + noise, x ~ N(0, 1). Targets are (n, d_out) floats;
    deterministic in `seed`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    w1 = torch.randn(d_in, 8, generator=g, dtype=torch.float64) / d_in**0.5
    w2 = torch.randn(8, d_out, generator=g, dtype=torch.float64) / 8**0.5
    y = torch.tanh(x @ w1) @ w2 + noise * torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return Dataset(x.to(dtype), y.to(dtype))


def tiny_encoder(
    vocab_size: int, hidden: int = 16, layers: int = 2, heads: int = 2, max_len: int = 64, seed: int = 0
) -> nn.Module:
    """A small randomly initialised BERT (same code path as the packaged MiniLM-L6)."""
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_len,
        attn_implementation="eager",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = BertModel(cfg, add_pooling_layer=False)
    return enc.eval()
