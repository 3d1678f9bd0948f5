"""Run the README's command-line examples on small fixed inputs and write what each prints, so a
refactoring can be checked for byte-identical output:

    python scripts/cli_golden.py OUTDIR            # writes OUTDIR/NN.txt, one per command
    diff -r BEFORE AFTER

Wall-clock figures differ between runs: lines and JSON keys that carry them are masked."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

COMMANDS = [
    "solve --A A.npy --b b.npy --backend ngspice --topology dense --t 50 --json",
    "solve --U U.npy --lam 0.1 --b b.npy --topology factored --backend ou",
    "solve --J J.npy --H H.npy --lam 0.01 --b b.npy --topology crossbar --kappa0 0.01 --seed 1",
    "netlist --A A.npy --b b.npy -o spu.cir",
    "report --J J.npy --H H.npy --lam 0.01 --b b.npy --bits-r 8 --tol-r 0.01",
    "solve --U U.npy --lam 0.1 --b b.npy --backend asbuilt --topology factored --bits-r 8 --tol-r 0.01 --opamp-gain 1e5",
    "solve --U U.npy --lam 0.1 --b b.npy --backend asbuilt --topology factored --bits-r 8 --json",
    "sample --A A.npy --b b.npy --samples 200 --interval 1 --kappa0 0.1 --backend ou --seed 3 --json",
    "solve --A A.npy --b b.npy --topology oscillator --zeta 1 --backend ou",
    "solve --A A.npy --b b.npy --backend euler --t 5 --kappa0 0.01 --seed 2",
    "solve --A A.npy --b b.npy --backend direct --json",
    "train --optimizer adam --steps 4 --out run_adam --json",
    "train --optimizer tngd --backend ou --steps 3 --out run_tngd",
    "train --optimizer tngd --backend asbuilt --steps 2 --out run_asb",
    "train --optimizer ngd-woodbury --steps 2 --out run_w",
    "sweep time --t lin:1:40:4 --backend ou --out sw",
    "sweep bits --out swb --n 6",
] + [
    f"{cmd} --help"
    for cmd in (
        "solve",
        "netlist",
        "report",
        "train",
        "demo",
        "sample",
        "reproduce",
        "sweep",
        *(
            f"sweep {k}"
            for k in ("noise", "tolerance", "bits", "opamp", "time", "train-bits", "train-tolerance", "train-noise")
        ),
    )
]
TIMING = re.compile(r"(wall|_s\b|elapsed|seconds| s\)|ms\b|it/s|s/it|\d+(\.\d+)?s\b|in \d+(\.\d+)? s$)", re.I)
TIMED_KEYS = ("wall", "time", "elapsed", "seconds", "bookkeeping", "digital")


def inputs(d: Path) -> None:
    rng = np.random.default_rng(0)
    n, m = 6, 3
    M = rng.standard_normal((n, n))
    np.save(d / "A.npy", M @ M.T / n + np.eye(n))
    np.save(d / "U.npy", rng.standard_normal((n, m)) / 2)
    np.save(d / "J.npy", rng.standard_normal((m, n)) / 2)
    p = rng.dirichlet(np.ones(m))
    np.save(d / "H.npy", np.diag(p) - np.outer(p, p))
    np.save(d / "b.npy", rng.standard_normal(n))


def mask(text: str, tmp: str) -> str:
    # The run's temp folder differs each time; a cleared progress bar leaves padding of its width.
    text = "\n".join(line.rstrip() for line in text.replace(tmp, "<tmp>").splitlines())
    try:
        obj = json.loads(text)
    except ValueError:
        return "\n".join("<timed>" if TIMING.search(line) else line for line in text.splitlines())

    def walk(o):
        if isinstance(o, dict):
            return {k: ("<timed>" if any(t in k for t in TIMED_KEYS) else walk(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return json.dumps(walk(obj), indent=1, sort_keys=True)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("thermospice"))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        inputs(d)
        for i, cmd in enumerate(COMMANDS):
            r = subprocess.run(
                [exe, *cmd.split()], cwd=d, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}
            )
            # stderr: a progress bar redraws a number of times that depends on the machine's speed.
            err = "\n".join(line for line in mask(r.stderr, tmp).splitlines() if line != "<timed>" and "%|" not in line)
            (out / f"{i:02d}.txt").write_text(f"$ {cmd}\nrc={r.returncode}\n{mask(r.stdout, tmp)}\n--- stderr\n{err}\n")
            print(f"{i:02d} rc={r.returncode} {cmd}", flush=True)
        net = d / "spu.cir"
        (out / "spu.cir").write_text(net.read_text() if net.exists() else "missing\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
