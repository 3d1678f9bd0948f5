"""Nothing a user passes reaches a netlist unchecked.

A SPICE netlist is code: a `.control` block runs `shell` commands, `.include` reads other files, a
newline in a title or a name starts a new line of our choosing. These tests check the emitter
(circuits.netlist), the builder (circuits.topologies.build) and the command line, and then check
every netlist the code generates, over a randomized set of problems and designs, against an
allow-list of what may appear in it.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from analysis.cli import main
from circuits.circuit import NGSPICE_SEED_MAX
from circuits.design import Design, OpAmp
from circuits.netlist import MAX_TEXT, Netlist
from circuits.topologies import TOPOLOGIES, build
from spu.core.errors import DesignError, ProblemError, ThermospiceError
from spu.core.problems import DenseProblem, FactoredProblem, GGNProblem
from spu.core.softmax import softmax, softmax_ce_hessian

ALLOWED_DOT = {".subckt", ".ends", ".options", ".save", ".print", ".tran", ".end", ".model"}
FORBIDDEN = re.compile(r"\.control|\.endc|\bshell\b|\.include|\.inc\b|\.lib\b|\bsource\b|\bexec\b|`", re.IGNORECASE)
ELEMENT_LETTERS = set("RCLEGIVXA")
NAME = r"[A-Za-z0-9_]{1,64}"
NUMBER = r"-?(?:\d+\.\d*(?:e[+-]?\d+)?|\d+e[+-]?\d+|\d+)"  # what repr(float) / str(int) produce
NUM_RE = re.compile(rf"^{NUMBER}$")
# The value part of each element kind, after the nodes (X lines end with the subcircuit name).
VALUE_RE = {
    "R": re.compile(rf"^{NUMBER}$"),
    "C": re.compile(rf"^{NUMBER}(?: ic={NUMBER})?$"),
    "L": re.compile(rf"^{NUMBER}(?: ic={NUMBER})?$"),
    "E": re.compile(rf"^{NUMBER}$"),
    "G": re.compile(rf"^{NUMBER}$"),
    "V": re.compile(rf"^DC {NUMBER}$"),
    "I": re.compile(rf"^DC {NUMBER}(?: TRRANDOM\(2 {NUMBER} 0 {NUMBER} {NUMBER}\))?$"),
    "X": re.compile(rf"^{NAME}$"),
}
NODES = {"R": 2, "C": 2, "L": 2, "E": 4, "G": 4, "V": 2, "I": 2}
# The noise table source (circuits/noise_table.py): current outputs into named nodes, and its model.
TABLE_RE = re.compile(rf"^A{NAME} \[%id\(0 {NAME}\)(?: %id\(0 {NAME}\))*\] tab{NAME}$")
MODEL_RE = re.compile(
    rf'^\.model tab{NAME} filesource \(file="{NAME}\.txt" amploffset=\[0(?: 0)*\] '
    rf"amplscale=\[{NUMBER}(?: {NUMBER})*\] timeoffset=0 timescale=1 "
    r"timerelative=false amplstep=false\)$"
)

INJECTIONS = [
    "x\n.control\nshell touch /tmp/thermospice_pwned\n.endc",
    "x\r\n.control\r\nshell id\r\n.endc",
    "x\r.include /etc/passwd",
    "ok\n.include /etc/passwd",
    ".control",
    ".include /etc/passwd",
    "caf\u00e9",
    "x\u2028.control",  # unicode line separator
    "x\x00.control",
    "tab\there",
    "x" * (MAX_TEXT + 1),
    "\x1b[31mred",
]


# -- the emitter ----------------------------------------------------------------------------------
@pytest.mark.parametrize("title", INJECTIONS)
def test_netlist_title_rejected(title):
    with pytest.raises(DesignError, match="title"):
        Netlist(title)


@pytest.mark.parametrize("title", INJECTIONS)
def test_build_title_rejected(title):
    p = DenseProblem(np.eye(2), np.ones(2))
    with pytest.raises(DesignError, match="title"):
        build(p, "dense", title=title)


def test_harmless_titles_accepted_and_stay_on_line_one():
    for title in ["my SPU; n=2 $ (test) * + - = ,", "*", "+ starts like a continuation", "x" * MAX_TEXT]:
        nl = Netlist(title)
        text = nl.text()
        assert text.splitlines()[0] == title.strip()
        assert text.count("\n") == 2  # title, .end


@pytest.mark.parametrize("text", INJECTIONS[:-2] + ["a\nb"])
def test_comments_rejected(text):
    nl = Netlist("t")
    with pytest.raises(DesignError):
        nl.comment(text)
    with pytest.raises(DesignError):
        nl.R("1", "a", "b", 1e3, comment=text)


BAD_NAMES = [
    "a b",
    "a\nb",
    "a\n.control",
    "a\r",
    "",
    "x" * 65,
    "a.b",
    "a-b",
    "a(b)",
    "v(x)",
    "caf\u00e9",
    "a;b",
    "a$b",
    "a*b",
    "a=b",
    "a,b",
    7,
    None,
]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_names_rejected_everywhere(bad):
    nl = Netlist("t")
    with pytest.raises(DesignError):
        nl.R(bad, "a", "b", 1e3)  # element name
    with pytest.raises(DesignError):
        nl.R("1", bad, "b", 1e3)  # node name
    with pytest.raises(DesignError):
        nl.E("1", "a", "0", bad, "0", 2.0)
    with pytest.raises(DesignError):
        nl.I("1", "0", bad, 0.0, noise=(1e-8, 1e-3))
    with pytest.raises(DesignError):
        nl.save(["x0", bad])
    with pytest.raises(DesignError):
        nl.print_tran([bad])
    with pytest.raises(DesignError):
        nl.option(bad, 1.0)  # option key
    with pytest.raises(DesignError):
        nl.subckt(bad, ("a",), lambda sub: None)  # subcircuit name
    with pytest.raises(DesignError):
        nl.subckt("ok", (bad,), lambda sub: None)  # subcircuit port
    if isinstance(bad, str) and bad:
        with pytest.raises(DesignError):
            nl.option("method", bad)  # option value given as text
    assert nl.text() == "t\n.end\n"  # nothing half-added
    nl.R("1", "a", "b", 1e3)  # and the rejected names are still free
    nl.E("1", "a", "0", "b", "0", 2.0)


def test_duplicate_and_unknown_rejected():
    nl = Netlist("t")
    nl.R("1", "a", "b", 1.0)
    with pytest.raises(DesignError, match="duplicate"):
        nl.R("1", "c", "d", 2.0)
    with pytest.raises(DesignError, match="duplicate"):
        nl.R("1".upper(), "c", "d", 2.0)
    with pytest.raises(DesignError, match="unknown subcircuit"):
        nl.X("1", ("a", "b"), "nosuch")


BAD_VALUES = [
    float("nan"),
    float("inf"),
    -float("inf"),
    "nan",
    "inf",
    "1k",
    "1\n.control",
    "1 2",
    None,
    [1.0],
    "",
    complex(1, 1),
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
def test_values_rejected_everywhere(bad):
    nl = Netlist("t")
    cases = [
        lambda: nl.R("1", "a", "b", bad),
        lambda: nl.C("1", "a", "b", bad),
        lambda: nl.L("1", "a", "b", bad),
        lambda: nl.E("1", "a", "0", "b", "0", bad),
        lambda: nl.G("1", "a", "0", "b", "0", bad),
        lambda: nl.V("1", "a", "0", bad),
        lambda: nl.I("1", "0", "a", bad),
        lambda: nl.I("2", "0", "a", 0.0, noise=(bad, 1e-3)),
        lambda: nl.I("3", "0", "a", 0.0, noise=(1e-8, bad)),
        lambda: nl.transient(bad, 1e-6, 1e-8),
        lambda: nl.transient(1e-8, bad, 1e-8),
        lambda: nl.transient(1e-8, 1e-6, bad),
    ]
    if bad is not None:  # ic=None means "no initial condition"
        cases.append(lambda: nl.C("2", "a", "b", 1e-9, ic=bad))
        cases.append(lambda: nl.L("2", "a", "b", 1e-6, ic=bad))
    if not isinstance(bad, str):  # a str option value is a name, checked by the name tests
        cases.append(lambda: nl.option("reltol", bad))
    for k, case in enumerate(cases):
        with pytest.raises(DesignError):
            case()
            pytest.fail(f"case {k} accepted {bad!r}")
    assert nl.text() == "t\n.end\n"


@pytest.mark.parametrize("bad", [0.0, -1.0, -1e-300])
def test_non_positive_components_rejected(bad):
    nl = Netlist("t")
    with pytest.raises(DesignError, match="> 0"):
        nl.R("1", "a", "b", bad)
    with pytest.raises(DesignError, match="> 0"):
        nl.C("1", "a", "b", bad)


def test_numbers_are_plain_decimal_text():
    """repr(float): never a SPICE scale suffix ('1m' is milli, '1meg' mega) or locale formatting."""
    nl = Netlist("t")
    for k, v in enumerate(
        [
            1e-3,
            1e6,
            1e-300,
            1.7976931348623157e308,
            5e-324,
            -0.0,
            0.1 + 0.2,
            np.float32(0.1),
            np.int64(3),
            12345678901234567890,
        ]
    ):
        nl.V(f"v{k}", "a", "0", v)
    for line in nl.text().splitlines()[1:-1]:
        value = line.split()[-1]
        assert NUM_RE.match(value), line
        assert np.isfinite(float(value))


def test_integer_options_are_integers():
    nl = Netlist("t")
    nl.option("seed", 12345678901)
    nl.option("reltol", 1e-6)
    nl.option("itl4", np.int32(100))
    assert ".options seed=12345678901 reltol=1e-06 itl4=100" in nl.text()


# -- seeds -----------------------------------------------------------------------------------------
def _seed_of(text: str) -> int | None:
    opts = [ln for ln in text.splitlines() if ln.startswith(".options")]
    m = re.search(r"\bseed=(\S+)", " ".join(opts))
    if m is None:
        return None
    assert re.fullmatch(r"\d+", m.group(1)), f"seed is not an integer: {m.group(1)!r}"
    return int(m.group(1))


@pytest.mark.parametrize("seed", [0, 1, 2, 12345, 2**31 - 2, 2**31 - 1, 2**31, 2**32 + 5, 10**17, np.int64(99)])
def test_seed_emitted_as_integer_in_ngspice_range(seed):
    p = DenseProblem(np.array([[2.0, -0.5], [-0.5, 1.0]]), np.array([1.0, -1.0]))
    s = _seed_of(build(p, "dense", kappa0=0.1, t=1.0, seed=seed, noise="held").text())
    assert 1 <= s <= NGSPICE_SEED_MAX  # ngspice 39 skips seed=0 and seeds >= 2**31
    if 1 <= int(seed) < NGSPICE_SEED_MAX:
        assert s == int(seed)  # ordinary seeds are written as they are


@pytest.mark.parametrize("seed", [-1, 1.5, 2.0, "7", True, float("nan")])
def test_bad_seed_rejected(seed):
    p = DenseProblem(np.eye(2), np.ones(2))
    with pytest.raises(DesignError, match="seed"):
        build(p, "dense", kappa0=0.1, seed=seed)


def test_no_seed_no_option():
    p = DenseProblem(np.eye(2), np.ones(2))
    assert _seed_of(build(p, "dense", kappa0=0.1).text()) is None


# -- malicious input files -------------------------------------------------------------------------
def test_malicious_npy_cannot_inject(tmp_path, capsys):
    """A .npy of strings (or objects) never becomes netlist text: values must be numbers."""
    b = tmp_path / "b.npy"
    np.save(b, np.ones(2))
    payloads = {
        "strings.npy": np.array([["1\n.control\nshell id\n.endc", "0"], ["0", "1"]]),
        "bytes.npy": np.array([[b"1\n.include /etc/passwd", b"0"], [b"0", b"1"]]),
    }
    for name, arr in payloads.items():
        np.save(tmp_path / name, arr)
    np.save(tmp_path / "objects.npy", np.array([["1\n.control", 0], [0, 1]], dtype=object), allow_pickle=True)
    (tmp_path / "text.txt").write_text("1 0\n.control 1\n")
    (tmp_path / "text.csv").write_text("1,0\n0,1\n.endc\n")
    for name in ["strings.npy", "bytes.npy", "objects.npy", "text.txt", "text.csv"]:
        out = tmp_path / f"{name}.cir"
        rc = main(["netlist", "--A", str(tmp_path / name), "--b", str(b), "-o", str(out)])
        err = capsys.readouterr().err
        assert rc != 0 and not out.exists(), name
        assert err.count("\n") == 1 and "Traceback" not in err
    # The same strings handed to the problem types directly.
    with pytest.raises(ProblemError):
        DenseProblem(payloads["strings.npy"], np.ones(2))
    with pytest.raises(ProblemError):
        FactoredProblem(np.array([["1\n.control"], ["2"]]), 1.0, np.ones(2))


def test_cli_title_injection_rejected(tmp_path, capsys):
    A, b = tmp_path / "A.npy", tmp_path / "b.npy"
    np.save(A, np.eye(2))
    np.save(b, np.ones(2))
    for title in INJECTIONS:
        out = tmp_path / "t.cir"
        rc = main(["netlist", "--A", str(A), "--b", str(b), "--title", title, "-o", str(out)])
        err = capsys.readouterr().err
        assert rc != 0 and not out.exists(), repr(title)
        assert "title" in err and err.count("\n") == 1 and "Traceback" not in err


# -- every generated netlist against the allow-list ------------------------------------------------
def check_netlist_text(text: str) -> dict:
    """Assert `text` contains only what the emitter may produce; return counts of what it saw."""
    assert text.endswith(".end\n")
    assert "\r" not in text and "\t" not in text and "\x00" not in text
    assert text.isascii()
    lines = text.split("\n")[:-1]
    title, raw_body = lines[0], lines[1:]
    # `+` continuation lines (long port and parameter lists) belong to the table source and its model.
    body: list[str] = []
    for ln in raw_body:
        if ln.startswith("+ "):
            assert body and (body[-1].startswith("A") or body[-1].startswith(".model")), ln
            assert not FORBIDDEN.search(ln), ln
            body[-1] += " " + ln[2:]
        else:
            body.append(ln)
    assert title and not title.startswith(".")
    assert not FORBIDDEN.search(title)
    seen = {"dot": set(), "elements": 0, "comments": 0}
    depth = 0
    for ln in body:
        assert ln == ln.strip() and ln, f"blank or padded line {ln!r}"
        assert not FORBIDDEN.search(ln), ln
        head = ln.split()[0]
        if ln.startswith("*"):
            seen["comments"] += 1
            continue
        if ln.startswith("."):
            assert head.lower() in ALLOWED_DOT, f"dot-command {head!r} not allowed: {ln!r}"
            seen["dot"].add(head.lower())
            if head == ".subckt":
                depth += 1
                assert re.fullmatch(rf"\.subckt {NAME}( {NAME})+", ln), ln
            elif head == ".ends":
                depth -= 1
                assert ln == ".ends"
            elif head == ".options":
                for kv in ln.split()[1:]:
                    assert re.fullmatch(rf"{NAME}=(?:{NUMBER}|{NAME})", kv), kv
            elif head in (".save", ".print"):
                rest = ln.split()[1:]
                if head == ".print":
                    assert rest[0] == "tran"
                    rest = rest[1:]
                assert rest and all(re.fullmatch(rf"v\({NAME}\)", tok) for tok in rest), ln
            elif head == ".tran":
                assert re.fullmatch(rf"\.tran {NUMBER} {NUMBER} 0 {NUMBER}( uic)?", ln), ln
            elif head == ".model":
                assert MODEL_RE.fullmatch(ln), ln
            elif head == ".end":
                assert ln == ".end" and ln is body[-1]
            continue
        # An element line: NAME NODES VALUE [$ comment]
        assert ln[0] in ELEMENT_LETTERS, f"line does not start with an element letter: {ln!r}"
        seen["elements"] += 1
        code, _, comment = ln.partition(" $ ")
        assert not comment or (comment.isascii() and "\n" not in comment)
        toks = code.split()
        assert re.fullmatch(NAME, toks[0]), toks[0]
        kind = toks[0][0]
        if kind == "X":
            assert all(re.fullmatch(NAME, t) for t in toks[1:]), ln
            continue
        if kind == "A":
            assert TABLE_RE.fullmatch(code), ln
            continue
        k = NODES[kind]
        assert all(re.fullmatch(NAME, t) for t in toks[1 : 1 + k]), ln
        value = " ".join(toks[1 + k :])
        assert VALUE_RE[kind].fullmatch(value), f"bad value {value!r} in {ln!r}"
        for num in re.findall(NUMBER, value):
            assert np.isfinite(float(num))
    assert depth == 0
    assert {".tran", ".end", ".save", ".print", ".options"} <= seen["dot"]
    return seen


def _random_case(rng: np.random.Generator):
    topology = str(rng.choice(TOPOLOGIES))
    n = int(rng.integers(1, 7))
    m = int(rng.integers(1, 5))
    lam = float(rng.uniform(0.05, 2.0))
    b = rng.uniform(-1, 1, n) * (0 if rng.random() < 0.1 else 1)  # b = 0 leaves the DACs out
    if topology in ("ideal", "dense"):
        M = rng.uniform(-1, 1, (n, n))
        problem = DenseProblem(M @ M.T / max(n, 1) + lam * np.eye(n), b)
    elif topology == "factored" and rng.random() < 0.5:
        problem = FactoredProblem(rng.uniform(-1, 1, (n, m)), lam, b)
    else:
        J = rng.uniform(-1, 1, (m, n))
        if rng.random() < 0.5:
            H = softmax_ce_hessian([softmax(rng.standard_normal(m))])  # one softmax-CE block
        else:
            S = rng.uniform(-1, 1, (m, m))
            H = S @ S.T
        problem = GGNProblem(J, H, lam, b)
    design = Design(
        bits_r=None if rng.random() < 0.5 else int(rng.integers(6, 16)),
        bits_dac=None if rng.random() < 0.5 else int(rng.integers(6, 16)),
        tol_r=float(rng.choice([0.0, 0.01])),
        tol_c=float(rng.choice([0.0, 0.02])),
        component_seed=int(rng.integers(0, 1000)),
        opamp=[OpAmp(), OpAmp(gain=1e5), OpAmp(gain=1e5, gbw=1e8)][int(rng.integers(0, 3))],
        temperature=None if rng.random() < 0.5 else float(rng.uniform(0, 400)),
        r_min=1.0,
    )
    kwargs = dict(
        x0=rng.uniform(-1, 1, problem.n),
        kappa0=float(rng.choice([0.0, 0.01, 0.3])),
        t=float(rng.uniform(0.1, 60)),
        seed=None if rng.random() < 0.3 else int(rng.integers(0, 2**40)),
        points=int(rng.integers(2, 500)),
        noise=str(rng.choice(["table", "held"])),
    )
    return problem, topology, design, kwargs


def test_every_generated_netlist_passes_the_allow_list():
    rng = np.random.default_rng(20240513)
    kinds = set()
    n_built = 0
    for _ in range(150):
        problem, topology, design, kwargs = _random_case(rng)
        try:
            circuit = build(problem, topology, design, **kwargs)
        except ThermospiceError as e:
            # Quantisation may zero a row, or a tiny entry may fall outside [r_min, r_max]: a clear
            # error is fine, anything else is not.
            assert "r_max" in str(e) or "r_min" in str(e) or "positive" in str(e), e
            continue
        text = circuit.text()
        seen = check_netlist_text(text)
        seed = _seed_of(text)
        noisy = kwargs["kappa0"] > 0 or bool(design.temperature)
        held = noisy and circuit.noise_mode == "held"
        if kwargs["seed"] is None or not held:
            assert seed is None  # a noise table carries its own seed
        else:
            assert 1 <= seed <= NGSPICE_SEED_MAX
        assert ("TRRANDOM" in text) == held
        assert ("filesource" in text) == (noisy and not held)
        files = circuit.files()
        assert (len(files) > 0) == (noisy and not held)
        assert all(re.fullmatch(r"noise\d+\.txt", f) for f in files)
        # The netlist is a pure function of its inputs.
        assert build(problem, topology, design, **kwargs).text() == text
        kinds.add(topology)
        n_built += 1
        assert seen["elements"] > 0
    assert kinds == set(TOPOLOGIES) and n_built > 100


def test_checker_catches_injections():
    """The allow-list check itself must fail on the things it guards against."""
    good = build(DenseProblem(np.eye(2), np.ones(2)), "dense", kappa0=0.1, seed=3, noise="held").text()
    check_netlist_text(good)
    table = build(DenseProblem(np.eye(2), np.ones(2)), "dense", kappa0=0.1, seed=3).text()
    check_netlist_text(table)
    bad_texts = [
        good.replace(".end\n", ".control\nshell id\n.endc\n.end\n"),
        good.replace(".end\n", ".include /etc/passwd\n.end\n"),
        good.replace("seed=3", "seed=3.0"),
        good.replace(".options", ".param x=1\n.options"),
        good.replace("Rb0 d0 s0 ", "Rb0 d0 s0 1k\nRb9 d0 s0 "),
        good.replace("Rb0 d0 s0 ", "Rb0 d0 s0 {1+1}\nRb9 d0 s0 "),
        good.replace("TRRANDOM(2", "TRNOISE(2"),
        good.replace("\n", "\r\n"),
        good.replace("Rb0 d0 s0 ", "Rb0 d0 s0 1e3\n+ 2e3\nRb9 d0 s0 "),
        table.replace('file="noise0.txt"', 'file="../../etc/passwd"'),
        table.replace("amplstep=false", 'amplstep=false file="/etc/passwd"'),
        table.replace("] tabnoise0", "] tabnoise0\n+ .control"),
        table.replace("%id(0 s0)", "%vd(0 s0)"),
    ]
    for k, text in enumerate(bad_texts):
        with pytest.raises(AssertionError):
            check_netlist_text(text)
            _seed_of(text)
            pytest.fail(f"bad text {k} passed")


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")
def test_random_netlists_run_cleanly_in_plain_ngspice(tmp_path):
    """What the allow-list admits is also what ngspice accepts without a complaint."""
    rng = np.random.default_rng(7)
    done = set()
    while len(done) < 8:
        problem, topology, design, kwargs = _random_case(rng)
        key = (topology, kwargs["kappa0"] > 0, design.temperature is not None, design.opamp.gbw is not None)
        if key in done:
            continue
        kwargs["t"] = min(kwargs["t"], 3.0)
        try:
            text = build(problem, topology, design, **kwargs).text()
        except ThermospiceError:
            continue
        path = tmp_path / f"case{len(done)}.cir"
        path.write_text(text)
        p = subprocess.run(
            ["ngspice", "-b", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        out = p.stdout + p.stderr
        assert p.returncode == 0, out[-2000:]
        assert not re.search(r"^\s*error|warning|aborted|fatal|no simulations", out, re.I | re.M), out[-2000:]
        done.add(key)
