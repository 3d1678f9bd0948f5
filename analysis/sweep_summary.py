"""KIND_summary.csv: statistics of a sweep's rows over their repetitions (seeds / draws)."""

from __future__ import annotations

import math

import numpy as np

from spu.run_folder import csv_line

from .io import fmt


def summary_columns(summary) -> list[str]:
    """Columns of a kind's summary (a sweep_kinds.Summary: grouping keys and averaged extras)."""
    return (
        list(summary.keys)
        + ["n_ok", "n_failed", "rel_error_mean", "rel_error_std", "rel_error_rms"]
        + [f"{e}_mean" for e in summary.extra]
    )


def summary_rows(summary, rows: list[dict[str, str]]) -> list[dict]:
    """Statistics over the repetitions (seeds / draws) of each grid value; rows in id order."""
    keys, extra = summary.keys, summary.extra
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        e = np.array([float(r["rel_error"]) for r in ok])
        row = dict(zip(keys, key))
        row.update(
            n_ok=len(ok),
            n_failed=len(rs) - len(ok),
            rel_error_mean=float(e.mean()) if e.size else math.nan,
            rel_error_std=float(e.std(ddof=1)) if e.size > 1 else (0.0 if e.size else math.nan),
            rel_error_rms=float(np.sqrt(np.mean(e**2))) if e.size else math.nan,
        )
        for c in extra:
            v = np.array([float(r[c]) for r in ok])
            row[f"{c}_mean"] = float(v.mean()) if v.size else math.nan
        out.append(row)
    return out


def summary_csv(summary, rows: list[dict[str, str]]) -> str:
    cols = summary_columns(summary)
    return "".join(csv_line(v) for v in [cols] + [[fmt(r[c]) for c in cols] for r in summary_rows(summary, rows)])
