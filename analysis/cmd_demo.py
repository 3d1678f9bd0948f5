"""`thermospice demo`: the whole system in a few minutes (see analysis/demo.py)."""

from __future__ import annotations

import sys

from .demo import run_demo


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="circuit check in ngspice, component report, TNGD vs Adam, ngspice in the loop")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller version (about a minute)")
    p.set_defaults(func=lambda a: (run_demo(a.out, quick=a.quick, progress=sys.stderr.isatty()), 0)[1])
