"""Which optimizer of the demo's pair wins, at equal steps and at equal estimated runtime (each
method's curves averaged over its seeds).

Minibatch losses jump from step to step, so both axes compare a smoothed loss: the mean over the
last `window` steps (10 % of the run, as the tuning grid's final loss). At equal runtime the loss
of each run is read at T = the shorter of the two total estimated runtimes (the last step whose
cumulative estimated runtime is <= T), so the faster run is judged at its end and the slower one
at the same elapsed time.
"""

from __future__ import annotations

import csv


def _read(path: str) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def smoothed(losses: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each step (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(losses):
        total += v
        if i >= window:
            total -= losses[i - window]
        out.append(total / min(i + 1, window))
    return out


def verdict(metrics: dict[str, list[str]]) -> dict:
    """metrics: {name: [metrics.csv of each seed]} for two methods with runs of equal length.
    Each method's curve is the mean over its seeds of the smoothed loss and of the cumulative
    estimated runtime. Returns {"steps": {...}, "runtime": {...}, "seeds": n} with each method's
    loss and the winner on each axis."""
    runs = {}
    for name, paths in metrics.items():
        curves = [_read(p) for p in paths]
        n = min(len(rows) for rows in curves)
        window = max(1, n // 10)
        losses = [smoothed([float(r["train_loss"]) for r in rows[:n]], window) for rows in curves]
        times = [[float(r["cumulative_estimated_s"]) for r in rows[:n]] for rows in curves]
        runs[name] = {
            "loss": [sum(v) / len(v) for v in zip(*losses)],
            "time": [sum(v) / len(v) for v in zip(*times)],
            "window": window,
            "seeds": len(paths),
        }
    at_steps = {n: r["loss"][-1] for n, r in runs.items()}
    T = min(r["time"][-1] for r in runs.values())
    at_time = {}
    for n, r in runs.items():
        k = max([i for i, t in enumerate(r["time"]) if t <= T * (1 + 1e-12)], default=0)
        at_time[n] = {"loss": r["loss"][k], "step": k + 1}
    return {
        "steps": {
            "loss": at_steps,
            "winner": min(at_steps, key=at_steps.get),
            "step": min(len(r["loss"]) for r in runs.values()),
            "window": max(r["window"] for r in runs.values()),
        },
        "runtime": {
            "time_s": T,
            "loss": {n: v["loss"] for n, v in at_time.items()},
            "step": {n: v["step"] for n, v in at_time.items()},
            "winner": min(at_time, key=lambda n: at_time[n]["loss"]),
        },
        "seeds": min(r["seeds"] for r in runs.values()),
    }
