"""sweep train-noise: TNGD on the realised circuit against kappa0 and the resistors' temperature."""

from __future__ import annotations

import numpy as np

from .. import ranges
from ..ranges import parse_range
from .train_base import BASE_BITS, TrainSweepKind

TEMPERATURES = [0.0, 300.0]
KAPPAS = [0.001, 0.01, 0.1]  # the paper's (MNIST) noise study, at t = tau


class TrainNoise(TrainSweepKind):
    """A setting is a pair [temperature K, kappa0]: every temperature with every kappa0."""

    name = "train-noise"
    about = "TNGD on the realised circuit against kappa0 and the temperature (Johnson noise)"
    default_settings = [[T, k] for T in TEMPERATURES for k in KAPPAS]
    default_t = 1.0
    xlabel = "setting (temperature K, kappa0)"

    def add_arguments(self, group) -> None:
        group.add_argument("--temperature", help="comma-separated temperatures in K (default 0,300)")
        group.add_argument("--kappa0", help="comma-separated kappa0 values (default 0.001,0.01,0.1)")

    def settings(self, args):
        if not (args.temperature or args.kappa0):
            return None
        temps = parse_range("temperature", args.temperature or TEMPERATURES, sort=False)
        kappas = parse_range("kappa0", args.kappa0 or KAPPAS, sort=False)
        return [[T, k] for T in temps for k in kappas]

    def count(self, args) -> int:
        return ranges.count(args.temperature or TEMPERATURES) * ranges.count(args.kappa0 or KAPPAS)

    def design_for(self, setting):
        temperature, kappa0 = (float(v) for v in setting)
        return {"bits_r": BASE_BITS, "temperature": temperature or None}, kappa0

    def axis(self, settings):
        return np.arange(len(settings)), [", ".join(f"{v:g}" for v in s) for s in settings]
