"""Length-bucket decomposition, checked against a brute-force reference of the rule:
greedy largest power-of-two pieces, each inside its document, remainder dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from arrow_files import write_parts

from winnow.errors import InputError
from winnow.kernels.decompose import chunk_owners, greedy_plan
from winnow.sample_text import real_documents
from winnow.stages.base import Materialized
from winnow.stages.decompose import Decompose
from winnow.stages.tokenize import Tokenize
from winnow.tokenizer import train_tokenizer

LO, HI = 2, 5  # buckets 4 .. 32 keep the synthetic corpus tiny


def reference_pieces(n: int, lo: int, hi: int) -> list[tuple[int, int]]:
    """The rule as stated: take the largest allowed power of two that fits, repeat."""
    pieces, pos = [], 0
    while n - pos >= 2**lo:
        k = max(j for j in range(lo, hi + 1) if 2**j <= n - pos)
        pieces.append((pos, k))
        pos += 2**k
    return pieces


def synthetic_docs(seed: int = 0, n: int = 120, vocab: int = 50_000) -> list[dict]:
    rng = np.random.default_rng(seed)
    edge = [0, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 100, 200, 1000]
    lengths = edge + list(rng.integers(0, 150, n - len(edge)))
    sources = ["web", "books", None]
    return [
        {
            "id": f"d{rng.integers(1 << 30):09d}-{i}",
            "text": f"doc {i}",
            "source": sources[i % 3],
            "tokens": rng.integers(0, vocab, int(length)).tolist(),
            "n_tokens": int(length),
        }
        for i, length in enumerate(lengths)
    ]


SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("tokens", pa.list_(pa.uint32())),
        ("n_tokens", pa.int64()),
    ]
)


def write_files(folder: Path, docs: list[dict], parts: int, schema=SCHEMA) -> list[Path]:
    return write_parts(folder, docs, parts, schema)


def decompose(run: Path, files: list[Path], seed: int = 0, **params) -> tuple[pa.Table, dict]:
    params = {"min_log2": LO, "max_log2": HI, "shard_tokens": 256, **params}
    stage = Decompose(Decompose.Params(**params), stage_id="dec", seed=seed, run_dir=run)
    kept = pa.concat_tables(o.kept for o in stage.run(Materialized(files), run / "work"))
    return kept, json.loads((run / "buckets" / "manifest.json").read_text())


def read_layout(folder: Path) -> pa.Table:
    return pa.concat_tables(
        pa.ipc.open_file(str(f)).read_all() for f in sorted(folder.glob("shard_*.arrow"))
    )


def bucket_rows(root: Path, manifest: dict) -> list[tuple[str, int, list[int], str | None]]:
    rows = []
    for n in manifest["buckets"]:
        if manifest["buckets"][n]["sequences"]:
            t = read_layout(root / f"len_{n}")
            rows += zip(
                t["doc_id"].to_pylist(),
                t["offset"].to_pylist(),
                t["tokens"].to_pylist(),
                t["source"].to_pylist(),
                strict=True,
            )
    return rows


def test_kernel_matches_reference():
    lengths = np.arange(0, 700)
    doc, start, log2 = greedy_plan(lengths, 3, 7)
    got = [[] for _ in lengths]
    for d, s, k in zip(doc, start, log2, strict=True):
        got[d].append((int(s), int(k)))
    assert got == [reference_pieces(int(n), 3, 7) for n in lengths]
    owner, offset = chunk_owners(np.array([5, 0, 3, 9]), 4)  # stream of 17 -> 4 chunks
    assert owner.tolist() == [0, 0, 3, 3] and offset.tolist() == [0, 4, 0, 4]


def test_sequences_follow_the_reference_and_reconcile(tmp_path):
    docs = synthetic_docs()
    kept, manifest = decompose(tmp_path, write_files(tmp_path / "in", docs, 3))
    root = tmp_path / "buckets"
    by_doc: dict[str, list] = {}
    for doc_id, offset, tokens, source in bucket_rows(root, manifest):
        by_doc.setdefault(doc_id, []).append((offset, tokens, source))
    dropped = 0
    for doc in docs:
        n = len(doc["tokens"])
        pieces = sorted(by_doc.get(doc["id"], []))
        assert [(o, len(t).bit_length() - 1) for o, t, _ in pieces] == reference_pieces(n, LO, HI)
        for offset, tokens, source in pieces:
            assert tokens == doc["tokens"][offset : offset + len(tokens)]
            assert source == doc["source"]
        covered = sum(len(t) for _, t, _ in pieces)
        assert covered == n - n % 2**LO  # contiguous from 0, no overlap, tail dropped
        dropped += n - covered
    total = sum(len(d["tokens"]) for d in docs)
    bucket_tokens = sum(b["tokens"] for b in manifest["buckets"].values())
    assert manifest["dropped_tokens"] == dropped
    assert bucket_tokens + dropped == total == manifest["input_tokens"]
    assert sum(manifest["source_tokens"].values()) == bucket_tokens
    assert set(manifest["source_tokens"]) == {"web", "books", "null"}
    # kept rows: every document, sorted by id, tokens dropped, counts added
    assert kept["id"].to_pylist() == sorted(d["id"] for d in docs)
    assert kept.column_names == [
        "id",
        "text",
        "source",
        "n_tokens",
        "n_sequences",
        "dropped_tokens",
    ]
    assert sum(kept["n_sequences"].to_pylist()) == sum(len(v) for v in by_doc.values())
    assert sum(kept["dropped_tokens"].to_pylist()) == dropped


def test_layout_schema_and_manifest(tmp_path):
    docs = synthetic_docs()
    _, manifest = decompose(tmp_path, write_files(tmp_path / "in", docs, 2), eos_id=3)
    root = tmp_path / "buckets"
    assert manifest["token_dtype"] == "uint16" and manifest["eos_id"] == 3
    assert manifest["vocab_size"] is None and manifest["tokenizer_sha256"] is None
    assert sorted(manifest["buckets"], key=int) == ["4", "8", "16", "32"]
    for n, info in manifest["buckets"].items():
        per_shard = 256 // int(n)
        assert info["shards"] == [
            f"len_{n}/shard_{i:05d}.arrow" for i in range(len(info["shards"]))
        ]
        sizes = []
        for rel in info["shards"]:
            table = pa.ipc.open_file(str(root / rel)).read_all()
            assert table.schema == pa.schema(
                [
                    ("tokens", pa.list_(pa.uint16(), int(n))),
                    ("doc_id", pa.string()),
                    ("source", pa.string()),
                    ("offset", pa.int64()),
                ]
            )
            sizes.append(table.num_rows)
        assert sum(sizes) == info["sequences"] and info["tokens"] == info["sequences"] * int(n)
        assert all(s == per_shard for s in sizes[:-1]) and 0 < sizes[-1] <= per_shard
    assert not (tmp_path / "buckets.partial").exists()


def test_concat_baseline_matches_joined_stream(tmp_path):
    docs = synthetic_docs()
    _, manifest = decompose(tmp_path, write_files(tmp_path / "in", docs, 2), concat_len=48)
    ordered = sorted(docs, key=lambda d: d["id"])
    stream = [(t, d["id"], i, d["source"]) for d in ordered for i, t in enumerate(d["tokens"])]
    table = read_layout(tmp_path / "buckets" / "concat" / "len_48")
    n = len(stream) // 48
    assert manifest["concat"]["len"] == 48 and manifest["concat"]["sequences"] == n == len(table)
    assert manifest["concat"]["dropped_tokens"] == len(stream) - 48 * n
    for j, row in enumerate(table.to_pylist()):
        chunk = stream[48 * j : 48 * (j + 1)]
        assert row["tokens"] == [c[0] for c in chunk]
        assert (row["doc_id"], row["offset"], row["source"]) == chunk[0][1:]


def test_output_independent_of_sharding_and_order(tmp_path):
    docs = synthetic_docs(seed=1)
    shuffled = [docs[i] for i in np.random.default_rng(5).permutation(len(docs))]
    runs = []
    for name, rows, parts in [("a", docs, 1), ("b", shuffled, 4), ("c", shuffled[::-1], 7)]:
        kept, _ = decompose(tmp_path / name, write_files(tmp_path / name / "in", rows, parts))
        files = sorted((tmp_path / name / "buckets").rglob("*"))
        blobs = {f.relative_to(tmp_path / name): f.read_bytes() for f in files if f.is_file()}
        runs.append((kept, blobs))
    for kept, blobs in runs[1:]:
        assert kept.equals(runs[0][0])
        assert blobs == runs[0][1]


def test_duplicate_ids_are_ordered_by_content(tmp_path):
    docs = synthetic_docs(n=30)
    for i in range(0, 30, 3):
        docs[i]["id"] = "same"
    outs = []
    for name, rows in [("a", docs), ("b", docs[::-1])]:
        decompose(tmp_path / name, write_files(tmp_path / name / "in", rows, 3))
        outs.append((tmp_path / name / "buckets" / "manifest.json").read_bytes())
        outs.append(read_layout(tmp_path / name / "buckets" / "len_16"))
    assert outs[0] == outs[2] and outs[1].equals(outs[3])


def test_randomized_long_documents(tmp_path):
    docs = synthetic_docs(n=40)
    docs += [
        {
            **synthetic_docs(seed=9, n=15)[-1],
            "id": f"long{i}",
            "tokens": list(range(n)),
            "n_tokens": n,
        }
        for i, n in enumerate([300, 517, 1000, 2048])
    ]
    files = write_files(tmp_path / "in", docs, 2)
    _, greedy = decompose(tmp_path / "g", files)
    _, manifest = decompose(tmp_path / "r", files, randomize_long=True, seed=3)
    _, again = decompose(
        tmp_path / "r2", write_files(tmp_path / "in2", docs[::-1], 3), seed=3, randomize_long=True
    )
    root = tmp_path / "r" / "buckets"
    assert (root / "len_4" / "shard_00000.arrow").read_bytes() == (
        tmp_path / "r2" / "buckets" / "len_4" / "shard_00000.arrow"
    ).read_bytes()
    by_doc: dict[str, list] = {}
    for doc_id, offset, tokens, _ in bucket_rows(root, manifest):
        by_doc.setdefault(doc_id, []).append((offset, len(tokens)))
    long_sizes = []
    for doc in docs:
        n = len(doc["tokens"])
        pieces = sorted(by_doc.get(doc["id"], []))
        pos = 0
        for offset, size in pieces:  # contiguous powers of two inside the document
            assert offset == pos and size in (4, 8, 16, 32)
            if n - pos < 2 ** (HI + 1):
                assert size == 2 ** min(HI, (n - pos).bit_length() - 1)  # greedy near the end
            else:
                long_sizes.append(size)
            pos += size
        assert n - pos == n % 2**LO
    assert manifest["dropped_tokens"] == greedy["dropped_tokens"]
    counts = {s: long_sizes.count(s) for s in (4, 8, 16, 32)}
    assert counts[4] > counts[8] > counts[16] > counts[32]  # P(k) ~ 2**(hi - k)


def test_mix_repeat(tmp_path):
    docs = synthetic_docs(n=300)
    files = write_files(tmp_path / "in", docs, 2)
    _, base = decompose(tmp_path / "base", files, concat=False)
    kept, manifest = decompose(tmp_path / "mix", files, mix={"web": 2, "books": 0.5})
    pieces = {d["id"]: len(reference_pieces(len(d["tokens"]), LO, HI)) for d in docs}
    copies = {}
    for row in kept.to_pylist():
        if pieces[row["id"]]:
            copies[row["id"]] = row["n_sequences"] // pieces[row["id"]]
            assert row["n_sequences"] == copies[row["id"]] * pieces[row["id"]]
    by_source = {
        s: [copies[d["id"]] for d in docs if d["source"] == s and d["id"] in copies]
        for s in ("web", "books", None)
    }
    assert set(by_source["web"]) == {2} and set(by_source[None]) == {1}
    assert set(by_source["books"]) == {0, 1} and 0.3 < np.mean(by_source["books"]) < 0.7
    assert manifest["source_tokens"]["web"] == 2 * base["source_tokens"]["web"]
    assert manifest["source_tokens"]["null"] == base["source_tokens"]["null"]
    tails = {r["id"]: r["dropped_tokens"] for r in kept.to_pylist()}  # copies * n if no piece
    mixed = sum(
        len(d["tokens"]) * copies[d["id"]] if d["id"] in copies else tails[d["id"]] for d in docs
    )
    bucket_tokens = sum(b["tokens"] for b in manifest["buckets"].values())
    assert bucket_tokens + manifest["dropped_tokens"] == manifest["mixed_tokens"] == mixed
    assert manifest["concat"]["tokens"] + manifest["concat"]["dropped_tokens"] == mixed
    # the same mix with another seed picks other books documents
    kept2, _ = decompose(tmp_path / "mix2", files, seed=1, mix={"web": 2, "books": 0.5})
    assert kept2["n_sequences"].to_pylist() != kept["n_sequences"].to_pylist()


def test_mix_share(tmp_path):
    docs = [
        dict(d, source="real" if i % 4 else "synthetic")
        for i, d in enumerate(synthetic_docs(n=400))
    ]
    files = write_files(tmp_path / "in", docs, 2)
    _, manifest = decompose(
        tmp_path / "run", files, mix={"real": 1, "synthetic": 1}, mix_mode="share"
    )
    real, synthetic = manifest["source_tokens"]["real"], manifest["source_tokens"]["synthetic"]
    assert abs(real - synthetic) / (real + synthetic) < 0.1
    assert manifest["mix"]["factors"]["synthetic"] > 1 > manifest["mix"]["factors"]["real"]
    with pytest.raises(InputError, match="name each source"):
        decompose(tmp_path / "bad", files, mix={"real": 1}, mix_mode="share")


def test_large_vocabulary_uses_uint32(tmp_path):
    docs = synthetic_docs(n=20, vocab=100_000)
    _, manifest = decompose(tmp_path, write_files(tmp_path / "in", docs, 1))
    assert manifest["token_dtype"] == "uint32"
    table = read_layout(tmp_path / "buckets" / "len_32")
    assert table.schema.field("tokens").type == pa.list_(pa.uint32(), 32)
    with pytest.raises(InputError, match="does not fit uint16"):
        decompose(tmp_path / "x", write_files(tmp_path / "x" / "in", docs, 1), vocab_size=1000)


def test_replaces_stale_output_and_handles_empty_input(tmp_path):
    (tmp_path / "buckets" / "len_999").mkdir(parents=True)
    (tmp_path / "buckets.partial").mkdir()
    kept, manifest = decompose(tmp_path, write_files(tmp_path / "in", [], 1))
    assert kept.num_rows == 0 and "n_sequences" in kept.column_names
    assert manifest["documents"] == 0 and manifest["concat"]["sequences"] == 0
    assert sorted(p.name for p in (tmp_path / "buckets").iterdir()) == ["manifest.json"]


def test_real_text_round_trips_through_buckets(tmp_path):
    """Tokenize real documents, decompose with 1-token buckets allowed, decode each
    document's pieces in order: the text comes back exactly (byte-level BPE)."""
    docs = real_documents(120)
    shard = tmp_path / "run" / "data" / "shard-00000.arrow"
    write_files(shard.parent, [dict(d) for d in docs], 1, schema=pa.Table.from_pylist(docs).schema)
    tok_path = train_tokenizer(tmp_path / "run", tmp_path / "tokenizer.json", 600)
    stage = Tokenize(Tokenize.Params(tokenizer=str(tok_path)), stage_id="tok", seed=0)
    stage.setup()
    table = stage.process(pa.Table.from_pylist(docs)).kept
    files = []
    for i in range(2):  # as the runner materialises a map stage: one IPC file per part
        files.append(tmp_path / f"tok-{i}.arrow")
        with pa.ipc.new_file(str(files[-1]), table.schema) as writer:
            writer.write_table(table.slice(i * 60, 60))
    _, manifest = decompose(tmp_path, files, min_log2=0, max_log2=6)
    assert (
        manifest["tokenizer_sha256"]
        == table.schema.field("tokens").metadata[b"winnow.tokenizer_sha256"].decode()
    )
    assert (
        manifest["vocab_size"] == 600
        and manifest["eos_id"] == 0
        and manifest["dropped_tokens"] == 0
    )
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    by_doc: dict[str, list] = {}
    for doc_id, offset, tokens, _ in bucket_rows(tmp_path / "buckets", manifest):
        by_doc.setdefault(doc_id, []).append((offset, tokens))
    for doc in docs:
        ids = [t for _, piece in sorted(by_doc[doc["id"]]) for t in piece]
        assert ids[-1] == 0 and tok.decode(ids) == doc["text"]
