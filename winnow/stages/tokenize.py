"""Tokenize documents with a Hugging Face ``tokenizers`` tokenizer.

Adds ``tokens`` (``list<uint32>``, EOS appended per document) and ``n_tokens``
(``int64``, EOS included). The ``tokens`` field carries metadata that later stages
(decompose) copy into their manifest: ``winnow.tokenizer`` (name or path),
``winnow.tokenizer_sha256`` (see ``winnow.tokenizer.tokenizer_sha256``),
``winnow.vocab_size`` and ``winnow.eos_id`` (empty when no EOS is appended).

Two engines give the same ids as ``Tokenizer.encode``. ``hf`` calls
``encode_batch_fast`` (no character offsets). ``tiktoken`` runs an exact tiktoken
conversion of a byte-level BPE (``winnow.fast_bpe``: GPT-2 style tokenizers such as
``winnow train-tokenizer``'s), 3-5x faster per core. ``engine: auto`` (the
default) uses tiktoken whenever the conversion is exact and HF otherwise; the
``docs_tiktoken`` stat counts the documents tiktoken encoded. Output, metadata included,
is byte-identical either way. The tokenizer's own post-processor (e.g. a BOS template)
is off unless ``add_special_tokens`` is set, and a post-processor that adds tokens
means HF.
"""

from __future__ import annotations

import itertools
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
    tokenizer: str = Field(description="tokenizer.json path (or its folder) or a hub id")
    eos: str | int | None = Field(
        default="auto",
        description="EOS token or id appended per document; auto: <|endoftext|>, </s>, ...",
    )
    batch_size: int = Field(default=1024, gt=0, description="documents per encode_batch call")
    add_special_tokens: bool = Field(
        default=False, description="apply the tokenizer's own post-processor (BOS etc.)"
    )
    engine: Literal["auto", "hf", "tiktoken"] = Field(
        default="auto",
        description="encoder: tiktoken (exact conversion, faster), hf, or auto (tiktoken "
        "when the tokenizer converts exactly)",
    )


class Tokenize(MapStage):
    """Tokenize ``text`` into ``tokens`` and ``n_tokens``."""

    name = "tokenize"
    Params = TokenizeParams

    _tokenizer = None
    _tiktoken = None

    def setup(self) -> None:
        from winnow.fast_bpe import to_tiktoken
        from winnow.tokenizer import load_tokenizer, resolve_eos, tokenizer_sha256

        p = self.params
        tokenizer = load_tokenizer(p.tokenizer)
        if p.engine != "hf":
            conversion = to_tiktoken(tokenizer, add_special_tokens=p.add_special_tokens)
            if conversion.encoding is None and p.engine == "tiktoken":
                raise ConfigError(
                    f"{self.stage_id}.params.engine: tiktoken cannot encode {p.tokenizer} "
                    f"exactly: {conversion.reason}; use engine: hf or auto"
                )
            self._tiktoken = conversion.encoding
            log.info("%s: engine %s (%s)", self.stage_id, self.engine, conversion.reason or "exact")
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
        """The engine in use: ``tiktoken`` or ``hf``."""
        return "hf" if self._tiktoken is None else "tiktoken"

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
        stats = {"tokens": float(n_tokens.sum())}
        if self._tiktoken is not None:
            stats["docs_tiktoken"] = float(len(texts))
        return Output(kept=table, stats=stats)

    def _encode(self, texts: list[str]) -> pa.ListArray:
        """One ``list<uint32>`` array for a batch of texts, EOS appended to each."""
        if self._tiktoken is not None:
            from winnow.fast_bpe import encode_batch

            flat, lengths = encode_batch(self._tiktoken, texts)
        else:
            tok = self._tokenizer
            encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
            special = self.params.add_special_tokens
            ids = [enc.ids for enc in encode(texts, add_special_tokens=special)]
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
