"""Cost of the GGN pieces on the digits CNN (N = 16 826) at batch 64, 2 threads, relative to Adam.

Run: python benchmarks/bench_curvature.py [--reps R] [--repeat K] [--batch B] [--threads T]
                                          [--no-malloc-tuning | --both]

Each case runs in its own child process (a re-exec of this script), so the reported peak RSS
(resource.getrusage ru_maxrss) belongs to that case alone; "+RSS" subtracts the RSS the child had
before the case started (Python + torch + data + model). tracemalloc does not see torch's allocator.

Allocator: by default the children run with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824
(DESIGN.md: glibc mmaps tensors over 32 MB and returns them to the OS on every free, so U^T (43 MB
here) would pay its page faults on every step). --no-malloc-tuning runs the children with the
environment unchanged; --both runs both settings.

Every child also times an Adam step (on its own copy of the model) alternately with its case, and
the ratios divide by that interleaved Adam time, so both see the same machine load. On a shared
machine the median suffers from other processes (torch's OpenMP threads spin-wait for a busy core,
and large writes compete for memory bandwidth); the min is the better estimate of the cost itself.
The load average before and after is printed. Peak RSS includes the reference Adam model (tiny).

Cases (median and min over reps after warm-up):
  adam          forward + backward + Adam step (the reference)
  write U^T floor  fill a reused (m, N) buffer: the memory traffic no U^T method can avoid
  g+J+H jacrev  jacobian_curvature(method="jacobian") and its H:
                vmap(jacrev) per sample
  g+J+H layers  the same by the layers method (unit-vector cotangents)
  g+J+H+U layers  the same plus U^T = bmm(S^T, J)
  g+U vjp       method="vjp": per-sample vjp with the S columns + gradient cotangent
  g+U layers    method="layers": hooked forward, one vmapped backward to layer outputs, U^T written
                in place by broadcast-multiply / bmm
  g+U layers/out  the same into a reused out= buffer
  g+U mc K=k/out  curvature="mc" (sampled-label Fisher, k labels per example): U^T has b*k rows
  g+U empirical/out  curvature="empirical": U^T has b rows, the gradient is their sum (one cotangent)
  ggn_vp build  make_ggn_vp (forward + vjp closure)
  ggn_vp        one product with the built operator (jvp + vjp)
  ggn_vp lin    one product with linearize=True (build cost not included)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "1073741824"}
CASES = [
    "adam",
    "write U^T floor",
    "g+J+H jacrev",
    "g+J+H layers",
    "g+J+H+U layers",
    "g+U vjp",
    "g+U layers",
    "g+U layers/out",
    "g+U mc K=1/out",
    "g+U mc K=4/out",
    "g+U empirical/out",
    "ggn_vp build",
    "ggn_vp",
    "ggn_vp lin",
]


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def run_case(case: str, reps: int, batch: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from training.curvature import compute_curvature, jacobian_curvature, make_ggn_vp
    from training.data import batches, load_digits_split
    from training.models import build_model, count_params

    train, _ = load_digits_split()
    model = build_model("cnn", seed=0)
    N = count_params(model)
    x, y = next(batches(train, batch, seed=0))
    m = batch * 10
    rss0 = maxrss_mb()

    if case == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def fn():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    elif case == "write U^T floor":
        buf = torch.empty(m, N)

        def fn():
            buf.fill_(1.0)
    elif case == "g+J+H jacrev":

        def fn():
            return jacobian_curvature(model, x, y, method="jacobian").H
    elif case == "g+J+H layers":

        def fn():
            return jacobian_curvature(model, x, y, method="layers").H
    elif case == "g+J+H+U layers":

        def fn():
            c = jacobian_curvature(model, x, y, method="layers")
            return c.H, c.Ut
    elif case == "g+U vjp":

        def fn():
            compute_curvature(model, x, y, method="vjp")
    elif case == "g+U layers":

        def fn():
            compute_curvature(model, x, y, method="layers")
    elif case == "g+U layers/out":
        buf = torch.empty(m, N)

        def fn():
            compute_curvature(model, x, y, method="layers", out=buf)
    elif case.startswith("g+U mc") or case == "g+U empirical/out":
        K = int(case.split("K=")[1].split("/")[0]) if "mc" in case else 1
        buf = torch.empty(batch * K, N)
        curvature = "mc" if "mc" in case else "empirical"
        gen = torch.Generator().manual_seed(0)

        def fn():
            compute_curvature(model, x, y, method="layers", out=buf, curvature=curvature, mc_samples=K, generator=gen)
    elif case == "ggn_vp build":

        def fn():
            make_ggn_vp(model, x)
    elif case in ("ggn_vp", "ggn_vp lin"):
        op = make_ggn_vp(model, x, linearize=case == "ggn_vp lin")
        v = torch.randn(N, generator=torch.Generator().manual_seed(0))

        def fn():
            op(v)
    else:
        raise SystemExit(f"unknown case {case!r}")

    # an Adam step on a separate copy of the model, timed alternately with the case, so that both
    # see the same machine load
    ref_model = build_model("cnn", seed=0)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)

    def adam_step():
        ref_opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(ref_model(x), y).backward()
        ref_opt.step()

    for _ in range(max(3, reps // 10)):
        fn()
        adam_step()
    ts, ta = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        adam_step()
        ts.append(t1 - t0)
        ta.append(time.perf_counter() - t1)
    ts.sort()
    ta.sort()
    return {
        "case": case,
        "median_ms": 1e3 * ts[len(ts) // 2],
        "min_ms": 1e3 * ts[0],
        "adam_median_ms": 1e3 * ta[len(ta) // 2],
        "adam_min_ms": 1e3 * ta[0],
        "rss_mb": maxrss_mb(),
        "rss0_mb": rss0,
        "N": N,
        "m": m,
    }


def select_cases(spec: str | None, cases: list[str], always: tuple[str, ...]) -> list[str]:
    """The cases named in the comma-separated spec (all when None), in the order of `cases`, with
    the `always` ones (the references) included. bench_optimizers.py reuses this."""
    if not spec:
        return list(cases)
    want = [c.strip() for c in spec.split(",")]
    bad = [c for c in want if c not in cases]
    if bad:
        raise SystemExit(f"unknown case(s) {bad}; choose from {cases}")
    return [c for c in cases if c in want or c in always]


def child(case, reps, batch, threads, tuned: bool, script: str = __file__) -> dict:
    """Run one case of `script` in a fresh process (its own peak RSS, its own allocator settings)
    and return the JSON it prints last. bench_optimizers.py reuses this for its cases."""
    env = dict(os.environ)
    for k in MALLOC_ENV:
        env.pop(k, None)
    if tuned:
        env.update(MALLOC_ENV)
    cmd = [
        sys.executable,
        script,
        "--child",
        case,
        "--reps",
        str(reps),
        "--batch",
        str(batch),
        "--threads",
        str(threads),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {case!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc's malloc settings alone")
    ap.add_argument("--both", action="store_true", help="run with and without the malloc tuning")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every case this many times (round robin) and keep the best min and the "
        "lowest median: on a shared machine this filters out other people's load",
    )
    ap.add_argument(
        "--cases", default=None, help="comma-separated subset of: " + ", ".join(CASES) + " (adam always runs)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.reps, args.batch, args.threads)))
        return
    settings = [True, False] if args.both else [not args.no_malloc_tuning]
    cases = select_cases(args.cases, CASES, always=("adam",))
    for tuned in settings:
        label = "MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1GiB" if tuned else "glibc malloc defaults"
        load0 = os.getloadavg()[0]
        rows = [child(c, args.reps, args.batch, args.threads, tuned) for c in cases]
        for _ in range(args.repeat - 1):
            for i, c in enumerate(cases):
                r = child(c, args.reps, args.batch, args.threads, tuned)
                old = rows[i]
                for k in ("min_ms", "adam_min_ms", "median_ms", "adam_median_ms"):
                    r[k] = min(r[k], old[k])
                r["rss_mb"], r["rss0_mb"] = max(r["rss_mb"], old["rss_mb"]), old["rss0_mb"]
                rows[i] = r
        print(
            f"\ndigits CNN N={rows[0]['N']}, batch {args.batch} (m={rows[0]['m']}), "
            f"{args.threads} threads, {label}; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'case':<18}{'median ms':>10}{'min ms':>9}{'xAdam med':>10}{'xAdam min':>10}"
            f"{'peak RSS MB':>13}{'+RSS MB':>9}"
        )
        for r in rows:
            print(
                f"{r['case']:<18}{r['median_ms']:>10.2f}{r['min_ms']:>9.2f}"
                f"{r['median_ms'] / r['adam_median_ms']:>10.2f}{r['min_ms'] / r['adam_min_ms']:>10.2f}"
                f"{r['rss_mb']:>13.0f}{r['rss_mb'] - r['rss0_mb']:>9.0f}"
            )


if __name__ == "__main__":
    main()
