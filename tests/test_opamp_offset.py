"""Op-amp input offset voltage and input bias current (issue 17): the netlist (the truth), the
asbuilt system's exact additive terms (circuits/amp_input.py), their agreement, and the component
report's per-source list.

Oracles: a modified nodal analysis of the netlist itself (DC, capacitors open), written here and
sharing nothing with circuits/amp_input.py; the single-cell algebra R0 G_s v_os / v_unit; and
ngspice's transient."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from physics import asbuilt_against_ngspice, problem
from scipy import stats

from circuits.design import Design, OpAmp
from circuits.realised import ValueBuilder, realise
from circuits.report import component_report, format_report
from circuits.topologies import build
from spu.backends.asbuilt import transition
from spu.core.errors import DesignError
from spu.core.lowrank_drift import woodbury_solve
from spu.core.problems import FactoredProblem

needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")

KIND = {"factored": "factored", "crossbar": "ggn"}
ERRORS = OpAmp(offset=5e-3, bias=2e-6)


def _scaled_problem():
    """lam = 400 needs the circuit scale s > 1 (circuits/scaling.py): b and the map scale with it."""
    rng = np.random.default_rng(0)
    return FactoredProblem(rng.normal(size=(8, 3)) * 30, 400.0, rng.normal(size=8) * 50)


def _flat_elements(netlist):
    """(kind, name, nodes, value text) of every element, subcircuits expanded (internal nodes
    and names prefixed by the instance)."""
    flat = []
    for el in netlist.elements:
        if isinstance(el, str):
            continue
        if el.kind != "X":
            flat.append((el.kind, el.name, el.nodes, el.value))
            continue
        sub = netlist.subckts[el.nodes[-1]]
        pins = dict(zip(sub.ports, el.nodes[:-1]))
        for e in sub.elements:
            nodes = tuple(pins.get(n, n if n == "0" else f"{el.name}.{n}") for n in e.nodes)
            flat.append((e.kind, f"{el.name}.{e.name}", nodes, e.value))
    return flat


def dc_state(circuit, zeroed=lambda name: False):
    """The netlist's DC operating point (capacitors open) by modified nodal analysis: the state
    V(x_i)/v_unit, and the condition number of the MNA matrix. V sources named by `zeroed` are
    set to 0 V (to switch single offsets off)."""
    flat = [f for f in _flat_elements(circuit.netlist) if f[0] != "C"]
    names = sorted({n for f in flat for n in f[2]} - {"0"})
    at = {n: k for k, n in enumerate(names)}
    size = len(names) + sum(f[0] in "VE" for f in flat)
    A, rhs = np.zeros((size, size)), np.zeros(size)

    def add(r, c, v):
        if r is not None and c is not None:
            A[r, c] += v

    k = len(names)
    for kind, name, nodes, value in flat:
        a, b = at.get(nodes[0]), at.get(nodes[1])
        if kind == "R":
            g = 1.0 / float(value)
            add(a, a, g), add(b, b, g), add(a, b, -g), add(b, a, -g)
        elif kind == "I":  # DC current from a through the source to b
            i = float(value.split()[1])
            rhs[a] -= i if a is not None else 0.0
            rhs[b] += i if b is not None else 0.0
        else:  # V or E: a branch current k, the row k its voltage law
            add(a, k, 1.0), add(b, k, -1.0), add(k, a, 1.0), add(k, b, -1.0)
            if kind == "V":
                rhs[k] = 0.0 if zeroed(name) else float(value.split()[1])
            else:
                gain = float(value)
                add(k, at.get(nodes[2]), -gain), add(k, at.get(nodes[3]), gain)
            k += 1
    v = np.linalg.solve(A, rhs)
    return np.array([v[at[x]] for x in circuit.state_nodes]) / circuit.design.v_unit, np.linalg.cond(A)


def _steady(rs, b=None):
    return woodbury_solve(rs.D, rs.P, rs.Q, rs.b if b is None else b)


CASES = {
    "factored": (lambda: problem("factored", 8, seed=4), "factored"),
    "crossbar": (lambda: problem("ggn", 8, seed=4), "crossbar"),
    "scaled": (_scaled_problem, "factored"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_asbuilt_steady_state_is_the_netlists_dc_solution(case):
    """Finite gain, tolerances, offsets and bias: asbuilt's steady state against the DC solution
    of the netlist it stands for. Both are direct solves of the same linear circuit: they agree to
    round-off, eps times the MNA matrix's condition number (10x for the solve's own constant)."""
    make, topology = CASES[case]
    p = make()
    d = Design(tol_r=0.03, tol_c=0.03, component_seed=1, opamp=OpAmp(gain=1e4, offset=5e-3, bias=2e-6))
    x_net, cond = dc_state(build(p, topology, d))
    x_ab = _steady(realise(p, topology, d))
    tol = 10 * np.finfo(float).eps * cond * np.abs(x_net).max()
    assert np.abs(x_ab - x_net).max() <= tol
    # Power: the same circuit without offset and bias is far off.
    x_clean = _steady(realise(p, topology, d.with_(opamp=OpAmp(gain=1e4))))
    assert np.abs(x_clean - x_net).max() > 1e3 * tol


def test_cell_offsets_shift_the_state_by_the_single_cell_closed_form():
    """Only the cells' own offsets on: each cell sees J = G_s v_os more current, delta b_i =
    R0 G_s,i v_os,i / v_unit with G_s,i every conductance at its summing node (read from the
    netlist), and the state moves by delta_x = A_eff^-1 delta_b (A_eff: the realised drift)."""
    p = _scaled_problem()
    d = Design(tol_r=0.03, component_seed=2, opamp=OpAmp(gain=1e4, offset=5e-3))
    c = build(p, "factored", d)
    with_cells, _ = dc_state(c, zeroed=lambda name: name.startswith("Vos") and not name.startswith("Voscell"))
    without, _ = dc_state(c, zeroed=lambda name: name.startswith("Vos"))
    sums, G = {f"s{i}": i for i in range(c.n)}, np.zeros(c.n)
    for kind, _, nodes, value in _flat_elements(c.netlist):
        for node in nodes if kind == "R" else ():
            if node in sums:
                G[sums[node]] += 1.0 / float(value)
    v_os = c.record.opamp_offsets["cells"]
    delta_b = d.R0 * G * v_os / d.v_unit  # circuit units (the circuit's b/scale)
    assert np.allclose(c.record.input_errors["op-amp offset cells"], delta_b, rtol=1e-12, atol=0)
    rs = realise(p, "factored", d)
    assert np.allclose(rs.amp_input({"cells": v_os}), c.scale * delta_b, rtol=1e-12, atol=0)
    A = np.diag(rs.D) + rs.P @ rs.Q
    expect = np.linalg.solve(A, c.scale * delta_b)
    assert np.abs((with_cells - without) - expect).max() <= 1e-9 * np.abs(expect).max()


@needs_ngspice
@pytest.mark.parametrize("topology", ["factored", "crossbar"])
@pytest.mark.parametrize("gain", [None, 300.0])
def test_trajectory_and_final_state_match_ngspice(topology, gain):
    """From x0 to the steady state (t = 30: the slowest realised mode has decayed to ~1e-6),
    against ngspice with test_asbuilt's derived bound (ngspice's own transient error, the
    splitting error, the ADC)."""
    d = Design(tol_r=0.03, tol_c=0.03, component_seed=1, opamp=OpAmp(gain=gain, offset=5e-3, bias=2e-6))
    p = problem(KIND[topology], 8, seed=4)
    x0 = np.random.default_rng(2).normal(size=p.n)
    times = np.array([0.25, 1.0, 4.0, 10.0, 30.0])
    ab, ng, bound, _ = asbuilt_against_ngspice(p, topology, d, x0, times, 30.0)
    err = np.abs(ab - ng).max(axis=1)
    assert (err <= bound).all(), f"|asbuilt - ngspice| {err} > bound {bound}"
    # Power: asbuilt of the same chip without offset and bias misses ngspice's final state.
    clean = realise(p, topology, d.with_(opamp=OpAmp(gain=gain)))
    assert np.abs(_steady(clean) - ng[-1]).max() > 10 * bound[-1]


def test_zero_offset_and_bias_change_nothing_and_errors_move_only_b():
    p = problem("factored", 8, seed=4)
    d = Design(tol_r=0.03, tol_c=0.03, component_seed=1)
    zero = d.with_(opamp=OpAmp(offset=0.0, bias=0.0))
    text = build(p, "factored", d).text()
    assert build(p, "factored", zero).text() == text
    assert "Vos" not in text and ".subckt opamp inn out\n" in text and "Ibias" not in text
    rs0, rs_zero = realise(p, "factored", d), realise(p, "factored", zero)
    for f in ("w", "D", "P", "Q", "b"):
        assert np.array_equal(getattr(rs0, f), getattr(rs_zero, f))
    on = d.with_(opamp=ERRORS)
    c, rs = build(p, "factored", on), realise(p, "factored", on)
    for f in ("w", "D", "P", "Q"):
        assert np.array_equal(getattr(rs0, f), getattr(rs, f))
    total = sum(c.record.input_errors.values())
    assert np.allclose(rs.b - rs0.b, c.scale * total, rtol=1e-12, atol=1e-12 * np.abs(rs0.b).max())
    # The map is linear: the offsets plus the bias as its input-referred voltage I_b/G_s give b's shift.
    volts = {g: v + ERRORS.bias / rs.amp.conductance[g] for g, v in c.record.opamp_offsets.items()}
    assert np.allclose(rs.amp_input(volts), rs.b - rs0.b, rtol=1e-10, atol=1e-12 * np.abs(rs0.b).max())
    assert not rs.amp_input({g: np.zeros_like(v) for g, v in volts.items()}).any()


def test_offsets_are_seeded_per_amp_alike_in_netlist_and_values():
    """Same component_seed: the same offset on the same amp in the netlist and the value builder,
    N(0, offset^2) from the stream [component_seed, 1701] in creation order; turning the offsets
    on leaves every tolerance draw as it was."""
    p = problem("ggn", 8, seed=4)  # crossbar: cells, x inverters, summers y, z and their inverters
    base = Design(tol_r=0.03, tol_c=0.02, component_seed=7)
    d = base.with_(opamp=OpAmp(offset=2e-3))
    net = build(p, "crossbar", d)
    val = build(p, "crossbar", d, builder=ValueBuilder)
    sources = {name: float(value.split()[1]) for _, name, _, value in _flat_elements(net.netlist) if name[:3] == "Vos"}
    drawn = {}
    for group, v in val.record.opamp_offsets.items():
        kind, _, label = group.partition(" ")
        grp = val.builder.amp_groups[group]
        names = {
            "cells": [f"cell{i}" for i in range(len(v))],
            "summers": [f"{label}_{k}" for k in range(len(v))],
            "inverters": [f"inv{label}_{j}" for j in (grp.index if grp.index is not None else [])],
        }[kind]
        drawn.update({f"Vos{name}": x for name, x in zip(names, v.tolist())})
    assert sources == drawn and len(drawn) == net.record.amplifiers
    stream = np.concatenate(list(val.record.opamp_offsets.values()))
    assert np.array_equal(stream, 2e-3 * np.random.default_rng([7, 1701]).standard_normal(stream.size))
    other = build(p, "crossbar", d.with_(component_seed=8), builder=ValueBuilder)
    assert not np.array_equal(np.concatenate(list(other.record.opamp_offsets.values())), stream)
    plain = build(p, "crossbar", base)
    assert all(np.array_equal(a, b) for a, b in zip(plain.record.resistors, net.record.resistors))
    assert plain.record.capacitors == net.record.capacitors
    # The draws are N(0, sigma^2): a wide circuit gives enough of them for a KS test.
    wide = build(problem("factored", 40, seed=1), "factored", d, builder=ValueBuilder)
    z = np.concatenate(list(wide.record.opamp_offsets.values())) / 2e-3
    assert stats.kstest(z, "norm").pvalue > 1e-4


def test_report_lists_each_source_as_its_measured_shift():
    """Each listed contribution against asbuilt's steady state with only that source on (the
    bias by the design, each offset group through the realised map), largest first."""
    p = problem("factored", 8, seed=4)
    base = Design(tol_r=0.03, component_seed=1)
    d = base.with_(opamp=ERRORS)
    x_star = np.linalg.solve(p.dense().A, p.b)
    c = build(p, "factored", d)
    rep = component_report(c, p, 30.0, x_star=x_star)
    listed = rep["input_errors"]["sources"]
    assert list(listed.values()) == sorted(listed.values(), reverse=True)
    assert set(listed) == {"op-amp bias"} | {f"op-amp offset {g}" for g in c.record.opamp_offsets}
    norm = np.linalg.norm(x_star)

    def mean(design):
        return transition(p, "factored", design, 0.0)[1].mean

    x_clean = mean(base)
    bias_only = np.linalg.norm(mean(base.with_(opamp=OpAmp(bias=ERRORS.bias))) - x_clean) / norm
    assert listed["op-amp bias"] == pytest.approx(bias_only, rel=1e-9)
    rs = realise(p, "factored", d)
    rs0 = realise(p, "factored", base)
    for group, v in c.record.opamp_offsets.items():
        alone = _steady(rs0, rs0.b + rs.amp_input({group: v})) - x_clean
        assert listed[f"op-amp offset {group}"] == pytest.approx(np.linalg.norm(alone) / norm, rel=1e-9)
    together = np.linalg.norm(mean(d) - x_clean) / norm
    assert rep["input_errors"]["total_steady_state_rel_error"] == pytest.approx(together, rel=1e-9)
    assert "op-amp bias" in format_report(rep)
    clean = component_report(build(p, "factored", base), p, 30.0, x_star=x_star)
    assert clean["input_errors"]["sources"] == {} and "input errors: none" in format_report(clean)
    dense = component_report(build(problem("dense", 4, seed=1), "dense", d), p, 30.0, x_star=x_star[:4])
    assert dense["input_errors"]["opamp_errors_unmodelled"]


def test_amp_input_names_bad_requests():
    p = problem("factored", 8, seed=4)
    with pytest.raises(DesignError, match="clean"):
        realise(p, "factored").amp_input({"cells": np.zeros(8)})
    rs = realise(p, "factored", Design(opamp=ERRORS))
    with pytest.raises(DesignError, match="no op-amp group 'summers q'"):
        rs.amp_input({"summers q": np.zeros(2)})
    with pytest.raises(DesignError, match="8 amps"):
        rs.amp_input({"cells": np.zeros(3)})


def test_offsets_are_not_counted_as_open_cell_error():
    """The open-cell check compares the nominal circuit with the exact solution: offsets, bias and
    DAC errors sit in the as-built b, so the nominal circuit must drop them, or a quantised design
    with 1 mV offsets fails as if its open cells moved the steady state (they move nothing here)."""
    rng = np.random.default_rng(0)
    U = rng.standard_normal((60, 8)) * 0.01
    U[:, -1] = 1e-12  # a column below R0/r_max: dropped, which runs the open-cell check
    p = FactoredProblem(U, 0.01, rng.standard_normal(60) * 1e-3)
    design = Design(bits_r=16, r_max=1e9, open_error_max=1e-2, opamp=OpAmp(offset=1e-2, bias=1e-9))
    clean = realise(p, "factored", Design(bits_r=16, r_max=1e9, open_error_max=1e-2))
    shifted = realise(p, "factored", design)
    assert np.abs(shifted.b - clean.b).max() > 2 * np.abs(clean.b).max()  # the offsets dominate b
