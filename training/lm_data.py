"""A generated extractive-QA data set (no download): short facts about circuit components.

Each example is a context of `facts` facts about distinct components and a question about one of
them; the answer is a span of the context:

    context  "c7 is rated 22 volts. r3 is made by cedar."
    question "what is c7 rated?"                        answer "22 volts"

Four relations (rating, maker, board, colour), so a context may hold two facts of the same
relation and the model has to match the component's name, not just the relation word. Token
sequences are [CLS] question [SEP] context [SEP] [PAD]..., padded to a fixed length L (the curvature
has L columns per row, 2L per example, so L is kept short); an example that does not fit is drawn
again. The train and held-out splits come from different seeds of the same generator.

Metrics (SQuAD's definitions on the lower-cased text): exact match of the predicted span's text
with the answer, and the token-level F1 between them, over whitespace tokens.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

KINDS = ("c", "r", "l", "d", "q", "k", "f", "u")
UNITS = ("volts", "amps", "watts", "ohms", "hertz")
MAKERS = (
    "cedar",
    "maple",
    "falcon",
    "eagle",
    "harbor",
    "summit",
    "orbit",
    "pioneer",
    "atlas",
    "river",
    "stone",
    "north",
    "silver",
    "delta",
    "tiger",
    "comet",
)
COLOURS = ("red", "blue", "green", "black", "white", "yellow", "brown", "orange", "purple", "grey")
RELATIONS = ("rating", "maker", "board", "colour")


class QADataError(ValueError):
    pass


@dataclass(frozen=True)
class QASet:
    """One split. ids (n, L) int64 token ids; starts, ends (n,) int64 answer token positions
    (inclusive); answers: the answer texts; contexts, questions: the texts."""

    ids: torch.Tensor
    starts: torch.Tensor
    ends: torch.Tensor
    answers: tuple[str, ...]
    contexts: tuple[str, ...]
    questions: tuple[str, ...]

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.ids.shape[1]


def _fact(rng: np.random.Generator, name: str, relation: str) -> tuple[str, str, str]:
    """(fact sentence, question, answer) for one component."""
    if relation == "rating":
        ans = f"{int(rng.integers(2, 100))} {UNITS[rng.integers(len(UNITS))]}"
        return f"{name} is rated {ans}.", f"what is {name} rated?", ans
    if relation == "maker":
        ans = MAKERS[rng.integers(len(MAKERS))]
        return f"{name} is made by {ans}.", f"who made {name}?", ans
    if relation == "board":
        ans = f"board {int(rng.integers(1, 10))}"
        return f"{name} sits on {ans}.", f"where does {name} sit?", ans
    ans = COLOURS[rng.integers(len(COLOURS))]
    return f"{name} is painted {ans}.", f"what colour is {name}?", ans


def _draw(rng: np.random.Generator, facts: int):
    names: list[str] = []  # a list, not a set: set order depends on the string hash seed
    while len(names) < facts:
        name = f"{KINDS[rng.integers(len(KINDS))]}{int(rng.integers(1, 10))}"
        if name not in names:
            names.append(name)
    parts = [_fact(rng, n, RELATIONS[rng.integers(len(RELATIONS))]) for n in names]
    asked = int(rng.integers(facts))
    sentences = [p[0] for p in parts]
    context = " ".join(sentences)
    offset = sum(len(s) + 1 for s in sentences[:asked])
    fact, question, answer = parts[asked]
    a0 = offset + fact.rindex(answer)
    return question, context, answer, (a0, a0 + len(answer))


def generate(tokenizer, n: int, seq_len: int, seed: int, facts: int = 2) -> QASet:
    """n examples of `facts` facts each, token length seq_len (see the module doc)."""
    if n < 1 or facts < 1 or seq_len < 8:
        raise QADataError(f"need n >= 1, facts >= 1 and seq_len >= 8, got n={n}, facts={facts}, seq_len={seq_len}")
    rng = np.random.default_rng(seed)
    ids, starts, ends, answers, contexts, questions = [], [], [], [], [], []
    tries = 0
    while len(ids) < n:
        tries += 1
        if tries > 20 * n + 100:
            raise QADataError(f"examples with {facts} facts do not fit in seq_len={seq_len} tokens")
        q, c, a, (c0, c1) = _draw(rng, facts)
        enc = tokenizer(q, c, return_offsets_mapping=True)
        tok = enc["input_ids"]
        if len(tok) > seq_len:
            continue
        seq = enc.sequence_ids()
        s = e = None
        for i, ((o0, o1), sid) in enumerate(zip(enc["offset_mapping"], seq)):
            if sid != 1:
                continue
            if s is None and o0 <= c0 < o1:
                s = i
            if o0 < c1 <= o1:
                e = i
        if s is None or e is None:
            raise QADataError(f"answer {a!r} is not aligned with the tokens of {c!r}")
        ids.append(tok + [tokenizer.pad_token_id] * (seq_len - len(tok)))
        starts.append(s)
        ends.append(e)
        answers.append(a)
        contexts.append(c)
        questions.append(q)
    return QASet(
        torch.tensor(ids, dtype=torch.int64),
        torch.tensor(starts),
        torch.tensor(ends),
        tuple(answers),
        tuple(contexts),
        tuple(questions),
    )


def splits(tokenizer, n_train: int, n_heldout: int, seq_len: int, seed: int = 0, facts: int = 2):
    """(train, held-out): the same generator with seeds (seed, 0) and (seed, 1)."""
    train = generate(tokenizer, n_train, seq_len, int(np.random.SeedSequence([seed, 0]).generate_state(1)[0]), facts)
    held = generate(tokenizer, n_heldout, seq_len, int(np.random.SeedSequence([seed, 1]).generate_state(1)[0]), facts)
    return train, held


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, max_answer: int = 8) -> torch.Tensor:
    """(b, 2) argmax of start + end logit over spans with start <= end < start + max_answer."""
    L = start_logits.shape[1]
    score = start_logits[:, :, None] + end_logits[:, None, :]
    i = torch.arange(L)
    ok = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer)
    score = score.masked_fill(~ok, float("-inf")).reshape(score.shape[0], -1)
    flat = score.argmax(1)
    return torch.stack([flat // L, flat % L], 1)


def _normalise(text: str) -> list[str]:
    return "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text.lower()).split()


def f1_score(prediction: str, answer: str) -> float:
    p, a = _normalise(prediction), _normalise(answer)
    common = sum((Counter(p) & Counter(a)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(a)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answer: str) -> float:
    return float(_normalise(prediction) == _normalise(answer))


def span_texts(tokenizer, ids: torch.Tensor, spans: torch.Tensor) -> list[str]:
    """The text of each predicted token span (decoded WordPieces)."""
    return [
        tokenizer.decode(row[s : e + 1].tolist(), skip_special_tokens=True) for row, (s, e) in zip(ids, spans.tolist())
    ]
