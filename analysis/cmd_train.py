"""`thermospice train`: train the digits classifier with TNGD or a baseline."""

from __future__ import annotations

import json
import os
import sys

from circuits import topologies
from spu import backends
from training.names import MODELS
from training.optimizers import OPTIMIZERS

from .design_sources import design_fields, named_design
from .limit_args import add_limit_args
from .problem_args import DESIGN_FLAGS, add_design_flags

# The design flags train takes, and its wording of those whose default differs from solve's (the
# training config fills in its own, so none has a default here).
_DESIGN_FLAGS = (
    "--bits-r",
    "--bits-dac",
    "--bits-adc",
    "--tol-r",
    "--tol-c",
    "--component-seed",
    "--opamp-gain",
    "--dt-max",
    "--temperature",
    "--open-error-max",
    "--opamp-offset",
    "--opamp-bias",
    "--opamp-swing",
    "--opamp-slew",
    "--opamp-noise",
    "--opamp-flicker-corner",
    "--dac-offset",
    "--dac-gain-error",
    "--dac-inl",
    "--adc-offset",
    "--adc-gain-error",
    "--adc-inl",
)
_DESIGN_HELP = {
    "--bits-r": "resistor resolution in bits (drops entries below 2^-bits of each array's full scale, which "
    "would need resistors above r_max)",
    "--tol-r": "relative sigma of each resistor (fabrication tolerance)",
    "--component-seed": "seed of the tolerance draws (default 0)",
    "--dt-max": "largest ngspice time step, in tau",
    "--temperature": "kelvin: Johnson noise of every resistor (default: none)",
    "--open-error-max": "largest relative steady-state error allowed from entries below the smallest "
    "programmable conductance, left open (default 0.01 in training)",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the digits classifier with TNGD or a baseline",
        description="Defaults: lr and damping of sgd, adam, tngd and tngd-adam tuned by "
        "`thermospice reproduce tuning` (training.loop.TUNED); the rest, and the "
        "paper's values beside them, in docs/TRAINING.md (training.loop.PAPER).",
    )
    p.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="tngd")
    p.add_argument("--backend", choices=backends.NAMES, default="ou", help="SPU backend for tngd/tngd-adam")
    p.add_argument(
        "--topology",
        choices=topologies.choices("train"),
        help="circuit topology with --backend ngspice (default crossbar) or asbuilt "
        "(factored or crossbar; default factored)",
    )
    p.add_argument("--model", choices=MODELS, default="cnn")
    p.add_argument("--width", type=int, default=32, help="hidden width")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int)
    g.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float)
    p.add_argument("--damping", type=float, help="lambda > 0")
    p.add_argument("--t", type=float, help="analog time per step, in tau")
    p.add_argument("--td", type=float, default=0.0, help="delay under the stale system, in tau")
    p.add_argument("--kappa0", type=float, default=0.0, help="SPU noise level")
    p.add_argument(
        "--gain-stage",
        action="store_true",
        help="hand the SPU b/max|b| and scale its answer back, so the chip's absolute errors "
        "(offsets, converter LSBs) stay a fixed fraction of the signal as the gradient shrinks",
    )
    p.add_argument(
        "--chop",
        action="store_true",
        help="subtract a second SPU run with b = 0 from every solve: constant offsets and bias cancel",
    )
    p.add_argument("--beta1", type=float, help="Adam beta1 (tngd-adam default 0)")
    p.add_argument("--beta2", type=float, help="Adam beta2 (tngd-adam default 0)")
    p.add_argument("--cg-iters", type=int, help="CG iterations for ngd-cg")
    p.add_argument(
        "--curvature",
        choices=["ggn", "mc", "empirical"],
        help="curvature of the natural-gradient methods: exact GGN (default), sampled-label "
        "(Monte Carlo) Fisher, or empirical Fisher (docs/TRAINING.md)",
    )
    p.add_argument("--mc-samples", type=int, help="labels drawn per example for --curvature mc (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=10, help="steps between test evaluations")
    d = p.add_argument_group(
        "circuit design (--backend ngspice: defaults --bits-r 16 --dt-max 0.05; asbuilt: --bits-r 16, "
        "r_max 1 GOhm; both --open-error-max 0.01)"
    )
    add_design_flags(d, _DESIGN_FLAGS, helps=_DESIGN_HELP)
    # --ngspice-timeout stays accepted: scripts written before train shared --timeout with solve,
    # sample and sweep still run.
    d.add_argument(
        "--timeout",
        "--ngspice-timeout",
        dest="timeout",
        type=float,
        help="seconds before one ngspice solve is killed (default 600)",
    )
    p.add_argument("--out", help="output folder (metrics.csv, loss.png, final.json; resumes if present)")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    add_limit_args(p, "steps")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from training.loop import TrainConfig, train  # imports torch: only when training

    betas = None
    if args.beta1 is not None or args.beta2 is not None:
        betas = (args.beta1 if args.beta1 is not None else 0.9, args.beta2 if args.beta2 is not None else 0.999)
    cfg = TrainConfig(
        optimizer=args.optimizer,
        backend=args.backend,
        topology=args.topology,
        model=args.model,
        width=args.width,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        damping=args.damping,
        t=args.t,
        td=args.td,
        kappa0=args.kappa0,
        betas=betas,
        cg_iters=args.cg_iters,
        seed=args.seed,
        eval_every=args.eval_every,
        design=_design_args(args),
        timeout=args.timeout,
        max_steps=args.max_steps,
        gain_stage=args.gain_stage,
        chop=args.chop,
        curvature=args.curvature,
        mc_samples=args.mc_samples,
    )
    out = args.out or os.path.join("runs", f"train-{args.optimizer}-{args.backend}-seed{args.seed}")
    final = train(cfg, out, progress=sys.stderr.isatty() or not args.json)
    if args.json:
        print(json.dumps({k: v for k, v in final.items() if k != "config"}))
    else:
        print(
            f"{final['optimizer']}: {final['steps']} steps, train loss {final['final_train_loss']:.4f}, "
            f"test loss {final['final_test_loss']:.4f}, test accuracy {final['final_test_accuracy']:.3f}, "
            f"wall {final['wall_time_s']:.1f} s, estimated {final['estimated_time_s']:.3g} s"
        )
        ms = final["per_step_ms"]
        print(
            f"per step: digital {ms['digital']:.1f} ms, simulated device {ms['simulator']:.1f} ms, "
            f"bookkeeping {ms['bookkeeping']:.1f} ms (timing model of the device: {ms['device_model']:.3g} ms)"
        )
        print(f"results in {out}/ (metrics.csv, loss.png, final.json)")
    return 0


def _design_args(args) -> dict | None:
    """The circuit-design fields the presets, the design file and the options given set (TrainConfig
    adds the backend's training defaults under them), checked now so that an error names the option."""
    flags = {name: DESIGN_FLAGS[name] for name in _DESIGN_FLAGS}
    given = design_fields(args, flags)
    named_design(given, flags)
    return given or None
