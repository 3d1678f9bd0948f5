"""``oscillator``: second-order RLC resonator cells (underdamped Langevin dynamics). The circuit
itself lives in circuits/oscillator.py; this is what the rest of the code asks about it."""

from __future__ import annotations

from ..design import Design
from ..oscillator import build_oscillator, settle_time
from .base import Topology


class Oscillator(Topology):
    name = "oscillator"
    rank = 4
    second_order = True
    takes_noise_mode = False  # its noise sources are always held (TRRANDOM)

    def build(self, problem, design: Design, *, noise: str = "table", builder=None, **options):
        # The coupling decides the problem form and the scale (circuits/oscillator.py); options:
        # oscillator=, v0=, inductors=, save_velocity=. Its one Builder emits text: no `builder`.
        return build_oscillator(problem, design, **options)

    def settle_time(self, problem, tol: float, options: dict) -> float:
        design = (options.get("design") or Design()).check()
        return settle_time(problem, tol, design, options.get("oscillator"))


TOPOLOGY = Oscillator()
