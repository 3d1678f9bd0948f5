"""Command-line options shared by every command that takes a linear system and a circuit design."""
from __future__ import annotations

import argparse
import os

import numpy as np

from circuits.design import Design, OpAmp
from circuits.topologies import TOPOLOGIES
from spu.core.errors import ProblemError
from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem


def add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (one form: --A; --U --lam; or --J --H --lam; always --b)")
    g.add_argument("--A", help="dense SPD matrix A (.npy, .csv or .txt)")
    g.add_argument("--U", help="factor U (N x m) of A = lam*I + U U^T")
    g.add_argument("--J", help="output Jacobian J (m x N) of A = J^T H J + lam*I")
    g.add_argument("--H", help="loss Hessian H (m x m, symmetric PSD)")
    g.add_argument("--lam", type=float, help="damping lambda > 0 (factored and GGN forms)")
    g.add_argument("--b", required=True, help="right-hand side b (length N)")
    g.add_argument("--x0", help="initial state (length N; default zeros)")


def add_design_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("circuit design")
    g.add_argument("--topology", choices=list(TOPOLOGIES),
                   help="circuit topology (default: dense for A, factored for U, crossbar for J/H; "
                        "oscillator: second-order RLC cells)")
    g.add_argument("--temperature", type=float, help="Kelvin: add Johnson noise of every resistor")
    g.add_argument("--R0", type=float, default=Design.R0, help="unit resistance, ohm (default 1k)")
    g.add_argument("--C", type=float, default=Design.C, help="cell capacitance, F (default 1n)")
    g.add_argument("--r-min", type=float, default=Design.r_min, help="smallest resistor, ohm")
    g.add_argument("--r-max", type=float, default=Design.r_max, help="largest resistor, ohm")
    g.add_argument("--bits-r", type=int, help="resistor resolution in bits (default continuous)")
    g.add_argument("--bits-dac", type=int, help="DAC resolution in bits")
    g.add_argument("--bits-adc", type=int, help="ADC resolution in bits")
    g.add_argument("--tol-r", type=float, default=0.0, help="relative sigma of each resistor")
    g.add_argument("--tol-c", type=float, default=0.0, help="relative sigma of each capacitor")
    g.add_argument("--component-seed", type=int, default=0, help="seed of the tolerance draws")
    g.add_argument("--opamp-gain", type=float, help="op-amp DC gain (default ideal)")
    g.add_argument("--opamp-gbw", type=float, help="op-amp gain-bandwidth product, Hz")
    g.add_argument("--noise-dt", type=float, default=Design.noise_dt, help="noise hold time in tau (default: min(0.05, 0.02/lambda_max))")
    g.add_argument("--dt-max", type=float, default=Design.dt_max, help="largest ngspice step in tau")
    g.add_argument("--no-autoscale", action="store_true",
                   help="program A as given (no scale s: the circuit then realises A x = b exactly or fails)")
    g.add_argument("--open-error-max", type=float, default=Design.open_error_max,
                   help="largest relative steady-state error allowed from entries below the smallest "
                        f"programmable conductance, which are left open (default {Design.open_error_max:g})")


def load_array(path: str, name: str) -> np.ndarray:
    if not os.path.exists(path):
        raise ProblemError(f"--{name}: file not found: {path}")
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        return np.loadtxt(path, delimiter="," if path.endswith(".csv") else None, ndmin=1)
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty or truncated .npy
        raise ProblemError(f"--{name}: cannot read {path}: {exc or type(exc).__name__}") from None


def problem_from_args(args):
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
    return Design(R0=args.R0, C=args.C, r_min=args.r_min, r_max=args.r_max, bits_r=args.bits_r,
                  bits_dac=args.bits_dac, bits_adc=args.bits_adc, tol_r=args.tol_r, tol_c=args.tol_c,
                  component_seed=args.component_seed, opamp=OpAmp(args.opamp_gain, args.opamp_gbw),
                  temperature=args.temperature, noise_dt=args.noise_dt, dt_max=args.dt_max,
                  autoscale=not args.no_autoscale, open_error_max=args.open_error_max).check()
