"""`thermospice reproduce FIG`: the paper's Figs. 2, 3, 4 and 7 (Donatella et al., arXiv 2405.13817)
on this machine, on the 8x8 digits instead of MNIST.

    res = reproduce("fig4", quick=True)       # -> runs/reproduce/fig4-quick/fig4.csv, fig4.png, ...
    res.csv_path, res.png_path, res.summary_path, res.computed, res.skipped

Figures (each writes FIG.csv and FIG.png, the training figures also FIG_summary.csv):

* ``fig2``  runtime per iteration against N and against dz for Adam (reference), NGD, NGD-CG,
            NGD-Woodbury and TNGD, on an MLP with synthetic inputs and labels (analysis/reproduce_fig2.py).
            TNGD's time is *estimated*: its measured digital part + the modelled device time (spu.timing).
* ``fig3``  TNGD against Adam over several seeds: training loss, test loss and 1 - accuracy against the
            cumulative estimated runtime, mean +- std bands.
* ``fig4``  (a) TNGD for several analog times t, with NGD (exact, by the Woodbury identity) and SGD as
            references; (b) TNGD at t = 5 tau for several delays t_d.
* ``fig7``  TNGD at t = tau for several noise levels kappa0 (0 = noiseless reference).

The training figures run every (curve, seed) with training.loop.train into ``OUT/runs/<name>``
(metrics.csv per step, resumable from its checkpoint) and aggregate them into one long CSV
(``CURVE_COLUMNS``: one row per curve and step, mean and std over seeds) and a summary
(``SUMMARY_COLUMNS``: one row per curve). A run whose final.json matches its settings is skipped, so
rerunning the same command on the same folder resumes; ``FIG.manifest.json`` records the settings and
a folder holding the same figure with other settings is refused.

Threads: the work runs with ``threads`` torch / BLAS threads (default 1). On a shared 2-core machine
OpenBLAS and OpenMP threads spin-wait for busy cores: one thread made a 320 x 320 eigh 30-100x and
a TNGD step 2-10x faster than two under load, and it makes the timings of Fig. 2 comparable.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from spu.core.errors import ThermospiceError
from spu.run_folder import check_manifest as check_manifest_file
from spu.run_folder import hold_lock
from training.optimizers import OPTIMIZERS

from .io import REPRODUCE_CELLS, prepare_folder, read_csv, write_csv

FIGURES = ("fig2", "fig3", "fig4", "fig5", "fig7")
FORMAT = 1


# -- errors ---------------------------------------------------------------------------------------
class ReproduceError(ThermospiceError):
    """A reproduction that cannot run as asked."""


class UnknownFigureError(ReproduceError, ValueError):
    pass


class ReproduceMismatchError(ReproduceError):
    pass


# -- documented columns ---------------------------------------------------------------------------
CURVE_COLUMNS = (
    ("figure", "fig3, fig4 or fig7"),
    ("panel", "fig4: a (sweep over t) or b (sweep over t_d at t = 5 tau); empty otherwise"),
    ("label", "the curve's legend entry"),
    ("optimizer", "tngd, adam, sgd or ngd-woodbury (exact NGD by the Woodbury identity)"),
    ("t_tau", "TNGD analog time per step, in tau (empty for digital optimizers)"),
    ("td_tau", "TNGD delay under the stale system, in tau"),
    ("kappa0", "TNGD noise level"),
    ("seeds", "number of seeds averaged"),
    ("step", "iteration, 1-based"),
    (
        "estimated_s_mean",
        "cumulative estimated runtime in s (measured digital part + modelled device time), mean over seeds",
    ),
    ("train_loss_mean", "minibatch training loss (cross-entropy) at this step, mean over seeds"),
    ("train_loss_std", "its standard deviation over seeds (0 with one seed)"),
    ("test_loss_mean", "test-set cross-entropy after this step, mean over seeds"),
    ("test_loss_std", "its standard deviation over seeds"),
    ("test_error_mean", "1 - test accuracy after this step, mean over seeds"),
    ("test_error_std", "its standard deviation over seeds"),
)

SUMMARY_COLUMNS = (
    ("figure", "fig3, fig4 or fig7"),
    ("panel", "as in the curves CSV"),
    ("label", "the curve's legend entry"),
    ("optimizer", "as in the curves CSV"),
    ("t_tau", "analog time per step, in tau"),
    ("td_tau", "delay, in tau"),
    ("kappa0", "noise level"),
    ("seeds", "number of seeds"),
    ("steps", "iterations per run"),
    ("final_train_loss_mean", "training loss averaged over the last 10 % of the steps (at least 1), mean over seeds"),
    ("final_train_loss_std", "its standard deviation over seeds"),
    ("final_test_loss_mean", "test loss after the last step, mean over seeds"),
    ("final_test_loss_std", "its standard deviation over seeds"),
    ("final_test_error_mean", "1 - test accuracy after the last step, mean over seeds"),
    ("final_test_error_std", "its standard deviation over seeds"),
    ("estimated_s_mean", "total estimated runtime of a run in s, mean over seeds"),
    ("estimated_s_per_step", "estimated runtime per iteration in s"),
    ("wall_s_mean", "wall time of a run on this machine (simulation included), mean over seeds"),
    (
        "test_loss_rise_mean",
        "sum of the increases of the test loss between evaluations (0 when it only falls): "
        "how erratic a run is, mean over seeds",
    ),
    ("common_time_s", "the shortest total estimated runtime among the figure's curves (panel), s"),
    ("test_loss_at_common_time", "mean test loss at common_time_s (linear interpolation in estimated runtime)"),
    ("test_error_at_common_time", "mean 1 - test accuracy at common_time_s"),
)


def columns_help(figure: str | None = None) -> str:
    from .reproduce_fig2 import FIG2_COLUMNS  # (imports torch: only when asked)

    parts = []
    if figure in (None, "fig2"):
        parts.append(
            "fig2.csv columns (one row per sweep point and method):\n"
            + "\n".join(f"  {c:18s} {d}" for c, d in FIG2_COLUMNS)
        )
    if figure in (None, "fig5"):
        from .reproduce_fig5 import FIG5_COLUMNS, FIG5_SUMMARY_COLUMNS

        parts.append(
            "fig5.csv columns (one row per curve and step):\n" + "\n".join(f"  {c:18s} {d}" for c, d in FIG5_COLUMNS)
        )
        parts.append(
            "fig5_summary.csv columns (one row per curve):\n"
            + "\n".join(f"  {c:24s} {d}" for c, d in FIG5_SUMMARY_COLUMNS)
        )
    if figure not in ("fig2", "fig5"):
        parts.append(
            "FIG.csv columns for fig3/fig4/fig7 (one row per curve and step):\n"
            + "\n".join(f"  {c:18s} {d}" for c, d in CURVE_COLUMNS)
        )
        parts.append(
            "FIG_summary.csv columns (one row per curve):\n" + "\n".join(f"  {c:22s} {d}" for c, d in SUMMARY_COLUMNS)
        )
    return "\n\n".join(parts)


# -- sizes ----------------------------------------------------------------------------------------
# quick (True): each figure well under 2 minutes on 2 shared cores; full (False): the numbers in
# docs/RESULTS.md. Paper settings kept at both sizes: lambda = 0.01, TNGD lr 0.01 (SGD update),
# Adam lr 1e-3, t = 50 tau in Fig. 3, t = 5 tau in Fig. 4b, t = tau in Fig. 7.
SIZES = {
    "fig2": {
        True: {
            "batch": 16,
            "widths": [8, 16, 32, 64],
            "dz_values": [2, 5, 10, 20],
            "n_target": 2000,
            "dz_fixed": 10,
            "ngd_max_n": 2500,
            "cg_iters": 200,
            "t": 50.0,
            "reps": 20,
            "warmup": 1,
            "budget_s": 0.6,
        },
        False: {
            "batch": 32,
            "widths": [8, 16, 32, 64, 128, 256, 512],
            "dz_values": [2, 5, 10, 20, 50],
            "n_target": 4000,
            "dz_fixed": 10,
            "ngd_max_n": 5000,
            "cg_iters": 200,
            "t": 50.0,
            "reps": 30,
            "warmup": 1,
            "budget_s": 3.0,
        },
    },
    "fig3": {
        True: {
            "model": "mlp",
            "width": 16,
            "batch": 32,
            "seeds": 5,
            "tngd_steps": 60,
            "adam_steps": 240,
            "t": 50.0,
            "eval_every": 2,
        },
        False: {
            "model": "cnn",
            "width": 32,
            "batch": 64,
            "seeds": 5,
            "tngd_steps": 66,
            "adam_steps": 660,
            "t": 50.0,
            "eval_every": 2,
        },
    },
    "fig4": {
        True: {
            "model": "mlp",
            "width": 16,
            "batch": 32,
            "seeds": 2,
            "steps": 50,
            "eval_every": 2,
            "t_values": [1.0, 5.0, 200.0],
            "t_b": 5.0,
            "td_values": [0.0, 5.0],
        },
        False: {
            "model": "mlp",
            "width": 32,
            "batch": 32,
            "seeds": 3,
            "steps": 132,
            "eval_every": 2,
            "t_values": [1.0, 5.0, 20.0, 50.0, 200.0],
            "t_b": 5.0,
            "td_values": [0.0, 1.0, 5.0, 20.0],
        },
    },
    "fig7": {
        True: {
            "model": "mlp",
            "width": 16,
            "batch": 32,
            "seeds": 2,
            "steps": 50,
            "eval_every": 2,
            "t": 1.0,
            "kappa0_values": [0.0, 0.001, 0.01, 0.1],
        },
        False: {
            "model": "mlp",
            "width": 32,
            "batch": 32,
            "seeds": 3,
            "steps": 132,
            "eval_every": 2,
            "t": 1.0,
            "kappa0_values": [0.0, 0.001, 0.01, 0.1],
        },
    },
    # fig5 (analysis/reproduce_fig5.py): MiniLM-L6 + LoRA on generated QA; lambda = 1 as in the paper.
    # The full size is set by the measured cost of U (2L = 48 columns per example): docs/RESULTS.md.
    "fig5": {
        True: {
            "seq_len": 24,
            "facts": 2,
            "n_train": 256,
            "n_heldout": 32,
            "batch": 2,
            "steps": 4,
            "seeds": 2,
            "eval_every": 4,
            "t_a": 0.4,
            "t_values": [0.1, 0.2, 0.4],
            "damping": 1.0,
            "lr_adam": 1e-3,
            "lr_tngd": 0.3,
            "lr_tngd_adam": 1e-3,
        },
        False: {
            "seq_len": 24,
            "facts": 2,
            "n_train": 1024,
            "n_heldout": 128,
            "batch": 4,
            "steps": 30,
            "seeds": 3,
            "eval_every": 10,
            "t_a": 0.4,
            "t_values": [0.1, 0.2, 0.4],
            "damping": 1.0,
            "lr_adam": 1e-3,
            "lr_tngd": 0.3,
            "lr_tngd_adam": 1e-3,
        },
    },
}


def sizes(figure: str, quick: bool, overrides: dict | None = None) -> dict:
    s = json.loads(json.dumps(SIZES[figure][bool(quick)]))
    for k, v in (overrides or {}).items():
        if k not in s:
            raise ReproduceError(f"unknown size parameter {k!r} for {figure}; known: {', '.join(sorted(s))}")
        s[k] = v
    return s


# -- results --------------------------------------------------------------------------------------
@dataclass
class ReproduceResult:
    figure: str
    out: str
    csv_path: str
    png_path: str
    summary_path: str | None
    manifest_path: str
    computed: int = 0  # runs / points computed now
    skipped: int = 0  # runs / points found finished and reused
    summary: list = field(default_factory=list)
    wall_s: float = 0.0


# -- helpers --------------------------------------------------------------------------------------
def check_figure(figure: str) -> str:
    f = str(figure).strip().lower()
    if f.isdigit():
        f = "fig" + f
    if f not in FIGURES:
        raise UnknownFigureError(f"unknown figure {figure!r}; choose one of {', '.join(FIGURES)}")
    return f


def default_out(figure: str, quick: bool) -> str:
    return os.path.join("runs", "reproduce", figure + ("-quick" if quick else ""))


def check_manifest(out: str, figure: str, spec: dict) -> str:
    """Write FIG.manifest.json, or refuse a folder holding the same figure with other settings (or
    an unreadable manifest)."""
    path = os.path.join(out, f"{figure}.manifest.json")
    settings = {"format": FORMAT, "figure": figure, "quick": spec["quick"], "spec": spec}
    check_manifest_file(
        path,
        settings,
        ignore=("format",),
        error=ReproduceMismatchError,
        refuse=lambda keys, old: ReproduceMismatchError(
            f"{out} holds a {figure} reproduction with other settings "
            f"(quick={old.get('quick')}); use another --out folder or remove "
            "that one"
        ),
    )
    return path


@contextlib.contextmanager
def figure_folder(out: str, figure: str, spec: dict):
    """The block holds the figure's lock in `out` (a second run of it there is refused) and its
    checked manifest; yields the manifest's path."""
    with hold_lock(out, figure, f"{figure} reproduction", ReproduceError):
        yield check_manifest(out, figure, spec)


def log(msg: str, enabled: bool = True) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def thread_limit(threads: int | None):
    """torch and BLAS (numpy/scipy) thread pools limited to `threads` inside the block."""
    if threads is None:
        yield
        return
    import torch

    if not isinstance(threads, int) or threads < 1:
        raise ReproduceError(f"threads must be an integer >= 1, got {threads!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        try:
            from threadpoolctl import threadpool_limits

            ctx = threadpool_limits(limits=threads, user_api="blas")
        except ImportError:  # scikit-learn brings threadpoolctl; without it BLAS keeps its threads
            ctx = contextlib.nullcontext()
        with ctx:
            yield
    finally:
        torch.set_num_threads(old)


# -- training curves ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    label: str
    optimizer: str
    steps: int
    panel: str = ""
    t: float | None = None
    td: float = 0.0
    kappa0: float = 0.0


def _g(v) -> str:
    return "inf" if v == math.inf else f"{v:g}"


def run_name(curve: Curve, size: dict, seed: int) -> str:
    """Folder name of one run: every setting that changes it, so equal runs are shared."""
    parts = [curve.optimizer]
    if OPTIMIZERS[curve.optimizer].uses_spu:
        parts += [f"t{_g(curve.t)}", f"td{_g(curve.td)}", f"k{_g(curve.kappa0)}"]
    parts += [
        f"{size['model']}{size['width']}",
        f"b{size['batch']}",
        f"s{curve.steps}",
        f"e{size['eval_every']}",
        f"seed{seed}",
    ]
    return "-".join(parts)


def train_config(curve: Curve, size: dict, seed: int):
    from training.loop import PAPER, TrainConfig

    tngd = OPTIMIZERS[curve.optimizer].uses_spu
    paper = PAPER[curve.optimizer]  # the paper's figures at the paper's settings, not train's tuned defaults
    return TrainConfig(
        optimizer=curve.optimizer,
        backend="ou",
        model=size["model"],
        width=size["width"],
        steps=curve.steps,
        batch_size=size["batch"],
        lr=paper["lr"],
        damping=paper.get("damping"),
        t=curve.t if tngd else None,
        td=curve.td if tngd else 0.0,
        kappa0=curve.kappa0 if tngd else 0.0,
        seed=seed,
        eval_every=size["eval_every"],
    )


def _finished(run_dir: str, cfg) -> dict | None:
    """final.json of a finished run with exactly these settings, else None."""
    path = os.path.join(run_dir, "final.json")
    if not os.path.exists(path) or not os.path.exists(os.path.join(run_dir, "metrics.csv")):
        return None
    try:
        with open(path) as fh:
            final = json.load(fh)
    except (OSError, ValueError):
        return None
    want = json.loads(json.dumps(asdict(cfg.resolved())))
    have = final.get("config") or {}
    # A setting TrainConfig gained after the run was written counts as its default.
    if any(have.get(k, v) != v for k, v in want.items()) or final.get("steps") != cfg.steps:
        return None
    return final


def run_curves(curves: list[Curve], size: dict, out: str, progress: bool, figure: str) -> tuple[dict, int, int]:
    """Train every (curve, seed) not finished yet; returns ({curve: [run_dir per seed]}, computed, skipped)."""
    from training.loop import train
    from training.preconditioners import TrainingError

    runs_dir = os.path.join(out, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    jobs, seen = [], {}
    for c in curves:
        for seed in range(size["seeds"]):
            name = run_name(c, size, seed)
            seen.setdefault(name, len(seen))
            jobs.append((c, seed, name))
    unique = list(seen)
    done_names = {}
    computed = skipped = 0
    for i, name in enumerate(unique, 1):
        c, seed, _ = next(j for j in jobs if j[2] == name)
        run_dir = os.path.join(runs_dir, name)
        cfg = train_config(c, size, seed)
        final = _finished(run_dir, cfg)
        if final is not None:
            skipped += 1
            log(f"[{figure}] {i}/{len(unique)} {name}: done before, skipped", progress)
        else:
            t0 = time.perf_counter()
            try:
                final = train(cfg, run_dir, progress=progress and sys.stderr.isatty(), resume=True)
            except TrainingError as exc:
                # A diverged run is a result (e.g. large noise): keep what it wrote, mark it, go on.
                final = {"steps": None, "error": str(exc)}
                with open(os.path.join(run_dir, "error.txt"), "w") as fh:
                    fh.write(str(exc) + "\n")
            except ThermospiceError as exc:
                if "other settings" in str(exc):
                    raise ReproduceMismatchError(
                        f"{run_dir} holds a run with other settings; use another --out folder or remove that one"
                    ) from None
                raise
            computed += 1
            if "error" in final:
                log(f"[{figure}] {i}/{len(unique)} {name}: stopped: {final['error']}", progress)
            else:
                log(
                    f"[{figure}] {i}/{len(unique)} {name}: train loss {final['final_train_loss']:.4f}, "
                    f"test accuracy {final['final_test_accuracy']:.3f}, estimated {final['estimated_time_s']:.3g} s "
                    f"({time.perf_counter() - t0:.1f} s wall)",
                    progress,
                )
        done_names[name] = run_dir
    by_curve = {c: [done_names[run_name(c, size, s)] for s in range(size["seeds"])] for c in curves}
    return by_curve, computed, skipped


def _load_metrics(run_dir: str, steps: int) -> dict[str, np.ndarray]:
    cols = ("train_loss", "test_loss", "test_accuracy", "cumulative_estimated_s", "wall_s")
    out = {k: np.full(steps, np.nan) for k in cols}
    path = os.path.join(run_dir, "metrics.csv")
    if os.path.exists(path):
        for r in read_csv(path):
            k = int(r["step"]) - 1
            if 0 <= k < steps:
                for c in cols:
                    out[c][k] = float(r[c]) if r.get(c) not in (None, "") else np.nan
    return out


def _mean_std(a: np.ndarray, axis=0):
    """nan-aware mean and std (ddof=1 with two or more values, else 0) along axis."""
    with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(a, axis=axis)
        n = np.sum(np.isfinite(a), axis=axis)
        std = np.where(n >= 2, np.nanstd(a, axis=axis, ddof=1) if a.shape[axis] >= 2 else 0.0, 0.0)
    return mean, std


def aggregate(figure: str, by_curve: dict) -> tuple[list[dict], list[dict]]:
    """Curves (one row per curve and step) and the summary (one row per curve)."""
    rows, summary = [], []
    for c, dirs in by_curve.items():
        runs = [_load_metrics(d, c.steps) for d in dirs]
        stack = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
        stack["test_error"] = 1.0 - stack["test_accuracy"]
        tngd = OPTIMIZERS[c.optimizer].uses_spu
        base = {
            "figure": figure,
            "panel": c.panel,
            "label": c.label,
            "optimizer": c.optimizer,
            "t_tau": c.t if tngd else None,
            "td_tau": c.td if tngd else None,
            "kappa0": c.kappa0 if tngd else None,
            "seeds": len(dirs),
        }
        stats = {k: _mean_std(stack[k]) for k in ("train_loss", "test_loss", "test_error", "cumulative_estimated_s")}
        for k in range(c.steps):
            rows.append(
                {
                    **base,
                    "step": k + 1,
                    "estimated_s_mean": stats["cumulative_estimated_s"][0][k],
                    **{
                        f"{q}_{s}": stats[q][i][k]
                        for q in ("train_loss", "test_loss", "test_error")
                        for i, s in enumerate(("mean", "std"))
                    },
                }
            )
        tail = max(1, c.steps // 10)
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            final_train = np.nanmean(stack["train_loss"][:, -tail:], axis=1)
        last = {q: _last_finite(stack[q]) for q in ("test_loss", "test_error", "cumulative_estimated_s", "wall_s")}
        ft, fl, fe = _mean_std(final_train), _mean_std(last["test_loss"]), _mean_std(last["test_error"])
        rise = [np.clip(np.diff(r[np.isfinite(r)]), 0, None).sum() for r in stack["test_loss"]]
        est = (
            float(np.nanmean(last["cumulative_estimated_s"]))
            if np.isfinite(last["cumulative_estimated_s"]).any()
            else math.nan
        )
        summary.append(
            {
                **base,
                "steps": c.steps,
                "final_train_loss_mean": float(ft[0]),
                "final_train_loss_std": float(ft[1]),
                "final_test_loss_mean": float(fl[0]),
                "final_test_loss_std": float(fl[1]),
                "final_test_error_mean": float(fe[0]),
                "final_test_error_std": float(fe[1]),
                "estimated_s_mean": est,
                "estimated_s_per_step": est / c.steps,
                "wall_s_mean": float(np.nanmean(last["wall_s"])) if np.isfinite(last["wall_s"]).any() else math.nan,
                "test_loss_rise_mean": float(np.mean(rise)),
            }
        )
    _at_common_time(rows, summary)
    return rows, summary


def _at_common_time(rows: list[dict], summary: list[dict]) -> None:
    """Compare curves at equal estimated runtime: each panel's shortest total runtime."""
    for panel in {s["panel"] for s in summary}:
        sel = [s for s in summary if s["panel"] == panel]
        finite = [s["estimated_s_mean"] for s in sel if math.isfinite(s["estimated_s_mean"])]
        if not finite:
            continue
        T = min(finite)
        for s in sel:
            s["common_time_s"] = T
            for q in ("test_loss", "test_error"):
                pts = [
                    (r["estimated_s_mean"], r[f"{q}_mean"])
                    for r in rows
                    if r["label"] == s["label"]
                    and r["panel"] == panel
                    and math.isfinite(r["estimated_s_mean"])
                    and math.isfinite(r[f"{q}_mean"])
                ]
                if pts and pts[0][0] <= T:
                    xs, ys = zip(*pts)
                    s[f"{q}_at_common_time"] = float(np.interp(T, xs, ys))


def _last_finite(a: np.ndarray) -> np.ndarray:
    """Per row, the last finite value (NaN if none): the final value of a run that may have stopped early."""
    out = np.full(a.shape[0], np.nan)
    for i, row in enumerate(a):
        ok = np.flatnonzero(np.isfinite(row))
        if ok.size:
            out[i] = row[ok[-1]]
    return out


# -- figure specifications ------------------------------------------------------------------------
def curves_for(figure: str, size: dict) -> list[Curve]:
    if figure == "fig3":
        return [
            Curve(f"TNGD (t = {_g(size['t'])} tau)", "tngd", size["tngd_steps"], t=size["t"]),
            Curve("Adam", "adam", size["adam_steps"]),
        ]
    if figure == "fig4":
        a = [Curve("SGD", "sgd", size["steps"], panel="a")]
        a += [Curve(f"TNGD t = {_g(t)} tau", "tngd", size["steps"], panel="a", t=float(t)) for t in size["t_values"]]
        a.append(Curve("NGD (exact)", "ngd-woodbury", size["steps"], panel="a"))
        b = [
            Curve(
                f"TNGD td = {_g(td)} tau (t = {_g(size['t_b'])} tau)",
                "tngd",
                size["steps"],
                panel="b",
                t=float(size["t_b"]),
                td=float(td),
            )
            for td in size["td_values"]
        ]
        b.append(Curve("NGD (exact)", "ngd-woodbury", size["steps"], panel="b"))
        return a + b
    if figure == "fig7":
        return [
            Curve(
                f"kappa0 = {_g(k)}" + (" (noiseless)" if k == 0 else ""),
                "tngd",
                size["steps"],
                t=float(size["t"]),
                kappa0=float(k),
            )
            for k in size["kappa0_values"]
        ]
    raise UnknownFigureError(f"no training curves for {figure}")


def _check_sizes(figure: str, size: dict) -> None:
    def positive_int(name):
        v = size.get(name)
        if not isinstance(v, int) or v < 1:
            raise ReproduceError(f"{figure}: {name} must be an integer >= 1, got {v!r}")

    if figure == "fig2":
        for name in ("batch", "n_target", "dz_fixed", "cg_iters", "reps"):
            positive_int(name)
        for name in ("widths", "dz_values"):
            if not size[name] or any(not isinstance(v, int) or v < 1 for v in size[name]):
                raise ReproduceError(f"fig2: {name} must be a non-empty list of integers >= 1, got {size[name]!r}")
        return
    if figure == "fig5":
        _check_fig5_sizes(size)
        return
    for name in ("width", "batch", "seeds", "eval_every") + (
        ("tngd_steps", "adam_steps") if figure == "fig3" else ("steps",)
    ):
        positive_int(name)
    for name in ("t_values", "td_values", "kappa0_values"):
        if name in size and (not size[name] or any(not (isinstance(v, (int, float)) and v >= 0) for v in size[name])):
            raise ReproduceError(f"{figure}: {name} must be a non-empty list of numbers >= 0, got {size[name]!r}")


def _check_fig5_sizes(size: dict) -> None:
    for name in ("seq_len", "facts", "n_train", "n_heldout", "batch", "steps", "seeds", "eval_every"):
        v = size.get(name)
        if not isinstance(v, int) or v < 1:
            raise ReproduceError(f"fig5: {name} must be an integer >= 1, got {v!r}")
    ts = size.get("t_values")
    if not ts or any(not isinstance(t, (int, float)) or not t >= 0 for t in ts) or not size.get("t_a", -1) >= 0:
        raise ReproduceError(f"fig5: t_a and t_values must be numbers >= 0, got {size.get('t_a')!r}, {ts!r}")
    for name in ("damping", "lr_adam", "lr_tngd", "lr_tngd_adam"):
        v = size.get(name)
        if not isinstance(v, (int, float)) or not v > 0:
            raise ReproduceError(f"fig5: {name} must be a number > 0, got {v!r}")


# -- entry point ----------------------------------------------------------------------------------
def reproduce(
    figure: str,
    out: str | None = None,
    *,
    quick: bool = False,
    progress: bool = True,
    threads: int | None = 1,
    overrides: dict | None = None,
) -> ReproduceResult:
    """Run one figure (see the module docstring). overrides: size parameters replacing the preset
    (tests use smaller ones; the CLI does not expose them)."""
    figure = check_figure(figure)
    size = sizes(figure, quick, overrides)
    _check_sizes(figure, size)
    out = out or default_out(figure, quick)
    prepare_folder(out, "results")
    spec = {"quick": bool(quick), "size": size}
    start = time.perf_counter()
    csv_path, png_path = os.path.join(out, f"{figure}.csv"), os.path.join(out, f"{figure}.png")
    with figure_folder(out, figure, spec) as manifest, thread_limit(threads):
        if figure == "fig2":
            from .reproduce_fig2 import run_fig2

            computed, skipped, summary = run_fig2(size, out, csv_path, png_path, progress)
            summary_path = None
        elif figure == "fig5":
            from .reproduce_fig5 import run_fig5

            computed, skipped, summary, summary_path = run_fig5(
                size, out, csv_path, png_path, lambda m: log(m, progress)
            )
        else:
            curves = curves_for(figure, size)
            log(
                f"[{figure}] {len(curves)} curves x {size['seeds']} seeds ({'quick' if quick else 'full'}) into {out}",
                progress,
            )
            by_curve, computed, skipped = run_curves(curves, size, out, progress, figure)
            rows, summary = aggregate(figure, by_curve)
            write_csv(csv_path, [c for c, _ in CURVE_COLUMNS], rows, **REPRODUCE_CELLS)
            summary_path = os.path.join(out, f"{figure}_summary.csv")
            write_csv(summary_path, [c for c, _ in SUMMARY_COLUMNS], summary, **REPRODUCE_CELLS)
            from .reproduce_plots import plot_curves

            plot_curves(figure, rows, png_path)
    return ReproduceResult(
        figure, out, csv_path, png_path, summary_path, manifest, computed, skipped, summary, time.perf_counter() - start
    )
