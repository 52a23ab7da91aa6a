"""Small bucket directories for trainer tests, built from real text.

The "tokenizer" is raw UTF-8 bytes with EOS = 256 (vocab 257), so bits per byte
are exact. Documents are cut the Dataset Decomposition way: greedily the longest
bucket length that fits, the remainder shorter than the smallest bucket dropped.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa

from winnow.sample_text import docstrings, package_descriptions

EOS = 256
VOCAB = 257


@lru_cache(maxsize=4)
def real_docs(n_docstrings: int = 160, n_packages: int = 16, max_chars: int = 3000) -> tuple:
    """Real documents from two sources: stdlib docstrings and package READMEs."""
    out = []
    for i, doc in enumerate(docstrings()):
        if i >= n_docstrings:
            break
        out.append({"id": doc["id"], "text": doc["text"], "source": "docstring"})
    for i, doc in enumerate(package_descriptions()):
        if i >= n_packages:
            break
        out.append({"id": doc["id"], "text": doc["text"][:max_chars], "source": "package"})
    return tuple(out)


def junk_docs(n: int, seed: int = 0, chars: int = 600) -> list[dict]:
    """Noise documents (random printable bytes), the kind curation removes."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        size = int(rng.integers(chars // 3, chars))
        text = rng.integers(33, 127, size=size).astype(np.uint8).tobytes().decode()
        docs.append({"id": f"junk:{seed}:{i}", "text": text, "source": "junk"})
    return docs


def byte_tokens(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)


def decompose(n_tokens: int, lengths: list[int]) -> list[tuple[int, int]]:
    """(offset, length) pieces covering a document greedily, longest first."""
    pieces, offset = [], 0
    for n in sorted(lengths, reverse=True):
        while n_tokens - offset >= n:
            pieces.append((offset, n))
            offset += n
    return pieces


def _write(path: Path, rows: list[tuple[np.ndarray, str, str, int]], n: int, dtype: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = np.concatenate([r[0] for r in rows]).astype(dtype)
    value_type = pa.uint16() if dtype == "uint16" else pa.uint32()
    tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=value_type), n)
    table = pa.table(
        {
            "tokens": tokens,
            "doc_id": pa.array([r[1] for r in rows], pa.string()),
            "source": pa.array([r[2] for r in rows], pa.string()),
            "offset": pa.array([r[3] for r in rows], pa.int64()),
        }
    )
    with pa.ipc.new_file(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=max(1, len(rows) // 2))


def write_bucket_dir(
    root,
    docs,
    lengths=(32, 64, 128, 256),
    concat_len: int = 256,
    rows_per_shard: int = 150,
    token_dtype: str = "uint16",
) -> Path:
    """Write ``root/len_<N>/shard_*.arrow``, ``root/concat/len_<L>/`` and manifest.json."""
    root = Path(root)
    buckets: dict[int, list] = {n: [] for n in lengths}
    stream, starts = [], []
    dropped, source_tokens = 0, {}
    for doc in docs:
        toks = np.append(byte_tokens(doc["text"]), EOS).astype(np.uint32)
        source_tokens[doc["source"]] = source_tokens.get(doc["source"], 0) + len(toks)
        pieces = decompose(len(toks), list(lengths))
        dropped += len(toks) - sum(n for _, n in pieces)
        for offset, n in pieces:
            buckets[n].append((toks[offset : offset + n], doc["id"], doc["source"], offset))
        starts.append((sum(len(s) for s in stream), doc))
        stream.append(toks)
    manifest = {
        "token_dtype": token_dtype,
        "vocab_size": VOCAB,
        "eos_id": EOS,
        "buckets": {},
        "dropped_tokens": dropped,
        "source_tokens": source_tokens,
        "tokenizer_sha256": "bytes",
    }
    for n, rows in buckets.items():
        shards = []
        for i in range(0, len(rows), rows_per_shard):
            name = f"len_{n}/shard_{i // rows_per_shard:05d}.arrow"
            _write(root / name, rows[i : i + rows_per_shard], n, token_dtype)
            shards.append(name)
        manifest["buckets"][str(n)] = {
            "sequences": len(rows),
            "tokens": len(rows) * n,
            "shards": shards,
        }
    flat = np.concatenate(stream)
    begin = np.array([s for s, _ in starts])
    chunks = []
    for c in range(len(flat) // concat_len):
        d = int(np.searchsorted(begin, c * concat_len, side="right") - 1)
        doc = starts[d][1]
        chunks.append(
            (
                flat[c * concat_len : (c + 1) * concat_len],
                doc["id"],
                doc["source"],
                c * concat_len - int(begin[d]),
            )
        )
    name = f"concat/len_{concat_len}/shard_00000.arrow"
    _write(root / name, chunks, concat_len, token_dtype)
    manifest["concat"] = {
        "len": concat_len,
        "sequences": len(chunks),
        "tokens": len(chunks) * concat_len,
        "shards": [name],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root


def cloze_task(
    path, docs, n: int = 12, seed: int = 0, ctx_chars: int = 48, cont_chars: int = 12
) -> Path:
    """A multiple-choice file: continue a real sentence; distractors are random bytes."""
    rng = np.random.default_rng(seed)
    lines = []
    for doc in docs[:n]:
        text = doc["text"].replace("\n", " ")
        context, answer = text[:ctx_chars], text[ctx_chars : ctx_chars + cont_chars]
        junk = [
            rng.integers(97, 123, cont_chars).astype(np.uint8).tobytes().decode() for _ in range(2)
        ]
        gold = int(rng.integers(0, 3))
        choices = junk[:gold] + [answer] + junk[gold:]
        lines.append(json.dumps({"query": context, "choices": choices, "gold": gold}))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)
