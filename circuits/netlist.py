"""A small element-list model of a SPICE netlist, and its emission as text.

Why not PySpice objects: building a Circuit costs ~30 us per element here (measured: 20k
resistors 0.60 s vs 0.015 s as text), and the N=1000, m=64 factored array has 128k resistors,
which alone would eat the 5 s budget of a whole solve (docs/BENCHMARKS.md: 6.8 s for PySpice vs
1.65 s here at 137k elements). The text is plain SPICE, so PySpice users can still read it.

Safety: a netlist can carry a ``.control`` block, which runs shell commands. Everything that
reaches the text goes through one of the checks below: names must match NAME_RE, numbers must be
finite floats (emitted with repr, which never produces a newline or a SPICE scale suffix), the
title and comments are restricted to printable ASCII without newlines and cannot start a dot
command. There is no method that appends a free-form line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from spu.core.errors import DesignError
from spu.core.spice_number import spice_number

NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_TEXT_RE = re.compile(r"^[ -~]*$")  # printable ASCII, no control characters (no newline, no CR)
MAX_TEXT = 200


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DesignError(f"invalid netlist name {name!r}: use 1-64 letters, digits or underscores")
    return name


def check_text(what: str, text: str) -> str:
    if not isinstance(text, str) or not _TEXT_RE.match(text):
        raise DesignError(f"{what} must be printable ASCII on one line, got {text!r}")
    if len(text) > MAX_TEXT:
        raise DesignError(f"{what} is longer than {MAX_TEXT} characters")
    if text.lstrip().startswith("."):
        # A comment is emitted after '* ' or ' $ ', so this is belt and braces, as the module doc promises.
        raise DesignError(f"{what} must not start with '.', got {text!r}")
    return text


def num(value) -> str:
    """A number as SPICE text: finite float, full precision."""
    return spice_number(value, "netlist value")


@dataclass(frozen=True)
class Element:
    kind: str  # SPICE letter: R C L E G I V X A (A: XSPICE code model; nodes are current outputs)
    name: str
    nodes: tuple[str, ...]
    value: str  # already-checked value text (number, model or source spec)
    comment: str | None = None
    # XSPICE port type of an A element: "id" (a current from ground into each node) or "vd" (a
    # voltage across each pair of nodes, nodes listed plus then minus).
    port: str = "id"


@dataclass(frozen=True)
class Subckt:
    name: str
    ports: tuple[str, ...]
    elements: tuple[Element, ...]


class Netlist:
    def __init__(self, title: str):
        # check_text refuses a leading '.': ngspice reads line 1 as the title whatever it holds,
        # but other tools (or an .include of this file) may not.
        title = check_text("title", title).strip()
        self.title = title or "thermospice"
        self.elements: list[Element | str] = []  # str entries are (checked) comment lines
        self.subckts: dict[str, Subckt] = {}
        self.models: dict[str, str] = {}  # name -> checked parameter text of a `.model` line
        self.options: dict[str, str] = {}
        self.tran: tuple[float, float, float] | None = None
        self.uic = False
        self.saves: list[str] = []
        self.prints: list[str] = []
        self.ics: list[str] = []  # checked `v(node)=value` items of the .ic lines
        self._names: set[str] = set()

    # -- elements -------------------------------------------------------------------------
    def _add(self, kind, name, nodes, value, comment=None, port="id") -> Element:
        full = kind + check_name(name)
        if full.upper() in self._names:
            raise DesignError(f"duplicate element name {full}")
        nodes = tuple(check_name(n) for n in nodes)
        if comment is not None:
            check_text("comment", comment)
        self._names.add(full.upper())  # only once every check passed: a rejected element leaves no trace
        el = Element(kind, full, nodes, value, comment, port)
        self.elements.append(el)
        return el

    def comment(self, text: str) -> None:
        self.elements.append(check_text("comment", text))

    def R(self, name, a, b, ohms, comment=None):
        value = num(ohms)  # first: a non-number must raise DesignError, not float()'s ValueError/TypeError
        if not float(value) > 0:
            raise DesignError(f"resistor R{name} must be > 0 ohm, got {ohms}")
        return self._add("R", name, (a, b), value, comment)

    def C(self, name, a, b, farads, ic=None, comment=None):
        value = num(farads)
        if not float(value) > 0:
            raise DesignError(f"capacitor C{name} must be > 0 F, got {farads}")
        value += "" if ic is None else f" ic={num(ic)}"
        return self._add("C", name, (a, b), value, comment)

    def L(self, name, a, b, henries, ic=None, comment=None):
        """Inductor from a to b; ic is the initial current (A) flowing a -> b (used with uic)."""
        value = num(henries)
        if not float(value) > 0:
            raise DesignError(f"inductor L{name} must be > 0 H, got {henries}")
        value += "" if ic is None else f" ic={num(ic)}"
        return self._add("L", name, (a, b), value, comment)

    def E(self, name, out_p, out_n, in_p, in_n, gain, comment=None):
        return self._add("E", name, (out_p, out_n, in_p, in_n), num(gain), comment)

    def G(self, name, out_p, out_n, in_p, in_n, gm, comment=None):
        """Current gm*V(in_p, in_n) flowing out of out_p, through the source, into out_n."""
        return self._add("G", name, (out_p, out_n, in_p, in_n), num(gm), comment)

    def E_limit(self, name, out_p, out_n, in_p, in_n, knee, level, comment=None):
        """Saturating VCVS: V(out) = level * clip(V(in_p, in_n) / knee, -1, 1) (a two-point TABLE)."""
        return self._add("E", name, (out_p, out_n), self._limit(in_p, in_n, knee, level), comment)

    def G_limit(self, name, out_p, out_n, in_p, in_n, knee, level, comment=None):
        """Saturating VCCS: level * clip(V(in_p, in_n) / knee, -1, 1) amperes from out_p through the
        source into out_n."""
        return self._add("G", name, (out_p, out_n), self._limit(in_p, in_n, knee, level), comment)

    @staticmethod
    def _limit(in_p, in_n, knee, level) -> str:
        k, v = num(knee), num(level)
        if not (float(k) > 0 and float(v) > 0):
            raise DesignError(f"a limiter needs knee and level > 0, got {knee!r}, {level!r}")
        a, b = check_name(in_p), check_name(in_n)
        return f"TABLE {{V({a},{b})}} = (-{k},-{v}) ({k},{v})"

    def V(self, name, p, n, dc, comment=None):
        return self._add("V", name, (p, n), f"DC {num(dc)}", comment)

    def I(self, name, p, n, dc, noise: tuple[float, float] | None = None, comment=None):
        """Current source; noise=(hold_s, sigma_a) adds a seeded Gaussian TRRANDOM held for hold_s."""
        value = f"DC {num(dc)}"
        if noise is not None:
            hold, sigma = noise
            value += f" TRRANDOM(2 {num(hold)} 0 {num(sigma)} {num(dc)})"
        return self._add("I", name, (p, n), value, comment)

    def table_currents(self, name: str, nodes, file: str, scales, comment=None):
        """XSPICE `filesource`: current into each node from column k+1 of a table file (column 0 is
        the time in seconds), linearly interpolated, without breakpoints (circuits/noise_table.py).
        `file` is a fixed name the caller writes beside the netlist, checked like an element name."""
        nodes = tuple(nodes)
        if not nodes or len(nodes) != len(scales):
            raise DesignError(f"table source {name}: {len(nodes)} nodes but {len(scales)} scales")
        return self._filesource(name, nodes, file, scales, comment, "id")

    def table_voltages(self, name: str, pairs, file: str, scales, comment=None):
        """XSPICE `filesource` as voltage sources: V(plus_k) - V(minus_k) = column k+1 of the table
        times scales[k], linearly interpolated (the time column and the file as in table_currents)."""
        pairs = tuple(pairs)
        if not pairs or len(pairs) != len(scales) or any(len(p) != 2 for p in pairs):
            raise DesignError(f"table source {name}: {len(pairs)} node pairs but {len(scales)} scales")
        return self._filesource(name, [n for p in pairs for n in p], file, scales, comment, "vd")

    def _filesource(self, name, nodes, file, scales, comment, port):
        stem, dot, ext = file.partition(".")
        if ext != "txt" or not NAME_RE.match(stem):
            raise DesignError(f"table file name {file!r} must be NAME.txt (letters, digits, underscores)")
        model = "tab" + check_name(name)
        zeros = " ".join("0" for _ in scales)
        amps = " ".join(num(v) for v in scales)
        params = (
            f'file="{file}" amploffset=[{zeros}] amplscale=[{amps}] timeoffset=0 '
            "timescale=1 timerelative=false amplstep=false"
        )
        el = self._add("A", name, nodes, model, comment, port)
        self.models[model] = params
        return el

    def X(self, name, nodes, subckt: str, comment=None):
        if subckt not in self.subckts:
            raise DesignError(f"unknown subcircuit {subckt!r}")
        if len(nodes) != len(self.subckts[subckt].ports):
            raise DesignError(f"subcircuit {subckt} takes {len(self.subckts[subckt].ports)} nodes")
        return self._add("X", name, tuple(nodes) + (subckt,), "", comment)

    def subckt(self, name: str, ports, build) -> None:
        """Define a subcircuit; `build(sub)` adds elements to a scratch Netlist."""
        check_name(name)
        scratch = Netlist(name)
        build(scratch)
        self.subckts[name] = Subckt(
            name, tuple(check_name(p) for p in ports), tuple(e for e in scratch.elements if isinstance(e, Element))
        )

    # -- analysis -------------------------------------------------------------------------
    def option(self, key: str, value) -> None:
        """`.options key=value`: value is an int (emitted as an integer), a float or a name."""
        if isinstance(value, str):
            text = check_name(value)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            text = str(int(value))  # not num(): ngspice reads `seed=1e+17` as 1, not as 10**17
        else:
            text = num(value)
        self.options[check_name(key)] = text

    def transient(self, tstep: float, tstop: float, tmax: float, uic: bool = True) -> None:
        self.tran = (float(num(tstep)), float(num(tstop)), float(num(tmax)))
        self.uic = uic

    def initial(self, instance: str, node: str, volts: float) -> None:
        """`.ic v(X<instance>.<node>)=volts`: the initial voltage of a node inside a subcircuit
        instance (with `uic`, ngspice starts there instead of at 0 V)."""
        self.ics.append(f"v(X{check_name(instance)}.{check_name(node)})={num(volts)}")

    def save(self, nodes) -> None:
        self.saves = [check_name(n) for n in nodes]

    def print_tran(self, nodes) -> None:
        """`.print tran v(node) ...`: without it, plain `ngspice -b FILE.cir` runs no simulation
        ("No .plot, .print, or .fourier lines; no simulations run", exit 1). ngspice ignores .print
        when it writes a raw file (-r), so it costs the runner nothing."""
        self.prints = [check_name(n) for n in nodes]

    # -- emission -------------------------------------------------------------------------
    @staticmethod
    def _line(el: Element) -> str:
        if el.kind == "A":
            # Long port lists are wrapped on `+` continuation lines, 16 ports each.
            if el.port == "vd":
                ports = [f"%vd({p} {n})" for p, n in zip(el.nodes[::2], el.nodes[1::2])]
            else:
                ports = [f"%id(0 {n})" for n in el.nodes]
            rows = [" ".join(ports[i : i + 16]) for i in range(0, len(ports), 16)]
            body = "\n+ ".join(rows)
            return f"{el.name} [{body}] {el.value}" + (f" $ {el.comment}" if el.comment else "")
        parts = [el.name, *el.nodes]
        if el.value:
            parts.append(el.value)
        line = " ".join(parts)
        return line + (f" $ {el.comment}" if el.comment else "")

    def text(self) -> str:
        out = [self.title]
        for sub in self.subckts.values():
            out.append(f".subckt {sub.name} {' '.join(sub.ports)}")
            out.extend(self._line(e) for e in sub.elements)
            out.append(".ends")
        for el in self.elements:
            out.append(f"* {el}" if isinstance(el, str) else self._line(el))
        for name, params in self.models.items():
            words = params.split(" ")
            out.append(
                f".model {name} filesource ("
                + "\n+ ".join(" ".join(words[i : i + 16]) for i in range(0, len(words), 16))
                + ")"
            )
        if self.options:
            out.append(".options " + " ".join(f"{k}={v}" for k, v in self.options.items()))
        if self.saves:
            # ngspice batch mode accepts long .save lines; wrap anyway to keep the file readable.
            for i in range(0, len(self.saves), 16):
                out.append(".save " + " ".join(f"v({n})" for n in self.saves[i : i + 16]))
        for i in range(0, len(self.prints), 16):
            out.append(".print tran " + " ".join(f"v({n})" for n in self.prints[i : i + 16]))
        for i in range(0, len(self.ics), 8):
            out.append(".ic " + " ".join(self.ics[i : i + 8]))
        if self.tran is not None:
            tstep, tstop, tmax = self.tran
            out.append(f".tran {num(tstep)} {num(tstop)} 0 {num(tmax)}" + (" uic" if self.uic else ""))
        out.append(".end")
        return "\n".join(out) + "\n"

    def counts(self) -> dict[str, int]:
        """Number of elements per SPICE kind, subcircuit contents expanded."""
        counts: dict[str, int] = {}
        for el in self.elements:
            if not isinstance(el, Element):
                continue
            if el.kind == "X":
                for sub_el in self.subckts[el.nodes[-1]].elements:
                    counts[sub_el.kind] = counts.get(sub_el.kind, 0) + 1
            else:
                counts[el.kind] = counts.get(el.kind, 0) + 1
        return counts
