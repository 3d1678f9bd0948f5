"""Component report: what a hardware designer checks before taping out a solve.

Computed from the as-built circuit (after quantisation and tolerance), never from ngspice, so it
is cheap and available before any simulation.
"""

from __future__ import annotations

import math

import numpy as np

from spu.core.spectral import MODE_DECAY_TOL, settling_time

from .circuit import Circuit


def component_report(circuit: Circuit, problem, t: float, x0=None, *, x_star) -> dict:
    """Counts, value ranges, quantisation error, settling time, peak voltages, power and energy.

    problem: the ideal problem the circuit was built from (for quantisation/tolerance error).
    x_star: its exact solution A^-1 b (the caller's direct solve: the circuit layer has no solver).
    t: analog time of the solve, in tau (for the energy per solve)."""
    d = circuit.design
    rec = circuit.record
    x0 = np.zeros(circuit.n) if x0 is None else np.asarray(x0, float)
    x_built = circuit.as_built.solve()
    rep = {
        "topology": circuit.topology,
        "n": circuit.n,
        "counts": _counts(circuit),
        "ranges": _ranges(d, rec),
        "quantisation": _quantisation(d, rec, x_built, x_star),
        "input_errors": _input_errors(circuit, x_star),
        "open_cells": _open_cells(d, rec),
        "noise": _noise(d, rec, circuit.scale),
        "timing": _timing(circuit, problem, t),
        "voltages": _voltages(circuit, x_built, x0),
        "power": _power(circuit, x_built, t),
        "design": d.as_dict(),
    }
    hook = getattr(circuit, "report_hook", None)  # second-order cells amend timing and peaks
    if hook is not None:
        hook(rep, problem, t, x0)
    return rep


def _counts(circuit: Circuit) -> dict:
    rec = circuit.record
    counts = dict(sorted(circuit.netlist.counts().items()))
    kinds = {
        "R": "resistors",
        "C": "capacitors",
        "L": "inductors",
        "E": "vcvs",
        "G": "vccs",
        "I": "current_sources",
        "V": "voltage_sources",
    }
    count_named = {kinds.get(k, k): v for k, v in counts.items()}
    count_named["op_amps"] = rec.amplifiers
    count_named["noise_sources"] = rec.noise_sources
    count_named["dacs"] = rec.dacs
    count_named["adcs"] = circuit.n
    return count_named


def _ranges(d, rec) -> dict:
    R_all = np.concatenate(rec.resistors) if rec.resistors else np.zeros(0)
    return {
        "resistance_ohm": {
            "min": float(R_all.min()) if R_all.size else None,
            "max": float(R_all.max()) if R_all.size else None,
            "allowed": [d.r_min, d.r_max],
            "within": bool(R_all.size == 0 or (R_all.min() >= d.r_min and R_all.max() <= d.r_max)),
        },
        "capacitance_f": {"min": float(min(rec.capacitors)), "max": float(max(rec.capacitors))},
        "per_array": {
            role: {"count": int(r.size), "min_ohm": float(r.min()), "max_ohm": float(r.max())}
            for role, r in zip(rec.resistor_roles, rec.resistors)
            if r.size
        },
    }


def _quantisation(d, rec, x_built: np.ndarray, x_star) -> dict:
    """Solution error caused by quantisation and tolerance: as-built steady state vs the exact one."""
    x_exact = np.asarray(x_star, dtype=float)
    denom = max(float(np.linalg.norm(x_exact)), np.finfo(float).tiny)
    return {
        "bits_r": d.bits_r,
        "bits_dac": d.bits_dac,
        "bits_adc": d.bits_adc,
        "max_entry_error_rel_full_scale": rec.quant_error,
        "steady_state_rel_error": float(np.linalg.norm(x_built - x_exact) / denom),
        "adc_lsb_v": (2 * d.v_fullscale / (2**d.bits_adc - 1)) if d.bits_adc else None,
    }


def _input_errors(circuit: Circuit, x_star) -> dict:
    """Steady-state error of each additive error at the cells' inputs (BuildRecord.input_errors:
    op-amp offsets per group, bias current, ...): delta_x = A_eff^-1 delta_b, as ||delta_x|| / ||x*||,
    largest first. Exact for the as-built A_eff (the errors add to b), up to its ideal-op-amp
    approximation: O(1/gain) relative with a finite gain."""
    errors = circuit.record.input_errors
    denom = max(float(np.linalg.norm(np.asarray(x_star, dtype=float))), np.finfo(float).tiny)

    def rel(delta_b):
        return float(np.linalg.norm(circuit.as_built.solve(delta_b)) / denom)

    sources = sorted(((name, rel(db)) for name, db in errors.items()), key=lambda kv: -kv[1])
    # A topology without a chain (dense, oscillator) carries offsets and bias in its netlist only.
    amps = circuit.record.amplifiers and not circuit.design.opamp.clean
    unmodelled = bool(amps) and getattr(circuit.builder, "amp_map", None) is None
    return {
        "sources": dict(sources),
        "total_steady_state_rel_error": rel(sum(errors.values())) if errors else 0.0,
        "opamp_errors_unmodelled": unmodelled,
    }


def _timing(circuit: Circuit, problem, t: float) -> dict:
    """Times in problem tau; the circuit realises A/scale, so it runs scale times longer (tau_s is
    the circuit's R0*C, one problem tau is scale*tau_s seconds of analog time)."""
    d, rec, sc = circuit.design, circuit.record, circuit.scale
    lam_min, lam_max = problem.eig_extremes()
    settle_tau = settling_time(lam_min)
    hold = None if rec.noise_hold_tau is None else rec.noise_hold_tau / sc
    return {
        "scale": sc,
        "tau_s": d.tau,
        "problem_tau_s": sc * d.tau,
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "condition_number": lam_max / lam_min,
        "slowest_mode_tau": 1.0 / lam_min,
        "settling_time_tau": settle_tau,
        "settling_time_circuit_tau": settle_tau * sc,
        "settling_time_s": settle_tau * sc * d.tau,
        "settling_tolerance": MODE_DECAY_TOL,
        "t_tau": t,
        "t_circuit_tau": t * sc,
        "analog_time_s": t * sc * d.tau,
        "residual_at_t": math.exp(-lam_min * t),
        "fastest_mode_tau": 1.0 / lam_max,
        # None when the circuit has no noise source. Held noise is white only well below
        # 1/hold: the report flags a hold that is not short against the fastest mode (between
        # hold boundaries the variance dips by about lam_max*hold/2).
        "noise_hold_tau": hold,
        "noise_hold_ok": bool(hold is None or hold * lam_max <= 0.1),
    }


def _noise(d, rec, sc: float) -> dict:
    jk = rec.johnson_kappa
    return {
        "temperature_k": d.temperature,
        # Johnson noise is physical: as a kappa of the problem (covariance kappa A^-1) it is
        # the circuit's kappa times the scale.
        "johnson_kappa0_max": float(sc * jk.max()) if jk is not None and jk.size else 0.0,
        "johnson_kappa0_min": float(sc * jk.min()) if jk is not None and jk.size else 0.0,
    }


def _open_cells(d, rec) -> dict:
    return {
        "count": rec.open_count() + rec.columns_dropped_entries,
        "per_array": {k: a.opened for k, a in rec.arrays.items() if a.opened},
        "columns_dropped": rec.columns_dropped,
        "columns_dropped_entries": rec.columns_dropped_entries,
        "min_conductance_s": 1.0 / d.r_max,
        "steady_state_rel_error": rec.open_error,
        "bound": d.open_error_max,
    }


def _voltages(circuit: Circuit, x_built: np.ndarray, x0: np.ndarray) -> dict:
    """Node voltages at the start and at steady state (in volts): cells plus every driven node."""
    d = circuit.design
    volts = _node_voltages(circuit, x_built, x0)
    peak = max((abs(v) for v in volts.values()), default=0.0)
    worst = max(volts, key=lambda k: abs(volts[k])) if volts else None
    return {
        "peak_v": peak,
        "peak_node": worst,
        "rails_v": d.rails,
        "within_rails": peak <= d.rails,
        "adc_fullscale_v": d.v_fullscale,
        "state_peak_v": float(d.v_unit * max(np.abs(x_built).max(), np.abs(x0).max())),
    }


def _power(circuit: Circuit, x_built: np.ndarray, t: float) -> dict:
    """Steady-state dissipation of the resistors plus the op-amps' quiescent power."""
    d, rec = circuit.design, circuit.record
    steady = _node_voltages(circuit, x_built, None)
    p_res = 0.0
    for (a, b), R in zip(rec.terminals, rec.resistors):
        va = np.array([steady.get(k, 0.0) for k in a])
        vb = np.array([steady.get(k, 0.0) for k in b])
        p_res += float(np.sum((va - vb) ** 2 / R))
    p_amp = rec.amplifiers * d.amp_quiescent_w
    return {
        "resistive_w": p_res,
        "amplifier_quiescent_w": p_amp,
        "total_w": p_res + p_amp,
        "energy_per_solve_j": (p_res + p_amp) * t * circuit.scale * d.tau,
        "assumption": f"steady-state dissipation, {d.amp_quiescent_w:g} W quiescent per op-amp",
    }


def _node_voltages(circuit: Circuit, x: np.ndarray, x0: np.ndarray | None) -> dict[str, float]:
    """Volts on every driven node at state x (and x0 if given, keeping the larger magnitude)."""
    d = circuit.design
    out: dict[str, float] = {}
    states = [x] if x0 is None else [x, x0]
    for s in states:
        groups = [(circuit.state_nodes, s)] + [
            (names, M @ s) for names, M in (circuit.as_built.internal or {}).values()
        ]
        for names, vals in groups:
            for name, v in zip(names, d.v_unit * vals):
                if abs(v) >= abs(out.get(name, 0.0)):
                    out[name] = float(v)
    if circuit.record.dac_volts is not None:
        for i, v in enumerate(circuit.record.dac_volts):
            out[f"d{i}"] = float(v)
    return out


def _format_input_errors(e: dict) -> str:
    if e["opamp_errors_unmodelled"]:
        return "  input errors: op-amp offset and bias are in the netlist; no first-order model for this topology"
    if not e["sources"]:
        return "  input errors: none"
    listed = ", ".join(f"{name} {v:.3g}" for name, v in e["sources"].items())
    return f"  input errors (steady-state shift / |x*|, largest first): {listed}; together {e['total_steady_state_rel_error']:.3g}"


def format_report(rep: dict) -> str:
    """Human-readable text of a report."""
    c, r, q, t, v, p = (rep[k] for k in ("counts", "ranges", "quantisation", "timing", "voltages", "power"))
    lines = [
        f"Component report: topology {rep['topology']}, n = {rep['n']}",
        "  counts: " + ", ".join(f"{k} {val}" for k, val in c.items()),
        f"  resistors: {r['resistance_ohm']['min']:.4g} .. {r['resistance_ohm']['max']:.4g} ohm "
        f"(allowed {r['resistance_ohm']['allowed'][0]:g} .. {r['resistance_ohm']['allowed'][1]:g}: "
        f"{'ok' if r['resistance_ohm']['within'] else 'OUT OF RANGE'})"
        if r["resistance_ohm"]["min"] is not None
        else "  resistors: none",
        f"  quantisation: bits R/DAC/ADC = {q['bits_r']}/{q['bits_dac']}/{q['bits_adc']}, "
        f"steady-state relative error from quantisation and tolerance {q['steady_state_rel_error']:.3g}",
        f"  scale s = {t['scale']:.6g}: the circuit realises (A/s) x = b/s; one problem tau = "
        f"{t['problem_tau_s']:.4g} s; t = {t['t_tau']:g} tau = {t['analog_time_s']:.4g} s analog",
        _format_input_errors(rep["input_errors"]),
        f"  open cells (below {rep['open_cells']['min_conductance_s']:.3g} S): {rep['open_cells']['count']}"
        f" ({rep['open_cells']['columns_dropped']} column(s) of U dropped), steady-state error "
        f"{rep['open_cells']['steady_state_rel_error']:.3g} (bound {rep['open_cells']['bound']:g})",
        f"  settling: lambda_min {t['lambda_min']:.4g}, lambda_max {t['lambda_max']:.4g}, "
        f"condition {t['condition_number']:.4g}; slowest mode {t['slowest_mode_tau']:.4g} tau, "
        f"settles to {t['settling_tolerance']:g} in {t['settling_time_tau']:.4g} tau "
        f"({t['settling_time_circuit_tau']:.4g} circuit tau) = {t['settling_time_s']:.4g} s; "
        f"residual at t = {t['t_tau']:g} tau: {t['residual_at_t']:.3g}",
        *(
            [
                f"  Johnson noise at {rep['noise']['temperature_k']:g} K: kappa0 {rep['noise']['johnson_kappa0_min']:.4g}"
                f" .. {rep['noise']['johnson_kappa0_max']:.4g} per cell (problem units: covariance kappa0 A^-1)"
            ]
            if rep["noise"]["temperature_k"]
            else []
        ),
        (
            "  noise: none"
            if t["noise_hold_tau"] is None
            else f"  noise hold {t['noise_hold_tau']:.3g} tau vs fastest mode {t['fastest_mode_tau']:.3g} tau: "
            f"{'ok' if t['noise_hold_ok'] else 'TOO LONG (noise coloured)'}"
        ),
        *(
            [
                f"  oscillator ({t['coupling']} coupling): gamma {t['gamma']:.4g}, damping ratio "
                f"{t['zeta_min']:.3g} .. {t['zeta_max']:.3g}, omega {t['omega_min_per_tau']:.4g} .. "
                f"{t['omega_max_per_tau']:.4g} /tau (f_max {t['f_max_hz']:.4g} Hz)"
            ]
            if t.get("dynamics")
            else []
        ),
        f"  peak node voltage {v['peak_v']:.4g} V at {v['peak_node']} (rails +-{v['rails_v']:g} V: "
        f"{'ok' if v['within_rails'] else 'EXCEEDS RAILS'})",
        f"  power: resistive {p['resistive_w']:.4g} W + op-amps {p['amplifier_quiescent_w']:.4g} W = "
        f"{p['total_w']:.4g} W; energy per solve {p['energy_per_solve_j']:.4g} J ({p['assumption']})",
    ]
    return "\n".join(lines)
