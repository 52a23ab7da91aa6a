"""Bucket shards, the held-out split, curricula, the loader and the concat baseline."""

import json
from collections import Counter

import numpy as np
import pytest
import xxhash
from trainer_fixtures import EOS, byte_tokens, decompose, real_docs, write_bucket_dir

from winnow.errors import InputError
from winnow.trainer.curricula import CURRICULA, Schedule, get_curriculum
from winnow.trainer.data import BucketDataset, held_out
from winnow.trainer.loader import Loader, rows_for

LENGTHS = (32, 64, 128, 256)


@pytest.fixture(scope="module")
def bucket_dir(tmp_path_factory):
    return write_bucket_dir(tmp_path_factory.mktemp("b") / "buckets", real_docs(), LENGTHS)


@pytest.fixture(scope="module")
def ds(bucket_dir):
    return BucketDataset(bucket_dir, val_fraction=0.1)


def kept_tokens(doc) -> np.ndarray:
    """The document's tokens the fixture decomposer kept (a prefix of text + EOS)."""
    toks = np.append(byte_tokens(doc["text"]), EOS)
    return toks[: sum(n for _, n in cut(doc))]


def cut(doc) -> list[tuple[int, int]]:
    """The fixture decomposer's (offset, length) pieces of a document."""
    return decompose(len(byte_tokens(doc["text"])) + 1, list(LENGTHS))


def pieces_of(doc) -> list[np.ndarray]:
    """The document's kept tokens (uint16), cut into the fixture decomposer's pieces."""
    toks = kept_tokens(doc).astype(np.uint16)
    return [toks[o : o + n] for o, n in cut(doc)]


def in_stream(doc) -> bytes:
    """A document as the concat stream holds it, without its closing EOS."""
    kept = kept_tokens(doc)
    return (kept[:-1] if kept[-1] == EOS else kept).astype(np.uint16).tobytes()


def test_tables_and_split_partition_rows(ds):
    assert ds.lengths == list(LENGTHS) and ds.vocab_size == 257 and ds.eos_id == EOS
    assert set(ds.sources) == {"docstring", "package"}
    for n, t in ds.tables.items():
        val = np.isin(t.doc_key, ds.val_keys)
        assert not val[ds.train_rows[n]].any()
        assert len(ds.train_rows[n]) + val.sum() + ds.val_copy_rows.get(n, 0) == t.num_rows
    # every held-out doc is held out in every bucket: pieces of one doc stay together
    train_keys = {int(k) for n, t in ds.tables.items() for k in t.doc_key[ds.train_rows[n]]}
    assert not train_keys & {int(k) for k in ds.val_keys}
    # the hash rule, and at least one held-out doc per source
    n_rule = int(
        held_out(np.unique(np.concatenate([t.doc_key for t in ds.tables.values()])), 0.1).sum()
    )
    assert n_rule <= len(ds.val_keys) <= n_rule + len(ds.sources)
    assert {d.source for d in ds.val_documents()} == {"docstring", "package"}


def test_same_docs_held_out_in_every_variant(tmp_path, ds):
    docs = real_docs()
    subset = write_bucket_dir(tmp_path / "sub", docs[::3], LENGTHS)
    sub = BucketDataset(subset, val_fraction=0.1, min_val_docs_per_source=0)
    full = BucketDataset(ds.root, val_fraction=0.1, min_val_docs_per_source=0)
    sub_keys = {int(k) for t in sub.tables.values() for k in t.doc_key}
    assert set(map(int, sub.val_keys)) == set(map(int, full.val_keys)) & sub_keys


def test_copies_of_held_out_text_are_not_trained_on(tmp_path, ds):
    docs = list(real_docs())
    by_key = {xxhash.xxh64_intdigest(d["id"]): d for d in docs}
    copies = [{**by_key[int(k)], "id": f"{by_key[int(k)]['id']}#copy"} for k in ds.val_keys]
    keys = np.array([xxhash.xxh64_intdigest(c["id"]) for c in copies], np.uint64)
    copies = [c for c, out in zip(copies, held_out(keys, 0.1), strict=True) if not out]
    assert copies
    dup = BucketDataset(write_bucket_dir(tmp_path / "dup", docs + copies, LENGTHS), 0.1)
    assert set(map(int, dup.val_keys)) == set(map(int, ds.val_keys))
    copy_keys = {xxhash.xxh64_intdigest(c["id"]) for c in copies}
    for n, t in dup.tables.items():  # brute force over row bytes
        val = np.isin(t.doc_key, dup.val_keys)
        val_rows = {t.tokens([r])[0].tobytes() for r in np.flatnonzero(val)}
        expected = [r for r in np.flatnonzero(~val) if t.tokens([r])[0].tobytes() not in val_rows]
        assert list(dup.train_rows[n]) == expected
        assert not copy_keys & set(map(int, t.doc_key[dup.train_rows[n]]))
    assert sum(dup.val_copy_rows.values()) >= sum(len(cut(c)) for c in copies)


def test_val_documents_rebuild_the_text(ds):
    by_id = {xxhash.xxh64_intdigest(doc["id"]): doc for doc in real_docs()}
    docs = ds.val_documents()
    assert docs and len(docs) == len(ds.val_keys)
    for d in docs:
        assert len(d.spans) == 1
        np.testing.assert_array_equal(d.spans[0], kept_tokens(by_id[d.key]))
    limited = ds.val_documents(max_docs_per_source=1)
    assert Counter(d.source for d in limited) == {"docstring": 1, "package": 1}


def test_curriculum_schedules():
    lengths, tokens = [32, 64, 128, 256], [1000, 2000, 4000, 8000]
    nat = Schedule(get_curriculum("natural"), lengths, tokens, total_steps=150, cycles=1)
    counts = Counter(nat.bucket_at(s) for s in range(150))
    assert [counts[n] for n in lengths] == [10, 20, 40, 80]  # steps in proportion to tokens
    uni = Schedule(get_curriculum("uniform"), lengths, tokens, 80, cycles=2, seed=3)
    assert set(Counter(uni.bucket_at(s) for s in range(80)).values()) == {20}
    # pure function of (seed, step): a fresh object, any query order, gives the same buckets
    a = Schedule(get_curriculum("grow-P2"), lengths, tokens, 200, 4, seed=7)
    b = Schedule(get_curriculum("grow_p2"), lengths, tokens, 200, 4, seed=7)
    steps = list(range(200))
    assert [a.bucket_at(s) for s in steps] == [b.bucket_at(s) for s in reversed(steps)][::-1]
    c = Schedule(get_curriculum("grow_p2"), lengths, tokens, 200, 4, seed=8)
    assert [a.bucket_at(s) for s in steps] != [c.bucket_at(s) for s in steps]
    # grow: short sequences early within each cycle; shrink: the reverse; cyclic
    grow = Schedule(get_curriculum("grow_p100"), lengths, tokens, 300, cycles=2)
    shrink = Schedule(get_curriculum("shrink"), lengths, tokens, 300, cycles=2)
    for cycle in (range(0, 150), range(150, 300)):
        g = np.array([grow.bucket_at(s) for s in cycle])
        s = np.array([shrink.bucket_at(s) for s in cycle])
        mean_pos_g = [np.flatnonzero(g == n).mean() for n in lengths]
        mean_pos_s = [np.flatnonzero(s == n).mean() for n in lengths]
        assert mean_pos_g == sorted(mean_pos_g) and mean_pos_s == sorted(mean_pos_s)[::-1]
        assert g[0] == 32 and g[-1] == 256 and s[0] == 256 and s[-1] == 32


def test_weighted_order_matches_sequential_sampling():
    """Efraimidis-Spirakis keys reproduce 'pick bucket i with probability odds_i x
    remaining_i': check the first two draws against that rule over many seeds."""
    lengths, tokens = [32, 64, 128], [3, 2, 1]
    cur = get_curriculum("grow_p2")  # odds 4:2:1
    first, second = Counter(), Counter()
    for seed in range(4000):
        s = Schedule(cur, lengths, tokens, total_steps=6, cycles=1, seed=seed)
        first[s.bucket_at(0)] += 1
        second[(s.bucket_at(0), s.bucket_at(1))] += 1
    odds, counts = np.array([4.0, 2.0, 1.0]), np.array([3, 2, 1])
    p1 = odds * counts / (odds * counts).sum()
    for i, n in enumerate(lengths):
        assert abs(first[n] / 4000 - p1[i]) < 0.03
    rem = counts.copy()
    rem[0] -= 1
    p2 = odds * rem / (odds * rem).sum()
    for j, n in enumerate(lengths):
        assert abs(second[(32, n)] / first[32] - p2[j]) < 0.04
    assert sorted(CURRICULA) == [
        "grow_linear",
        "grow_p100",
        "grow_p2",
        "natural",
        "shrink",
        "uniform",
    ]


def test_loader_constant_tokens_epochs_and_ranks(ds):
    sources = ds.bucket_sources()
    sched = Schedule(
        get_curriculum("grow_p2"),
        list(sources),
        [s.num_tokens for s in sources.values()],
        40,
        2,
        seed=1,
    )
    loader = Loader(sources, sched, tokens_per_step=1024, seed=1)
    r0 = Loader(sources, sched, 1024, seed=1, rank=0, world=2)
    r1 = Loader(sources, sched, 1024, seed=1, rank=1, world=2)
    for step in range(40):
        b, b0, b1 = loader.next(), r0.next(), r1.next()
        assert b.length == sched.bucket_at(step) and b.tokens.size == 1024
        merged = np.empty_like(b.tokens)
        merged[0::2], merged[1::2] = b0.tokens, b1.tokens
        np.testing.assert_array_equal(merged, b.tokens)
    # rows come from per-epoch permutations: one epoch visits every row once
    n = sources[256].num_rows
    assert sorted(rows_for(1, 256, n, 0, n)) == list(range(n))
    assert sorted(rows_for(1, 256, n, 5, n)[-5:]) != []  # wraps into the next epoch
    # state round trip continues the exact stream
    state = json.loads(json.dumps(loader.state_dict()))
    expect = [loader.next().tokens for _ in range(5)]
    again = Loader(sources, sched, 1024, seed=1)
    again.load_state_dict(state)
    for e in expect:
        np.testing.assert_array_equal(again.next().tokens, e)
    with pytest.raises(ValueError, match="not a multiple"):
        Loader(sources, sched, tokens_per_step=96, seed=1)


def test_concat_stream_is_the_training_documents_joined(ds):
    stream = ds.concat_source(128, seed=3)
    # rebuild the whole virtual stream from its segments
    parts = []
    for t, r, n in zip(stream.seg_table, stream.seg_row, stream.seg_len, strict=True):
        parts.append([EOS] if t < 0 else stream._tables[t].tokens([r])[0][:n])
    full = np.concatenate(parts)
    rows = stream.get(np.arange(stream.num_rows))
    np.testing.assert_array_equal(rows.ravel(), full[: stream.num_rows * 128])
    assert len(full) - stream.num_rows * 128 < 128
    # split at EOS: exactly the kept tokens of every training document, less any piece
    # that repeats a held-out piece (brute force over the fixture's decomposition)
    val_keys = set(map(int, ds.val_keys))
    docs = real_docs()
    held = {d["id"]: xxhash.xxh64_intdigest(d["id"]) in val_keys for d in docs}
    pieces = {d["id"]: pieces_of(d) for d in docs}
    val_pieces = {p.tobytes() for d in docs if held[d["id"]] for p in pieces[d["id"]]}
    expected = Counter()
    for d in docs:
        kept = [p for p in pieces[d["id"]] if p.tobytes() not in val_pieces]
        if not held[d["id"]] and kept:
            kept = np.concatenate(kept)
            expected[(kept[:-1] if kept[-1] == EOS else kept).tobytes()] += 1
    bounds = np.flatnonzero(full == EOS)
    got = Counter(s[:-1].astype(np.uint16).tobytes() for s in np.split(full, bounds + 1)[:-1])
    assert got == expected
    # a different seed shuffles documents, same tokens
    other = ds.concat_source(128, seed=4)
    assert other.num_rows == stream.num_rows
    assert not np.array_equal(other.get([0, 1]), stream.get([0, 1]))
    # the writer's concat shards, held-out rows removed
    shards = ds.concat_source(256, seed=0, from_shards=True)
    assert 0 < shards.num_rows and not np.isin(shards.table.doc_key[shards.rows], ds.val_keys).any()


def test_concat_stream_keeps_repeated_documents_whole(tmp_path):
    """Source mixing repeats a document (same id, same offsets): each copy stays whole."""
    docs = [d for d in real_docs() if len(d["text"]) > 200][:12]
    ds = BucketDataset(
        write_bucket_dir(tmp_path / "rep", docs + docs, LENGTHS), 0.0, min_val_docs_per_source=0
    )
    stream = ds.concat_source(64, seed=0)
    parts = [
        [EOS] if t < 0 else stream._tables[t].tokens([r])[0]
        for t, r in zip(stream.seg_table, stream.seg_row, strict=True)
    ]
    full = np.concatenate(parts)
    pieces = np.split(full, np.flatnonzero(full == EOS) + 1)[:-1]
    got = Counter(p[:-1].astype(np.uint16).tobytes() for p in pieces)
    assert got == Counter(in_stream(d) for d in docs + docs)


def test_uint32_tokens_and_input_errors(tmp_path):
    root = write_bucket_dir(
        tmp_path / "u32", real_docs()[:30], (32, 64), concat_len=64, token_dtype="uint32"
    )
    ds = BucketDataset(root, val_fraction=0.2)
    assert ds.tables[32].chunks[0].dtype == np.uint32 and ds.token_dtype == "uint32"
    assert len(ds.fingerprint()) == 32
    with pytest.raises(InputError, match="manifest.json: bucket manifest not found"):
        BucketDataset(tmp_path / "nowhere")
    (root / "len_48").mkdir()
    (root / "len_32" / "shard_00000.arrow").rename(root / "len_48" / "shard_00000.arrow")
    with pytest.raises(InputError, match=r"fixed_size_list\[48\]"):
        BucketDataset(root)
