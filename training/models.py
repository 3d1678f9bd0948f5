"""Models: the paper's small CNN (one conv layer, two fully connected layers) and an MLP.

Sized for 8x8 digits (input (n, 1, 8, 8), 10 classes). Defaults:

* ``cnn``: Conv2d(1, 8, 3, padding=1) -> ReLU -> flatten -> Linear(512, 32) -> ReLU -> Linear(32, 10):
  N = 80 + 16 416 + 330 = 16 826 parameters (the N ~ 16.8k of DESIGN.md).
* ``mlp``: flatten -> Linear(64, 32) -> ReLU -> Linear(32, 10): N = 2 410 (depth adds hidden layers).

Both are purely functional per sample (no BatchNorm, no Dropout), so training.curvature can take
per-sample Jacobians of them with torch.func.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGE_SIDE = 8
N_CLASSES = 10


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32, channels: int = 8, n_classes: int = N_CLASSES, side: int = IMAGE_SIDE):
        super().__init__()
        if width < 1 or channels < 1:
            raise ValueError(f"width and channels must be >= 1, got width={width}, channels={channels}")
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.fc1 = nn.Linear(channels * side * side, width)
        self.fc2 = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class MLP(nn.Module):
    """flatten -> [Linear(., width) -> activation] * depth -> Linear(width, n_out)."""

    def __init__(
        self,
        width: int = 32,
        depth: int = 1,
        n_in: int = IMAGE_SIDE * IMAGE_SIDE,
        n_out: int = N_CLASSES,
        activation: str = "relu",
    ):
        super().__init__()
        if width < 1 or depth < 0:
            raise ValueError(f"need width >= 1 and depth >= 0, got width={width}, depth={depth}")
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        d = n_in
        for _ in range(depth):
            layers += [nn.Linear(d, width), acts[activation]()]
            d = width
        layers.append(nn.Linear(d, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODEL_NAMES = ("cnn", "mlp")


def build_model(
    name: str = "cnn",
    width: int = 32,
    seed: int = 0,
    *,
    channels: int = 8,
    depth: int = 1,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    """Build a model with deterministic initial weights (torch's default init under `seed`).

    The global torch RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "cnn":
            model = DigitsCNN(width=width, channels=channels)
        elif name == "mlp":
            model = MLP(width=width, depth=depth)
        else:
            raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")
    return model.to(dtype)


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
