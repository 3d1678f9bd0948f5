"""The language-model experiment (paper Fig. 5): packaged MiniLM-L6 with LoRA and a span head,
the generated QA data, the span-loss curvature against a dense reference, resumable runs, and one
TNGD-Adam step's linear system on the circuit against the exact OU solution."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from physics import trapezoid_bound
from torch.func import functional_call
from torch_cases import tiny_encoder

from spu.core.problems import FactoredProblem
from spu.device import SPU
from training.curvature import compute_curvature, param_spec, params_to_vector
from training.lm_data import best_spans, exact_match, f1_score, generate, span_texts, splits
from training.lm_model import (
    LORA_RANK,
    MASKED_LOGIT,
    build_span_qa,
    load_encoder,
    load_tokenizer,
    packaged_model_dir,
    rows,
    trainable_count,
)
from training.lm_train import LMRunConfig, batch_indices, build_optimizer, train_run

CLS, SEP, PAD = 101, 102, 0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_count(hidden: int, layers: int, rank: int = LORA_RANK) -> int:
    """Trainable parameters of SpanQA: 2 projections x layers x (A + B), plus the span head."""
    return 2 * layers * 2 * hidden * rank + 2 * hidden + 2


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _tiny_model(seed=0, dtype=torch.float64, vocab=200):
    model = build_span_qa(tiny_encoder(vocab, seed=seed), sep_id=SEP, seed=seed).to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # B = 0 at initialisation would make every A-derivative vanish
        for n, p in model.named_parameters():
            if "lora_b" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=dtype))
    return model


def _ids(b, L, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(110, 200, (b, L), generator=g)
    ids[:, 0], ids[:, 4], ids[:, L - 2], ids[:, L - 1] = CLS, SEP, SEP, PAD  # [CLS] q [SEP] ctx [SEP] [PAD]
    return ids


def test_span_curvature_matches_dense_reference():
    """U U^T and the gradient from compute_curvature on the two-row encoding equal J^T H J and
    J^T dL/dz built densely: J by autograd over the (b, 2, L) span logits, H as the autograd
    Hessian of mean_i (CE_start + CE_end) / 2 (so two softmax blocks per example)."""
    b, L = 3, 10
    model = _tiny_model()
    ids = _ids(b, L, seed=5)
    starts, ends = torch.tensor([5, 6, 7]), torch.tensor([6, 6, 8])
    x, y = rows(ids, starts, ends)
    curv = compute_curvature(model, x, y)
    assert curv.method == "layers"
    assert curv.Ut.shape == (2 * b * L, trainable_count(model))  # dz = 2L columns per example

    spec = param_spec(model)
    theta0 = params_to_vector(model)
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}

    def logits(theta):
        pd = {n: t.view(s) for n, t, s in zip(spec.names, torch.split(theta, spec.sizes), spec.shapes)}
        return functional_call(model, {**pd, **frozen}, (ids,), strict=False)

    def span_loss(z):  # z (b, 2, L)
        ce = torch.nn.functional.cross_entropy
        return 0.5 * (ce(z[:, 0], starts) + ce(z[:, 1], ends))

    model.forward, fwd = model.span_logits, model.forward  # the per-example (b, 2, L) output
    try:
        z = logits(theta0)
        J = torch.autograd.functional.jacobian(logits, theta0).reshape(2 * b * L, -1)
    finally:
        model.forward = fwd
    H = torch.autograd.functional.hessian(span_loss, z).reshape(2 * b * L, 2 * b * L)
    grad_z = torch.autograd.functional.jacobian(span_loss, z).reshape(-1)
    off_block = H.clone()
    for k in range(2 * b):  # H is block diagonal: one L x L softmax block per (example, head)
        off_block[k * L : (k + 1) * L, k * L : (k + 1) * L] = 0
    assert float(off_block.abs().max()) == 0.0
    G = J.T @ H @ J
    assert torch.allclose(curv.U @ curv.Ut, G, rtol=1e-8, atol=1e-10 * float(G.abs().max()))
    assert torch.allclose(curv.grad, J.T @ grad_z, rtol=1e-8, atol=1e-12)
    assert abs(float(curv.loss) - float(span_loss(z))) < 1e-10
    # masked positions (question, specials, padding) carry probability 0: their rows of U^T vanish
    assert float(curv.Ut.view(2 * b, L, -1)[:, :5].abs().max()) == 0.0


def test_generated_qa_data(tokenizer):
    a = generate(tokenizer, 40, 24, seed=3)
    again = generate(tokenizer, 40, 24, seed=3)
    assert torch.equal(a.ids, again.ids) and a.answers == again.answers
    train, held = splits(tokenizer, 30, 20, 24)
    assert set(zip(train.questions, train.contexts)).isdisjoint(zip(held.questions, held.contexts)) or len(held) < 20
    assert a.ids.shape == (40, 24)
    spans = torch.stack([a.starts, a.ends], 1)
    texts = span_texts(tokenizer, a.ids, spans)
    for text, ans, ctx in zip(texts, a.answers, a.contexts):
        assert exact_match(text, ans) == 1.0 and ans in ctx
    sep = a.ids == tokenizer.sep_token_id
    first_sep = sep.float().argmax(1)
    assert bool((a.starts > first_sep).all()) and bool((a.ends >= a.starts).all())
    assert f1_score("22 volts", "22 amps") == pytest.approx(0.5)
    assert f1_score("board 3", "board 3") == 1.0 and exact_match("Board 3.", "board 3") == 1.0
    assert f1_score("red", "blue") == 0.0
    # best_spans: start <= end, highest start + end score
    s = torch.tensor([[-10.0, 5.0, 1.0, 0.0]])
    e = torch.tensor([[9.0, 0.0, 3.0, 1.0]])  # (1, 0) would score 14 but ends before it starts
    assert best_spans(s, e).tolist() == [[1, 2]]


def test_packaged_minilm_loads_offline_and_gives_span_logits(tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    path = packaged_model_dir()
    assert "site-packages" in str(path) and path.name == "model"
    enc = load_encoder()
    assert (enc.config.num_hidden_layers, enc.config.hidden_size) == (6, 384)
    model = build_span_qa(enc, tokenizer.sep_token_id)
    assert trainable_count(model) == reference_count(384, 6) == 19202
    data = generate(tokenizer, 2, 24, seed=0)
    with torch.no_grad():
        z = model.span_logits(data.ids)
    assert z.shape == (2, 2, 24) and bool(torch.isfinite(z).all())
    n_question = int((data.ids[0] == tokenizer.sep_token_id).float().argmax())
    assert float(z[0, :, : n_question + 1].max()) == MASKED_LOGIT  # no answer inside the question
    assert float(z[0, :, n_question + 1].min()) > MASKED_LOGIT / 2  # the context's first token is live


def test_run_resumes_where_it_stopped(tokenizer, tmp_path):
    """A TNGD-Adam run interrupted after its step-2 checkpoint and restarted gives the same
    per-step losses as one uninterrupted run (batches depend on (seed, step) only)."""
    enc = tiny_encoder(tokenizer.vocab_size, seed=1)
    train, held = splits(tokenizer, 16, 4, 16, facts=1)
    cfg = LMRunConfig("tngd-adam", steps=4, batch=2, seed=0, lr=1e-2, eval_every=2, checkpoint_every=2)
    whole = train_run(cfg, enc, tokenizer, train, held, str(tmp_path / "whole"))

    class Stop(Exception):
        pass

    def stop_at_3(msg):
        if msg.startswith("step 3/"):
            raise Stop

    with pytest.raises(Stop):
        train_run(cfg, enc, tokenizer, train, held, str(tmp_path / "cut"), log=stop_at_3)
    assert not os.path.exists(tmp_path / "cut" / "final.json")
    resumed = train_run(cfg, enc, tokenizer, train, held, str(tmp_path / "cut"))
    a = np.loadtxt(tmp_path / "whole" / "metrics.csv", delimiter=",", skiprows=1, usecols=1)
    b = np.loadtxt(tmp_path / "cut" / "metrics.csv", delimiter=",", skiprows=1, usecols=1)
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert resumed["heldout_f1"] == pytest.approx(whole["heldout_f1"])
    assert train_run(cfg, enc, tokenizer, train, held, str(tmp_path / "cut")) == resumed  # finished: reused
    assert len(set(batch_indices(16, 4, 0, 2))) == 4


@pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice not installed")
def test_tngd_adam_step_system_on_the_circuit(tokenizer):
    """One TNGD-Adam step of the packaged MiniLM-L6 (second step, b = 1, L = 24: m = 2L = 48 columns
    of U): the principal n = 40 slice of its system (lam I + U U^T) x = g on the 40 coordinates of
    largest |g|, warm start from the previous estimate, t = 0.4 tau, solved by the factored circuit in
    ngspice and by the exact OU transition. The tolerance is the trapezoidal integrator's error
    bound for ngspice's largest step dt_max. b and x0 are scaled by one factor to volts (the DAC
    scaling; the system is linear) and the result scaled back."""
    enc = load_encoder()
    model = build_span_qa(enc, tokenizer.sep_token_id, seed=0)
    train = generate(tokenizer, 8, 24, seed=11)
    cfg = LMRunConfig("tngd-adam", steps=2, batch=1, seed=0, lr=1e-3, t=0.4, damping=1.0)
    pre, opt = build_optimizer(model, cfg)
    x, y = rows(train.ids[:1], train.starts[:1], train.ends[:1])
    opt.zero_grad()
    pre.step(x, y)  # the first step: the estimate x0 of the second is this step's device state
    opt.step()
    x, y = rows(train.ids[1:2], train.starts[1:2], train.ends[1:2])
    curv = compute_curvature(model, x, y)
    U = curv.Ut.double().numpy().T
    g = curv.grad.double().numpy()
    assert U.shape[1] == 48
    coords = np.argsort(-np.abs(g))[:40]
    x0 = pre.estimate[coords]
    scale = 1.0 / max(np.abs(g[coords]).max(), np.abs(x0).max())
    problem = FactoredProblem(U[coords], cfg.damping, g[coords] * scale)
    t = cfg.t
    ou = SPU("ou").run(problem, t=t, x0=x0 * scale).x
    spu = SPU("ngspice", topology="factored")
    ng = spu.run(problem, t=t, x0=x0 * scale).x
    A = problem.matrix()
    bound = trapezoid_bound(A, x0 * scale, problem.b, t, spu.design.dt_max)
    err = np.linalg.norm(ng - ou)
    moved = np.linalg.norm(ou - x0 * scale)
    assert err <= bound, f"|ngspice - ou| = {err:.3g} > bound {bound:.3g}"
    assert moved > 10 * bound  # the step really moved the state: the comparison is not vacuous


def test_reproduce_fig5_end_to_end_and_resume(tmp_path):
    """`reproduce fig5` at a size below --quick: the documented CSV columns, the PNG, one summary
    row per curve with held-out EM/F1, the t_a run shared by both panels, and a rerun that reuses
    every run."""
    from analysis.io import read_csv
    from analysis.reproduce import ReproduceError, reproduce
    from analysis.reproduce_fig5 import FIG5_COLUMNS, FIG5_SUMMARY_COLUMNS, ordering

    tiny = {"n_train": 8, "n_heldout": 4, "batch": 1, "steps": 2, "seeds": 2, "eval_every": 2, "t_values": [0.1, 0.4]}
    res = reproduce("fig5", str(tmp_path / "f5"), quick=True, progress=False, overrides=tiny)
    assert (res.computed, res.skipped) == (8, 0)  # adam, tngd, tngd-adam t=0.4 (both panels), t=0.1; x 2 seeds
    rows = read_csv(res.csv_path)
    assert list(rows[0]) == [c for c, _ in FIG5_COLUMNS] and len(rows) == 5 * 2
    summary = read_csv(res.summary_path)
    assert list(summary[0]) == [c for c, _ in FIG5_SUMMARY_COLUMNS]
    assert [s["label"] for s in summary] == [
        "Adam",
        "TNGD (t = 0.4 tau)",
        "TNGD-Adam (t = 0.4 tau)",
        "TNGD-Adam t = 0.1 tau",
        "TNGD-Adam t = 0.4 tau",
    ]
    for s in summary:
        assert 0.0 <= float(s["final_heldout_em_mean"]) <= float(s["final_heldout_f1_mean"]) <= 1.0
        assert float(s["final_train_loss_mean"]) > 0
    assert summary[2]["final_train_loss_mean"] == summary[4]["final_train_loss_mean"]  # one shared run
    assert rows[-1]["heldout_f1_mean"] != "" and rows[0]["heldout_f1_mean"] == ""  # evaluated at step 2 only
    with open(res.png_path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert set(ordering(res.summary)) == {"tngd_adam_lt_adam_lt_tngd", "better_with_larger_t"}
    again = reproduce("fig5", str(tmp_path / "f5"), quick=True, progress=False, overrides=tiny)
    assert (again.computed, again.skipped) == (0, 8)
    with pytest.raises(ReproduceError, match="steps"):
        reproduce("fig5", str(tmp_path / "bad"), quick=True, progress=False, overrides={**tiny, "steps": 0})
