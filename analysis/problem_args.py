"""Command-line options shared by every command that takes a linear system and a circuit design."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import numpy as np

from circuits.design import Design
from circuits.topologies import TOPOLOGIES
from spu.core.errors import ProblemError
from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem
from spu.limits import Limits

from .design_sources import add_design_sources, design_fields, named_design, write_design
from .limit_args import limits_from_args

# Copies of the problem's matrices a command holds at its peak (measured with a dense A of N = 700
# and 1500: the circuit build (netlist, report, ngspice) ~90-96, its arrays of resistors, roles and
# conductances, the numeric backends ~3.4: the checks, the spectrum and the solve).
CIRCUIT_COPIES = 100
NUMERIC_COPIES = 4
_TEXT_PEEK = 1 << 24  # bytes of a text file read to count the columns of its first row


def add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (one form: --A; --U --lam; or --J --H --lam; always --b)")
    g.add_argument("--A", help="dense SPD matrix A (.npy, .csv or .txt)")
    g.add_argument("--U", help="factor U (N x m) of A = lam*I + U U^T")
    g.add_argument("--J", help="output Jacobian J (m x N) of A = J^T H J + lam*I")
    g.add_argument("--H", help="loss Hessian H (m x m, symmetric PSD)")
    g.add_argument("--lam", type=float, help="damping lambda > 0 (factored and GGN forms)")
    g.add_argument("--b", required=True, help="right-hand side b (length N)")
    g.add_argument("--x0", help="initial state (length N; default zeros)")


@dataclass(frozen=True)
class DesignFlag:
    """One circuit-design option and the Design field it sets ('part.name' inside the op-amp or a
    converter). type bool: a switch (store_true) that sets the field to `store` when given."""

    flag: str
    type: type
    help: str
    field: str
    store: object = None


# Every circuit-design flag of the CLI, in the order `solve --help` lists them. A command picks the
# ones it takes (add_design_flags); dest is argparse's (--bits-r -> bits_r). A flag not given stays
# None: the design is Design's defaults, then the presets, the design file, then the flags given
# (analysis/design_sources.py).
DESIGN_FLAGS = {
    f.flag: f
    for f in (
        DesignFlag("--temperature", float, "Kelvin: add Johnson noise of every resistor", "temperature"),
        DesignFlag("--R0", float, "unit resistance, ohm (default 1k)", "R0"),
        DesignFlag("--C", float, "cell capacitance, F (default 1n)", "C"),
        DesignFlag("--r-min", float, "smallest resistor, ohm", "r_min"),
        DesignFlag("--r-max", float, "largest resistor, ohm", "r_max"),
        DesignFlag("--bits-r", int, "resistor resolution in bits (default continuous)", "bits_r"),
        DesignFlag("--bits-dac", int, "DAC resolution in bits", "bits_dac"),
        DesignFlag("--bits-adc", int, "ADC resolution in bits", "bits_adc"),
        DesignFlag("--tol-r", float, "relative sigma of each resistor", "tol_r"),
        DesignFlag("--tol-c", float, "relative sigma of each capacitor", "tol_c"),
        DesignFlag("--component-seed", int, "seed of the tolerance draws", "component_seed"),
        DesignFlag("--opamp-gain", float, "op-amp DC gain (default ideal)", "opamp.gain"),
        DesignFlag("--opamp-gbw", float, "op-amp gain-bandwidth product, Hz", "opamp.gbw"),
        DesignFlag(
            "--opamp-offset",
            float,
            "sigma of each op-amp's input offset voltage, V (drawn per part from --component-seed)",
            "opamp.offset",
        ),
        DesignFlag("--opamp-bias", float, "input bias current of every op-amp, A", "opamp.bias"),
        DesignFlag("--opamp-swing", float, "op-amp outputs clip at +-SWING V (default: no clipping)", "opamp.swing"),
        DesignFlag("--opamp-slew", float, "largest op-amp output slope, V/s (default: unlimited)", "opamp.slew"),
        DesignFlag(
            "--opamp-noise",
            float,
            "white input voltage-noise density of the op-amps, V/sqrt(Hz): the level of the 1/f noise",
            "opamp.noise_density",
        ),
        DesignFlag(
            "--opamp-flicker-corner",
            float,
            "1/f noise corner of the op-amps, Hz (needs --opamp-noise; default: no 1/f noise)",
            "opamp.flicker_corner",
        ),
        DesignFlag("--dac-offset", float, "sigma of each DAC's offset, V", "dac.offset"),
        DesignFlag("--dac-gain-error", float, "relative sigma of each DAC's gain (0.001: 0.1 %%)", "dac.gain_error"),
        DesignFlag("--dac-inl", float, "peak INL of each DAC, LSB of --bits-dac (a seeded smooth bow)", "dac.inl"),
        DesignFlag("--adc-offset", float, "sigma of each ADC's offset, V", "adc.offset"),
        DesignFlag("--adc-gain-error", float, "relative sigma of each ADC's gain", "adc.gain_error"),
        DesignFlag("--adc-inl", float, "peak INL of each ADC, LSB of --bits-adc (a seeded smooth bow)", "adc.inl"),
        DesignFlag("--noise-dt", float, "noise hold time in tau (default: min(0.05, 0.02/lambda_max))", "noise_dt"),
        DesignFlag("--dt-max", float, "largest ngspice step in tau", "dt_max"),
        DesignFlag(
            "--no-autoscale",
            bool,
            "program A as given (no scale s: the circuit then realises A x = b exactly or fails)",
            "autoscale",
            store=False,
        ),
        DesignFlag(
            "--open-error-max",
            float,
            "largest relative steady-state error allowed from entries below the "
            f"smallest programmable conductance, which are left open (default {Design.open_error_max:g})",
            "open_error_max",
        ),
    )
}


def add_design_flags(group, flags=tuple(DESIGN_FLAGS), *, helps: dict | None = None) -> None:
    """Declare the design flags `flags` (in that order) on an argument group, with --preset and
    --design-file. helps: a command's own wording of some help lines (for its own defaults). A flag
    not given stays None (False for a switch)."""
    for name in flags:
        f = DESIGN_FLAGS[name]
        text = (helps or {}).get(name, f.help)
        if f.type is bool:
            group.add_argument(name, action="store_true", help=text)
        else:
            group.add_argument(name, type=f.type, help=text)
    add_design_sources(group)


def add_design_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("circuit design")
    g.add_argument(
        "--topology",
        choices=list(TOPOLOGIES),
        help="circuit topology (default: dense for A, factored for U, crossbar for J/H; "
        "oscillator: second-order RLC cells)",
    )
    add_design_flags(g)
    g.add_argument("--save-design", metavar="FILE", help="write the design used (every field) to FILE as JSON")


def load_array(path: str, name: str) -> np.ndarray:
    if not os.path.exists(path):
        raise ProblemError(f"--{name}: file not found: {path}")
    try:
        if path.endswith(".npy"):
            _check_npy_magic(path, name)
    except OSError as exc:
        raise ProblemError(f"--{name}: cannot read {path}: {exc}") from None
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        return np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=1)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty or truncated .npy
        raise ProblemError(f"--{name}: cannot read {path}: {exc or type(exc).__name__}") from None


# What a file named .npy may really be, by its first bytes: np.load would open a zip as an .npz
# archive (then "holds <U1 data", its key names) and calls anything else pickled data.
_NOT_NPY = (
    (b"PK\x03\x04", "an .npz archive (a zip of arrays), not an .npy file: save one array with numpy.save"),
    (b"PK\x05\x06", "an empty zip archive, not an .npy file"),
    (b"\x80", "pickled Python data, not an .npy file (refused: unpickling can run code)"),
)


def _check_npy_magic(path: str, name: str) -> None:
    """ProblemError naming the file when it does not start with the .npy magic string."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(np.lib.format.MAGIC_PREFIX):
        return
    what = next((why for magic, why in _NOT_NPY if head.startswith(magic)), None)
    if what is None:
        if not head:
            what = "empty"
        elif _is_text(head):
            what = "a text file, not an .npy file: name it .txt or .csv to read it as text"
        else:
            what = "not an .npy file (no NumPy header)"
    raise ProblemError(f"--{name}: cannot read {path}: it is {what}")


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the peek
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def file_entries(path: str) -> int | None:
    """Entries of the array a file holds, from its .npy header or, for text, its first row and its
    size; None where it cannot tell (load_array then reports the file as it always did)."""
    try:
        if path.endswith(".npy"):
            with open(path, "rb") as fh:
                fmt = np.lib.format
                version = fmt.read_magic(fh)
                read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if read is None:
                    return None
                shape, _, _ = read(fh)
            return int(np.prod(shape, dtype=float))
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            for line in iter(lambda: fh.readline(_TEXT_PEEK), b""):
                if line.strip() and not line.lstrip().startswith(b"#"):
                    fields = len(line.replace(b",", b" ").split())
                    return int(fields * size / len(line))
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return None


def check_problem_memory(args, limits: Limits, copies: int) -> None:
    """Refuse, before loading anything, a problem whose arrays need more memory than the limit."""
    names = [n for n in ("A", "U", "J", "H", "b", "x0") if getattr(args, n, None)]
    sizes = {n: file_entries(getattr(args, n)) for n in names}
    matrices = [n for n in names if sizes[n] and n not in ("b", "x0")]
    if not matrices:
        return
    need = sum(sizes[n] for n in matrices) * 8.0 * copies
    what = ", ".join(f"--{n} ({sizes[n]:.3g} entries)" for n in matrices)
    limits.check_memory(f"{what}, with the {copies} copies this command makes,", need)


def problem_from_args(args, *, circuit: bool = True):
    """The problem the options name. circuit: whether the command builds a circuit from it (which
    holds far more copies of its matrices than a numeric backend), for the memory estimate."""
    check_problem_memory(args, limits_from_args(args), CIRCUIT_COPIES if circuit else NUMERIC_COPIES)
    b = load_array(args.b, "b")
    forms = [bool(args.A), bool(args.U), bool(args.J or args.H)]
    if sum(forms) != 1:
        raise ProblemError("give exactly one problem form: --A, or --U with --lam, or --J and --H with --lam")
    if args.A:
        if args.lam is not None:
            raise ProblemError("--lam belongs to the factored (--U) and GGN (--J/--H) forms, not --A")
        return DenseProblem(load_array(args.A, "A"), b)
    if args.lam is None:
        raise ProblemError("the factored and GGN forms need --lam")
    if args.U:
        return FactoredProblem(load_array(args.U, "U"), args.lam, b)
    if not (args.J and args.H):
        raise ProblemError("the GGN form needs both --J and --H")
    return GGNProblem(load_array(args.J, "J"), load_array(args.H, "H"), args.lam, b)


def x0_from_args(args, n: int):
    if not args.x0:
        return None
    x0 = load_array(args.x0, "x0")
    if x0.shape != (n,):
        raise ProblemError(f"--x0 has shape {x0.shape} but the problem has n = {n}")
    return x0


def design_from_args(args) -> Design:
    """The checked Design the options name (presets, design file, flags; errors name the option),
    written to --save-design when given."""
    design = named_design(design_fields(args, DESIGN_FLAGS), DESIGN_FLAGS)
    if getattr(args, "save_design", None):
        write_design(args.save_design, design)
    return design
