"""Held-out evaluation: per-source loss and bits per byte on whole documents, loss by
context length, and zero-shot multiple-choice cloze tasks from local JSONL files.

Documents, not chunks: each held-out document is rebuilt from its pieces and scored
with sliding windows of ``eval_len`` tokens and stride ``eval_len / 2``; every token
after the first is predicted exactly once, with at least half a window of context
once the document is longer than a window.

Bits per byte need the byte length of each predicted token, taken from a table of
byte lengths per token id (the bucket shards carry no text). ``token_bytes``:
``bytes`` is the raw UTF-8 byte tokenizer (ids below 256 are one byte, the rest, such
as EOS, none); a ``.npy`` path is a ready table; a ``tokenizer.json`` path is read
with ``tokenizers`` (byte-level BPE tokens count their bytes exactly, special tokens
none, so a document's bytes are the sum over its tokens); ``auto`` tries
``<bucket dir>/token_bytes.npy``, then the tokenizer the manifest names, then the
byte convention when the manifest says vocab 257 with EOS 256, and otherwise reports
no bpb. Task prompts are tokenized the same way (``tokenizer``: ``auto`` = the
manifest's tokenizer, else bytes for a 257-token vocabulary).
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from winnow.errors import InputError
from winnow.trainer.data import BucketDataset, Document

LN2 = math.log(2)
LATE_FROM = 128  # context length from which a prediction counts as "late"


# --------------------------------------------------------------------------- tokens and bytes


def _manifest_tokenizer(dataset: BucketDataset) -> str | None:
    """The tokenizer.json the manifest names, when it exists here."""
    name = dataset.manifest.get("tokenizer")
    if not name:
        return None
    path = Path(name)
    path = path / "tokenizer.json" if path.is_dir() else path
    return str(path) if path.is_file() else None


def token_byte_table(spec: str, dataset: BucketDataset) -> np.ndarray | None:
    """Byte length per token id, or None when unknown (see the module docstring)."""
    if spec == "auto":
        local = dataset.root / "token_bytes.npy"
        if local.is_file():
            spec = str(local)
        elif _manifest_tokenizer(dataset):
            spec = _manifest_tokenizer(dataset)
        elif dataset.vocab_size == 257 and dataset.eos_id == 256:
            spec = "bytes"
        else:
            return None
    if spec == "bytes":
        table = np.zeros(max(257, int(dataset.vocab_size)), np.int64)
        table[:256] = 1
        return table
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"{path}: token byte table not found")
    if path.suffix == ".npy":
        return np.load(path).astype(np.int64)
    return HFTokenizer(path).byte_lengths()


class ByteTokenizer:
    """UTF-8 bytes as token ids."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


class HFTokenizer:
    """A ``tokenizers`` tokenizer.json (needs the ``tokenize`` extra)."""

    def __init__(self, path: str | Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise InputError("tokenizer.json needs the `tokenizers` package") from None
        try:
            self.tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise InputError(f"{path}: not a valid tokenizer.json ({exc})") from None

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def byte_lengths(self) -> np.ndarray:
        """Bytes each token id stands for: byte-level tokens (GPT-2 alphabet, one char
        per byte) count their chars, SentencePiece byte fallbacks ``<0xNN>`` one,
        ``▁`` one (a space), special tokens none, anything else its UTF-8 length."""
        from winnow.fast_bpe import token_bytes

        special = {i for i, t in self.tok.get_added_tokens_decoder().items() if t.special}
        table = np.zeros(self.tok.get_vocab_size(with_added_tokens=True), np.int64)
        for i in range(len(table)):
            s = self.tok.id_to_token(i)
            if s is None or i in special:
                continue
            raw = token_bytes(s)
            if raw is not None:
                table[i] = len(raw)
            elif len(s) == 6 and s.startswith("<0x") and s.endswith(">"):
                table[i] = 1
            else:
                table[i] = len(s.replace("\u2581", " ").encode("utf-8"))
        return table


def get_tokenizer(spec: str, dataset: BucketDataset):
    if spec == "auto":
        named = _manifest_tokenizer(dataset)
        if named:
            return HFTokenizer(named)
        if dataset.vocab_size == 257 and dataset.eos_id == 256:
            return ByteTokenizer()
        raise InputError(
            f"{dataset.root}: cannot tell the tokenizer for task scoring; set eval.tokenizer"
        )
    return ByteTokenizer() if spec == "bytes" else HFTokenizer(spec)


# --------------------------------------------------------------------------- scoring


def _next_pow2(n: int, floor: int = 16) -> int:
    return max(floor, 1 << (n - 1).bit_length())


def windows(n_tokens: int, width: int) -> list[tuple[int, int, int]]:
    """(start, end, first) windows over a sequence: predictions at window positions
    ``first..end-start-2`` are scored; together they score positions 0..n-2 once."""
    out, start, next_target = [], 0, 1
    stride = max(1, width // 2)
    while next_target <= n_tokens - 1:
        end = min(start + width, n_tokens)
        first = max(next_target, start + 1) - 1 - start
        out.append((start, end, first))
        next_target = end
        if end == n_tokens:
            break
        start += stride
    return out


def position_bin(pos: np.ndarray) -> np.ndarray:
    """Bin of a window position: 0 for 0-63, then one per power of two (64-127, ...)."""
    return np.maximum(0, np.floor(np.log2(np.maximum(pos, 1))).astype(np.int64) - 5)


def _bin_label(b: int) -> str:
    return "0-63" if b == 0 else f"{2 ** (b + 5)}-{2 ** (b + 6) - 1}"


@torch.no_grad()
def token_losses(
    model, seqs: list[np.ndarray], device, autocast=None, batch_tokens: int = 16384
) -> list[np.ndarray]:
    """Cross-entropy (nats) of predicting each next token of each sequence: for a
    sequence of n tokens, n - 1 values. Sequences are padded to a power of two and
    batched by that length."""
    out: list[np.ndarray | None] = [None] * len(seqs)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_len.setdefault(_next_pow2(len(s)), []).append(i)
    ctx = autocast or nullcontext()
    for n, idx in sorted(by_len.items()):
        rows = max(1, batch_tokens // n)
        for b in range(0, len(idx), rows):
            part = idx[b : b + rows]
            x = torch.zeros(len(part), n, dtype=torch.long)
            y = torch.full((len(part), n), -1, dtype=torch.long)
            for r, i in enumerate(part):
                s = torch.as_tensor(seqs[i].astype(np.int64))
                x[r, : len(s)] = s
                y[r, : len(s) - 1] = s[1:]
            with ctx:
                ce, _ = model(x.to(device), y.to(device))
            ce = ce.float().cpu().numpy()
            for r, i in enumerate(part):
                out[i] = ce[r, : len(seqs[i]) - 1]
    return out


def score_documents(
    model,
    docs: list[Document],
    eval_len: int,
    device,
    autocast=None,
    token_bytes: np.ndarray | None = None,
    batch_tokens: int = 16384,
    late_from: int = LATE_FROM,
) -> dict:
    """Per-source and overall loss (nats/token) and bits per byte over whole held-out
    documents, loss by window position (how much context the prediction had), and
    ``late``: the loss of predictions with at least ``late_from`` tokens of context,
    which small models learn later than unigram statistics (so it separates data
    choices that the overall loss, dominated by early positions, blurs)."""
    seqs, meta = [], []  # meta: (source, span, start, first)
    for doc in docs:
        for span in doc.spans:
            for start, end, first in windows(len(span), eval_len):
                seqs.append(span[start:end])
                meta.append((doc.source, span, start, first))
    losses = token_losses(model, seqs, device, autocast, batch_tokens)
    stats: dict[str, list[float]] = {}  # source -> [nats, tokens, bytes, docs]
    pos_nats: dict[int, list[float]] = {}
    late = [0.0, 0]
    for (source, span, start, first), ce in zip(meta, losses, strict=True):
        ce = ce[first:].astype(np.float64)
        targets = span[start + first + 1 : start + len(ce) + first + 1]
        s = stats.setdefault(source, [0.0, 0, 0, 0])
        s[0] += ce.sum()
        s[1] += len(ce)
        if token_bytes is not None:
            s[2] += int(token_bytes[targets.astype(np.int64)].sum())
        pos = np.arange(first, first + len(ce))
        late[0] += ce[pos >= late_from].sum()
        late[1] += int((pos >= late_from).sum())
        bins = position_bin(pos)
        for b in np.unique(bins):
            acc = pos_nats.setdefault(int(b), [0.0, 0])
            acc[0] += ce[bins == b].sum()
            acc[1] += int((bins == b).sum())
    for doc in docs:
        stats.setdefault(doc.source, [0.0, 0, 0, 0])[3] += 1

    def summary(nats, tokens, nbytes, ndocs):
        bpb = nats / LN2 / nbytes if token_bytes is not None and nbytes else None
        return {
            "loss": nats / tokens if tokens else None,
            "bpb": bpb,
            "tokens": int(tokens),
            "bytes": int(nbytes) if token_bytes is not None else None,
            "docs": int(ndocs),
        }

    total = [sum(v[i] for v in stats.values()) for i in range(4)]
    return {
        "all": summary(*total),
        "by_source": {k: summary(*v) for k, v in sorted(stats.items())},
        "by_position": {_bin_label(b): v[0] / v[1] for b, v in sorted(pos_nats.items())},
        "late": {
            "from": late_from,
            "loss": late[0] / late[1] if late[1] else None,
            "tokens": late[1],
        },
    }


# --------------------------------------------------------------------------- cloze tasks


def load_task(path: str | Path) -> list[dict]:
    """Multiple-choice items from JSONL, lm-eval-harness style: the prompt in ``query``,
    ``context`` or ``question``; ``choices`` (or ``endings``); the answer index in
    ``gold`` or ``label``; optional ``delimiter`` between prompt and choice (default " ")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: task file not found")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            prompt = next(raw[k] for k in ("query", "context", "question") if k in raw)
            choices = raw["choices"] if "choices" in raw else raw["endings"]
            gold = int(raw["gold"] if "gold" in raw else raw["label"])
        except (json.JSONDecodeError, StopIteration, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}:{n}: not a multiple-choice item ({exc!r})") from None
        if not isinstance(choices, list) or not 0 <= gold < len(choices):
            raise InputError(f"{path}:{n}: gold {gold} is not an index into choices")
        items.append(
            {
                "prompt": str(prompt),
                "choices": [str(c) for c in choices],
                "gold": gold,
                "delimiter": raw.get("delimiter", " "),
            }
        )
    return items


@torch.no_grad()
def choice_logprobs(
    model, tokenizer, item: dict, max_len: int, device, autocast=None
) -> list[float]:
    """Log-probability of each choice's tokens after the prompt (prompt cut from the
    left to fit ``max_len``)."""
    ctx = tokenizer.encode(item["prompt"])
    seqs, spans = [], []
    for choice in item["choices"]:
        cont = tokenizer.encode(item["delimiter"] + choice)
        full = (ctx + cont)[-max_len:]
        seqs.append(np.asarray(full, np.int64))
        spans.append(min(len(cont), len(full) - 1))
    losses = token_losses(model, seqs, device, autocast)
    return [-float(ce[len(ce) - k :].sum()) for ce, k in zip(losses, spans, strict=True)]


def score_task(model, tokenizer, items: list[dict], max_len: int, device, autocast=None) -> dict:
    """Accuracy by total log-probability (``acc``) and by log-probability per UTF-8 byte
    of the choice (``acc_norm``), and two continuous scores, which separate small
    models long before accuracy does (DataDecide): ``gold_lpb``, the mean
    log-probability per byte of the right choice, and ``gold_prob``, the mean
    probability of the right choice when the per-byte scores are normalised over the
    choices (a softmax)."""
    hits = hits_norm = 0
    gold_lpb = gold_prob = 0.0
    for item in items:
        lp = choice_logprobs(model, tokenizer, item, max_len, device, autocast)
        norm = np.array(
            [v / max(1, len(c.encode("utf-8"))) for v, c in zip(lp, item["choices"], strict=True)]
        )
        gold = item["gold"]
        hits += int(np.argmax(lp)) == gold
        hits_norm += int(np.argmax(norm)) == gold
        gold_lpb += norm[gold]
        weights = np.exp(norm - norm.max())
        gold_prob += weights[gold] / weights.sum()
    n = max(1, len(items))
    return {
        "acc": hits / n,
        "acc_norm": hits_norm / n,
        "gold_lpb": gold_lpb / n,
        "gold_prob": gold_prob / n,
        "n": len(items),
    }


def evaluate(model, dataset: BucketDataset, cfg, eval_len: int, device, autocast=None) -> dict:
    """Held-out documents of ``dataset`` and every task in ``cfg.tasks`` (an EvalConfig)."""
    was_training = model.training
    model.eval()
    docs = dataset.val_documents(cfg.max_docs_per_source)
    table = token_byte_table(cfg.token_bytes, dataset)
    out = {
        "heldout": score_documents(
            model, docs, eval_len, device, autocast, table, cfg.batch_tokens, cfg.late_from
        )
    }
    if cfg.tasks:
        tokenizer = get_tokenizer(cfg.tokenizer, dataset)
        out["tasks"] = {
            Path(p).stem: score_task(model, tokenizer, load_task(p), eval_len, device, autocast)
            for p in cfg.tasks
        }
    model.train(was_training)
    return out
