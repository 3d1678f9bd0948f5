"""The `thermospice` command line.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which sets
``func``); this file only wires them and turns every expected error into one line on stderr and
exit status 2, never a traceback (set THERMOSPICE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from importlib import import_module

from spu.core.errors import ThermospiceError

# Subcommand modules, in the order `--help` lists them.
COMMANDS = (
    "analysis.cmd_solve",
    "analysis.cmd_train",
    "analysis.cmd_demo",
    "analysis.cmd_sweep",
    "analysis.cmd_reproduce",
    "analysis.cmd_sample",
)


class CliError(ThermospiceError):
    """A bad command-line option."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is (like Ctrl-C) so that cleanup runs: a sweep says how to
    resume, an ngspice run kills its process and removes its folder."""


def _terminate(signum, frame):
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: same one-line format, exit 2
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="thermospice", description="Circuit-level SPU simulator and TNGD optimizer.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not built yet; the others still work
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from training.malloc import tune_glibc_malloc  # ctypes only: no torch

    # Every command handles arrays of tens of MB (U^T of a CNN at b = 64, the as-built N x m
    # arrays): glibc would mmap each and fault its pages in again after every free (DESIGN.md;
    # an as-built realisation at N = 1e5, m = 64: 1.4 s tuned against 2.9-4.4 s).
    tune_glibc_malloc()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (ThermospiceError, OSError, ValueError) as exc:
        if os.environ.get("THERMOSPICE_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"thermospice: error: {msg}", file=sys.stderr)
        return 2
    except Terminated:
        print("thermospice: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("thermospice: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
