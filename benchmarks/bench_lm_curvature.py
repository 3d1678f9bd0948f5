"""Time and peak memory of one TNGD curvature step (gradient + U^T, m = 2 b L columns) of the packaged
MiniLM-L6 with LoRA (N = 19 202) on the generated QA rows, against the plain gradient (an Adam step's
digital part), for a few (batch b, sequence length L).

Each case runs in a fresh process, so ru_maxrss is that case's own peak; "step MB" is the peak after
the curvature steps minus the peak after loading the model and one plain gradient (the curvature
step's own working memory, U^T included). Times are the minimum over --reps steps (a shared machine
deschedules single steps).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_lm_curvature.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CASES = ((2, 24), (4, 24), (8, 32))  # quick, full, and a larger one for the memory trend
OUT = ROOT / "benchmarks" / "results" / "bench_lm_curvature.csv"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(batch: int, seq_len: int, reps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from training.curvature import compute_curvature, loss_and_grad
    from training.lm_data import generate
    from training.lm_model import build_span_qa, load_encoder, load_tokenizer, rows, trainable_count
    from training.malloc import tune_glibc_malloc

    tune_glibc_malloc()
    tok = load_tokenizer()
    model = build_span_qa(load_encoder(), tok.sep_token_id)
    data = generate(tok, batch, seq_len, seed=0)
    x, y = rows(data.ids, data.starts, data.ends)
    loss_and_grad(model, x, y)
    rss0 = _rss_mb()
    tg, tc = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        loss_and_grad(model, x, y)
        t1 = time.perf_counter()
        curv = compute_curvature(model, x, y)
        tc.append(time.perf_counter() - t1)
        tg.append(t1 - t0)
    return {
        "batch": batch,
        "seq_len": seq_len,
        "m": curv.Ut.shape[0],
        "N": trainable_count(model),
        "method": curv.method,
        "grad_s": min(tg),
        "curvature_s": min(tc),
        "ratio": min(tc) / min(tg),
        "ut_mb": curv.Ut.numel() * curv.Ut.element_size() / 2**20,
        "base_rss_mb": rss0,
        "peak_rss_mb": _rss_mb(),
        "step_mb": _rss_mb() - rss0,
    }


def _write(rows_out: list[dict]) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows_out[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows_out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(*args.child, args.reps)))
        return
    load0 = os.getloadavg()[0]
    rows_out = []
    for b, L in CASES:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(b), str(L), "--reps", str(args.reps)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"case b={b} L={L} failed:\n{proc.stderr[-2000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        rows_out.append(r)
        _write(rows_out)
        print(
            f"b={b:2d} L={L:2d} m={r['m']:4d}: grad {r['grad_s']:.2f} s, grad+U {r['curvature_s']:.2f} s "
            f"({r['ratio']:.1f}x), U^T {r['ut_mb']:.0f} MB, peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(+{r['step_mb']:.0f} MB over the loaded model)",
            flush=True,
        )
    print(f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; wrote {OUT}")


if __name__ == "__main__":
    main()
