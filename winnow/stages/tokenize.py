"""Tokenize documents with the ids of a Hugging Face ``tokenizers`` tokenizer.

Adds ``tokens`` (``list<uint32>``, EOS appended per document) and ``n_tokens``
(``int64``, EOS included). The ``tokens`` field carries metadata that later stages
(decompose) copy into their manifest: ``winnow.tokenizer`` (name or path),
``winnow.tokenizer_sha256`` (see ``winnow.tokenizer.tokenizer_sha256``),
``winnow.vocab_size`` and ``winnow.eos_id`` (empty when no EOS is appended).

Every engine gives the ids of ``Tokenizer.encode`` (``winnow.tokenize_engines``):
``hf`` (``tokenizers`` itself), ``tiktoken`` (proven exact for the byte-level BPEs
``winnow.fast_bpe`` converts), and ``fastokens`` / ``tokie`` (native encoders,
20-100x faster than HF per core, used only after they match HF on a probe of
adversarial, random and vocabulary text at setup). ``engine: auto`` (the default)
takes the fastest exact one, else HF; a requested engine that is not exact for the
tokenizer is a config error. The ``docs_<engine>`` stat counts the documents each
engine encoded. Output, metadata included, is byte-identical whatever the engine.
The tokenizer's own post-processor (e.g. a BOS template) is off unless
``add_special_tokens`` is set.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from winnow.errors import ConfigError
from winnow.stages.base import MapStage, Output, Params
from winnow.table import TEXT, set_column

TOKENS = "tokens"
N_TOKENS = "n_tokens"
META_TOKENIZER = b"winnow.tokenizer"
META_SHA256 = b"winnow.tokenizer_sha256"
META_VOCAB = b"winnow.vocab_size"
META_EOS = b"winnow.eos_id"

log = logging.getLogger(__name__)


class TokenizeParams(Params):
    tokenizer: str
    """A ``tokenizer.json`` path (or its folder) or a hub id."""
    eos: str | int | None = "auto"
    """EOS token or id appended to each document; auto: ``<|endoftext|>``, ``</s>``, ..."""
    batch_size: int = Field(default=1024, gt=0)
    """Documents per ``encode_batch`` call."""
    add_special_tokens: bool = False
    """Apply the tokenizer's own post-processor (BOS etc.)."""
    engine: Literal["auto", "hf", "tiktoken", "fastokens", "tokie"] = "auto"
    """The encoder: auto (the fastest one exact for this tokenizer: fastokens, tokie,
    tiktoken, else hf) or one by name (a config error if it is not exact)."""


class Tokenize(MapStage):
    """Tokenize ``text`` into ``tokens`` and ``n_tokens``."""

    name = "tokenize"
    materialize = True  # token ids are costly: a stage after it reuses them
    requires = {"tokenizers": "tokenize"}  # the other engines are optional: auto skips them
    Params = TokenizeParams

    _tokenizer = None
    _choice = None

    def setup(self) -> None:
        from winnow.tokenize_engines import NotExact, choose
        from winnow.tokenizer import load_tokenizer, resolve_eos, tokenizer_sha256

        p = self.params
        tokenizer = load_tokenizer(p.tokenizer)
        try:
            self._choice, skipped = choose(p.engine, tokenizer, p.add_special_tokens)
        except NotExact as exc:
            raise ConfigError(
                f"{self.stage_id}.params.engine: {p.engine} cannot encode {p.tokenizer} "
                f"exactly: {exc}; use engine: hf or auto"
            ) from None
        passed = "; ".join(f"not {name}: {why}" for name, why in skipped.items())
        log.info(
            "%s: engine %s, %s%s",
            self.stage_id,
            self.engine,
            self._choice.reason,
            f" ({passed})" if passed else "",
        )
        self.eos_id = resolve_eos(tokenizer, self.params.eos)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.field = pa.field(
            TOKENS,
            pa.list_(pa.uint32()),
            metadata={
                META_TOKENIZER: self.params.tokenizer,
                META_SHA256: tokenizer_sha256(tokenizer),
                META_VOCAB: str(self.vocab_size),
                META_EOS: "" if self.eos_id is None else str(self.eos_id),
            },
        )
        self._tokenizer = tokenizer

    @property
    def engine(self) -> str:
        """The engine in use: ``hf``, ``tiktoken``, ``fastokens`` or ``tokie``."""
        return self._choice.engine

    def process(self, table: pa.Table) -> Output:
        if self._tokenizer is None:
            self.setup()
        texts = [t or "" for t in table.column(TEXT).to_pylist()]
        step = self.params.batch_size
        chunks = [self._encode(texts[i : i + step]) for i in range(0, len(texts), step)]
        tokens = pa.chunked_array(chunks, self.field.type)
        lengths = [np.diff(chunk.offsets.to_numpy()) for chunk in chunks]
        n_tokens = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        if TOKENS in table.column_names:
            table = table.drop_columns([TOKENS])
        table = table.append_column(self.field, tokens)
        table = set_column(table, N_TOKENS, pa.array(n_tokens, pa.int64()))
        stats = {"tokens": float(n_tokens.sum()), f"docs_{self.engine}": float(len(texts))}
        return Output(kept=table, stats=stats)

    def _encode(self, texts: list[str]) -> pa.ListArray:
        """One ``list<uint32>`` array for a batch of texts, EOS appended to each."""
        flat, lengths = self._choice.encode(texts)
        if self.eos_id is not None:
            lengths += 1
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            keep = np.ones(offsets[-1], bool)
            keep[offsets[1:] - 1] = False
            values = np.full(offsets[-1], self.eos_id, np.uint32)
            values[keep] = flat
        else:
            offsets, values = np.concatenate([[0], np.cumsum(lengths)]), flat
        if offsets[-1] >= 2**31:
            raise ValueError("too many tokens in one batch; lower batch_size")
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))
