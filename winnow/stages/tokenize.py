"""Tokenize documents with a Hugging Face ``tokenizers`` tokenizer.

Adds ``tokens`` (``list<uint32>``, EOS appended per document) and ``n_tokens``
(``int64``, EOS included). The ``tokens`` field carries metadata that later stages
(decompose) copy into their manifest: ``winnow.tokenizer`` (name or path),
``winnow.tokenizer_sha256`` (see ``winnow.tokenizer.tokenizer_sha256``),
``winnow.vocab_size`` and ``winnow.eos_id`` (empty when no EOS is appended).

Encoding uses ``encode_batch_fast`` (no character offsets), which is the same ids as
``encode`` at lower cost. The tokenizer's own post-processor (e.g. a BOS template) is
off unless ``add_special_tokens`` is set.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
from pydantic import Field

from winnow.stages.base import MapStage, Output, Params
from winnow.table import TEXT, set_column

TOKENS = "tokens"
N_TOKENS = "n_tokens"
META_TOKENIZER = b"winnow.tokenizer"
META_SHA256 = b"winnow.tokenizer_sha256"
META_VOCAB = b"winnow.vocab_size"
META_EOS = b"winnow.eos_id"


class TokenizeParams(Params):
    tokenizer: str = Field(description="tokenizer.json path (or its folder) or a hub id")
    eos: str | int | None = Field(
        default="auto",
        description="EOS token or id appended per document; auto: <|endoftext|>, </s>, ...",
    )
    batch_size: int = Field(default=1024, gt=0, description="documents per encode_batch call")
    add_special_tokens: bool = Field(
        default=False, description="apply the tokenizer's own post-processor (BOS etc.)"
    )


class Tokenize(MapStage):
    """Tokenize ``text`` into ``tokens`` and ``n_tokens``."""

    name = "tokenize"
    Params = TokenizeParams

    _tokenizer = None

    def setup(self) -> None:
        from winnow.tokenizer import load_tokenizer, resolve_eos, tokenizer_sha256

        tokenizer = load_tokenizer(self.params.tokenizer)
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
        return Output(kept=table, stats={"tokens": float(n_tokens.sum())})

    def _encode(self, texts: list[str]) -> pa.ListArray:
        """One ``list<uint32>`` array for a batch of texts, EOS appended to each."""
        tok = self._tokenizer
        encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
        ids = [enc.ids for enc in encode(texts, add_special_tokens=self.params.add_special_tokens)]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.uint32, int(lengths.sum()))
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
