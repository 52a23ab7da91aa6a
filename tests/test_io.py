"""Readers and writers on real files: formats, chunking, quarantine, determinism."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from winnow.config import InputSpec
from winnow.errors import InputError
from winnow.io.chunks import Chunk
from winnow.io.discovery import plan_chunks
from winnow.io.readers import read_chunk
from winnow.io.writers import ShardWriter, read_table, write_table
from winnow.stages.base import Materialized
from winnow.table import conform, unify_schemas

DOCS = [
    {"id": "a1", "text": "first document", "url": "http://a/1", "score": 0.5},
    {"id": "a2", "text": 'second, with "quotes" and é', "url": "http://a/2", "score": 2},
    {"text": "third has no id", "url": "http://a/3", "score": 1.25},
    {"id": 7, "text": "fourth has an integer id", "url": None, "score": 3},
]
# What reading DOCS from data/docs.jsonl must give (derived id for line 3).
EXPECTED = [
    ("a1", "first document", "http://a/1", 0.5),
    ("a2", 'second, with "quotes" and é', "http://a/2", 2.0),
    ("data/docs.jsonl:3", "third has no id", "http://a/3", 1.25),
    ("7", "fourth has an integer id", None, 3.0),
]


def jsonl_bytes(rows) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_all(spec: InputSpec, chunk_rows: int = 1000):
    """Every chunk's table and rejected rows, concatenated in chunk order."""
    results = [read_chunk(c, spec) for c in plan_chunks(spec, chunk_rows)]
    schema = unify_schemas([r.table.schema for r in results])
    table = pa.concat_tables([conform(r.table, schema) for r in results])
    return table, pa.concat_tables([r.rejected for r in results])


def rows(table: pa.Table, *cols: str) -> list[tuple]:
    return list(zip(*(table.column(c).to_pylist() for c in cols), strict=True))


# --------------------------------------------------------------------------- formats


def test_jsonl_roundtrip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(Path("data/docs.jsonl"), jsonl_bytes(DOCS))
    table, rejected = read_all(InputSpec(path="data/docs.jsonl"))
    assert table.column_names == ["id", "text", "score", "url"]
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("text").type == pa.string()
    assert rows(table, "id", "text", "url", "score") == EXPECTED
    assert rejected.num_rows == 0


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    raw = jsonl_bytes(DOCS)
    packed = gzip.compress(raw) if suffix.endswith(".gz") else zstandard.compress(raw)
    write(Path("data/docs" + suffix), packed)
    spec = InputSpec(path="data/")
    chunks = plan_chunks(spec, 2)
    assert len(chunks) == 1  # a compressed stream is one chunk
    table, _ = read_all(spec, 2)
    expected = [
        (f"data/docs{suffix}:3" if i == 2 else e[0],) + e[1:] for i, e in enumerate(EXPECTED)
    ]
    assert rows(table, "id", "text", "url", "score") == expected


def parquet_table() -> pa.Table:
    return pa.table(
        {
            "doc_id": pa.array([10, 11, None, 13], pa.int64()),
            "content": pa.array(["p0", "p1", "p2", "p3"], pa.large_string()),
            "lang": ["en", "fr", "de", "en"],
        }
    )


def test_parquet_roundtrip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    pq.write_table(parquet_table(), "data/p.parquet", row_group_size=1)
    spec = InputSpec(path="data/*.parquet", text_field="content", id_field="doc_id")
    assert [(c.start, c.stop) for c in plan_chunks(spec, 2)] == [(0, 2), (2, 4)]
    table, rejected = read_all(spec, 2)
    assert table.column_names == ["id", "text", "lang"]
    assert table.schema.field("text").type == pa.string()
    assert rows(table, "id", "text", "lang") == [
        ("10", "p0", "en"),
        ("11", "p1", "fr"),
        ("data/p.parquet:2", "p2", "de"),  # row index, 0-based
        ("13", "p3", "en"),
    ]
    assert rejected.num_rows == 0


def test_parquet_through_fsspec_url(tmp_path):
    path = tmp_path / "data" / "p.parquet"
    path.parent.mkdir()
    pq.write_table(parquet_table(), path)
    spec = InputSpec(path=f"file://{path}", text_field="content", id_field=None)
    chunks = plan_chunks(spec, 100)
    assert chunks[0].path == f"file://{path}"
    table, _ = read_all(spec)
    assert rows(table, "id", "text") == [(f"data/p.parquet:{i}", f"p{i}") for i in range(4)]
    assert table.column("doc_id").to_pylist() == [10, 11, None, 13]


@pytest.mark.parametrize("stream", [False, True])
def test_arrow_ipc_roundtrip(tmp_path, monkeypatch, stream):
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    table = pa.table({"text": [f"t{i}" for i in range(10)], "n": list(range(10))})
    opener = pa.ipc.new_stream if stream else pa.ipc.new_file
    with opener("data/t.arrow", table.schema) as writer:
        writer.write_table(table, max_chunksize=3)
    spec = InputSpec(path="data/t.arrow")
    assert [(c.start, c.stop) for c in plan_chunks(spec, 4)] == [(0, 4), (4, 8), (8, 10)]
    out, _ = read_all(spec, 4)
    assert rows(out, "id", "text", "n") == [(f"data/t.arrow:{i}", f"t{i}", i) for i in range(10)]


def test_hf_save_to_disk_dir(tmp_path):
    datasets = pytest.importorskip("datasets")
    saved = tmp_path / "mycorpus"
    datasets.Dataset.from_dict({"text": ["h0", "h1", "h2"], "label": [0, 1, 0]}).save_to_disk(
        str(saved)
    )
    spec = InputSpec(path=str(saved), format="hf")
    assert [(c.start, c.stop) for c in plan_chunks(spec, 2)] == [(0, 2), (2, 3)]
    table, _ = read_all(spec, 2)
    assert rows(table, "id", "text", "label") == [
        ("mycorpus:0", "h0", 0),
        ("mycorpus:1", "h1", 1),
        ("mycorpus:2", "h2", 0),
    ]


def test_hf_dataset_dict_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["tr"]}),
            "test": datasets.Dataset.from_dict({"text": ["te0", "te1"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    table, _ = read_all(InputSpec(path=str(tmp_path / "dd"), format="hf", hf_split="test"))
    assert rows(table, "id", "text") == [("dd/test:0", "te0"), ("dd/test:1", "te1")]


def test_same_relative_name_under_two_inputs_stays_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(Path("a/data/x.jsonl"), b'{"text": "a"}\n')
    write(Path("b/data/x.jsonl"), b'{"text": "b"}\n')
    table, _ = read_all(InputSpec(path=["a/data", "b/data"], id_field=None))
    assert rows(table, "id", "text") == [("data/x.jsonl:1", "a"), ("b/data/x.jsonl:1", "b")]


def test_explicit_format_filters_directory(tmp_path):
    write(tmp_path / "d" / "a.jsonl", b'{"text": "a"}\n')
    pq.write_table(pa.table({"text": ["p"]}), tmp_path / "d" / "b.parquet")
    spec = InputSpec(path=str(tmp_path / "d"), format="parquet")
    assert [c.fmt for c in plan_chunks(spec, 10)] == ["parquet"]
    assert [c.fmt for c in plan_chunks(InputSpec(path=str(tmp_path / "d")), 10)] == [
        "jsonl",
        "parquet",
    ]


def test_directory_expansion_sorted_and_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(Path("corpus/b.jsonl"), b'{"text": "b"}\n')
    write(Path("corpus/a/z.jsonl"), b'{"text": "az"}\n')
    write(Path("corpus/README.md"), b"not data\n")
    write(Path("corpus/.hidden.jsonl"), b'{"text": "hidden"}\n')
    table, _ = read_all(InputSpec(path="corpus", id_field=None))
    assert rows(table, "id", "text") == [("corpus/a/z.jsonl:1", "az"), ("corpus/b.jsonl:1", "b")]


def test_explicit_file_of_unknown_type_is_an_error(tmp_path):
    path = write(tmp_path / "notes.txt", b"hello\n")
    with pytest.raises(InputError, match="notes.txt: unknown file type"):
        plan_chunks(InputSpec(path=str(path)), 10)
    # ...unless the format is given
    assert plan_chunks(InputSpec(path=str(path), format="jsonl"), 10)[0].fmt == "jsonl"


# --------------------------------------------------------------------------- chunking


def test_jsonl_chunking_matches_one_chunk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = []
    for i in range(1, 51):
        if i % 7 == 0:
            lines.append(b"   ")  # blank lines are skipped, not rows
        elif i % 11 == 0:
            lines.append(b'{"text": "bad",')
        else:
            lines.append(json.dumps({"text": f"doc {i}", "n": i, "m": {"k": [i]}}).encode())
    write(Path("data/big.jsonl"), b"\n".join(lines))  # no final newline
    spec = InputSpec(path="data/big.jsonl", id_field=None)
    chunks = plan_chunks(spec, 8)
    assert len(chunks) == 7
    assert [c.first_line for c in chunks] == [1, 9, 17, 25, 33, 41, 49]
    whole, whole_bad = read_all(spec, 1000)
    split, split_bad = read_all(spec, 8)
    assert whole.equals(split)
    assert whole_bad.equals(split_bad)
    good = [i for i in range(1, 51) if i % 7 and i % 11]
    assert whole.column("id").to_pylist() == [f"data/big.jsonl:{i}" for i in good]
    assert whole.column("m").to_pylist() == [f'{{"k":[{i}]}}' for i in good]
    assert whole_bad.column("line").to_pylist() == [11, 22, 33, 44]


def test_chunk_offsets_are_newline_aligned(tmp_path):
    path = write(tmp_path / "x.jsonl", b"".join(b'{"text": "%d"}\n' % i for i in range(25)))
    chunks = plan_chunks(InputSpec(path=str(path)), 10)
    data = path.read_bytes()
    assert [(c.start, c.stop) for c in chunks] == [
        (0, 140),
        (140, 290),
        (290, len(data)),
    ]
    assert all(data[c.start - 1 : c.start] == b"\n" for c in chunks[1:])
    assert [c.index for c in chunks] == [0, 1, 2]


def test_nested_and_date_metadata_independent_of_chunking(tmp_path):
    # A timestamp-looking string, ints and floats in one field, nested values with
    # keys in different orders and nulls: each row must read the same alone or not.
    docs = [
        {"text": "a", "date": "2013-05-18T05:48:54Z", "x": 1, "meta": {"b": 1, "a": None}},
        {"text": "b", "date": "2014-01-01", "x": 2.5, "meta": {"a": "z", "b": 2.0}},
        {"text": "c", "x": 3, "meta": {"c": [1, None, {"d": 'q"\n'}]}},
        {"text": "d", "date": "not a date", "meta": None},
    ]
    path = write(tmp_path / "m.jsonl", jsonl_bytes(docs))
    spec = InputSpec(path=str(path), id_field=None)
    whole, _ = read_all(spec, 100)
    single, _ = read_all(spec, 1)
    assert whole.equals(single)
    assert whole.column("date").to_pylist() == [
        "2013-05-18T05:48:54Z",
        "2014-01-01",
        None,
        "not a date",
    ]
    assert whole.column("x").to_pylist() == [1.0, 2.5, 3.0, None]
    assert whole.column("meta").to_pylist() == [
        '{"b":1}',
        '{"a":"z","b":2}',
        '{"c":[1,null,{"d":"q\\"\\n"}]}',
        None,
    ]


def test_slow_path_reads_good_rows_like_fast_path(tmp_path):
    good = [{"text": "t", "n": 1, "f": 1.5, "meta": {"k": "v\t", "z": [True]}}]
    fast_path = write(tmp_path / "fast.jsonl", jsonl_bytes(good))
    slow_path = write(tmp_path / "slow.jsonl", jsonl_bytes(good) + b"[1]\n")
    fast, _ = read_all(InputSpec(path=str(fast_path), id_field=None))
    slow, bad = read_all(InputSpec(path=str(slow_path), id_field=None))
    assert bad.num_rows == 1
    assert fast.drop_columns(["id"]).equals(slow.drop_columns(["id"]))
    assert slow.column("meta").to_pylist() == ['{"k":"v\\t","z":[true]}']


def test_multi_frame_zstd_is_read_whole(tmp_path):
    frames = zstandard.compress(b'{"text": "one"}\n') + zstandard.compress(b'{"text": "two"}\n')
    path = write(tmp_path / "f.jsonl.zst", frames)
    table, _ = read_all(InputSpec(path=str(path)))
    assert table.column("text").to_pylist() == ["one", "two"]


def test_long_line_and_null_lists(tmp_path):
    long = "w" * (3 * 2**20)  # longer than pyarrow's default JSON block
    docs = [{"text": long}, {"text": "b", "c": [None, None]}, {"text": "c", "c": [None]}]
    table, _ = read_all(InputSpec(path=str(write(tmp_path / "l.jsonl", jsonl_bytes(docs)))))
    assert table.column("text").to_pylist() == [long, "b", "c"]
    assert table.column("c").to_pylist() == [None, "[null,null]", "[null]"]


def test_same_file_named_twice_is_read_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(Path("data/a.jsonl"), b'{"text": "a"}\n')
    spec = InputSpec(path=["data/a.jsonl", "./data/*.jsonl", "data"])
    assert [c.path for c in plan_chunks(spec, 10)] == ["data/a.jsonl"]


# --------------------------------------------------------------------------- bad input

BAD_LINES = [
    (b'{"text": "ok", "a": 1', "malformed_json: Expecting ',' delimiter"),
    (b'{"text": "caf\xe9"}', "invalid_utf8"),
    (b"[1, 2]", "not_object: list"),
    (b'{"body": "no text"}', "missing_text"),
    (b'{"text": null}', "null_text"),
    (b'{"text": 5}', "non_string_text: int"),
    (b'{"text": ["a"]}', "non_string_text: list"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_is_quarantined(tmp_path, line, reason):
    path = write(tmp_path / "in.jsonl", b'{"text": "good"}\n\n' + line + b'\n{"text": "after"}\n')
    table, rejected = read_all(InputSpec(path=str(path)))
    assert table.column("text").to_pylist() == ["good", "after"]
    name = f"{tmp_path.name}/in.jsonl"
    assert table.column("id").to_pylist() == [f"{name}:1", f"{name}:4"]
    assert rejected.to_pylist() == [
        {
            "id": f"{name}:3",
            "raw": line.decode("utf-8", "replace"),
            "reason": reason,
            "file": str(path),
            "line": 3,
        }
    ]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_bad_line_fails_with_on_error_fail(tmp_path, line, reason):
    path = write(tmp_path / "in.jsonl", b'{"text": "good"}\n\n' + line + b"\n")
    spec = InputSpec(path=str(path), on_error="fail")
    with pytest.raises(InputError) as info:
        read_all(spec)
    assert str(info.value) == f"{path}:3: {reason}"


def test_null_text_in_fast_path_keeps_row_id(tmp_path):
    path = write(tmp_path / "n.jsonl", b'{"id": "x", "text": null}\n{"id": "y", "text": "ok"}\n')
    table, rejected = read_all(InputSpec(path=str(path)))
    assert table.column("id").to_pylist() == ["y"]
    assert rows(rejected, "id", "reason", "line") == [("x", "null_text", 1)]


def test_parquet_null_text_quarantined_and_wrong_type_fails(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    table, rejected = read_all(InputSpec(path=str(path)))
    assert table.column("text").to_pylist() == ["a", "c"]
    assert rows(rejected, "reason", "file", "line") == [("null_text", str(path), 1)]
    with pytest.raises(InputError, match=r"p\.parquet:1: null_text"):
        read_all(InputSpec(path=str(path), on_error="fail"))
    bad = tmp_path / "q.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), bad)
    with pytest.raises(InputError, match=r"q\.parquet: text column 'text' has type int64"):
        read_all(InputSpec(path=str(bad)))


def test_missing_paths_name_the_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match=f"^{re.escape(str(missing))}: no such file or directory$"):
        plan_chunks(InputSpec(path=str(missing)), 10)
    pattern = str(tmp_path / "*.parquet")
    with pytest.raises(InputError, match="no files match"):
        plan_chunks(InputSpec(path=pattern), 10)


def test_empty_files_give_zero_rows(tmp_path):
    write(tmp_path / "d" / "empty.jsonl", b"")
    write(tmp_path / "d" / "blank.jsonl", b"\n  \n")
    write(tmp_path / "d" / "empty.jsonl.gz", gzip.compress(b""))
    table, rejected = read_all(InputSpec(path=str(tmp_path / "d")))
    assert table.num_rows == 0 and rejected.num_rows == 0
    assert table.column_names == ["id", "text"]


def test_empty_among_nonempty(tmp_path):
    write(tmp_path / "d" / "a.jsonl", b"")
    write(tmp_path / "d" / "b.jsonl", b'{"text": "x"}\n')
    table, _ = read_all(InputSpec(path=str(tmp_path / "d")))
    assert table.column("text").to_pylist() == ["x"]


def test_read_chunk_of_vanished_file(tmp_path):
    chunk = Chunk(str(tmp_path / "gone.jsonl"), "jsonl", 0, 0, 10, "gone.jsonl")
    with pytest.raises(InputError, match="gone.jsonl: no such file"):
        read_chunk(chunk, InputSpec(path="unused"))


# --------------------------------------------------------------------------- writers


def sample_table(n: int = 40) -> pa.Table:
    return pa.table(
        {
            "id": [f"d{i}" for i in range(n)],
            "text": ["x" * (i % 13) if i % 5 else None for i in range(n)],
            "score": [None if i % 3 == 0 else i / 4 for i in range(n)],
            "tags": [[str(i)] * (i % 3) for i in range(n)],
        }
    )


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
def test_write_table_roundtrip_and_atomic(tmp_path, fmt):
    table = sample_table()
    path = tmp_path / f"t.{fmt}"
    size = write_table(path, table, fmt)
    assert size == path.stat().st_size > 0
    assert read_table(path).equals(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def shards(directory: Path, pieces: list[pa.Table], fmt: str, **kw) -> tuple[list[dict], dict]:
    writer = ShardWriter(directory, fmt=fmt, **kw)
    for piece in pieces:
        writer.write(piece)
    meta = writer.close()
    return meta, {m["file"]: (directory / m["file"]).read_bytes() for m in meta}


@pytest.mark.parametrize("fmt", ["arrow", "parquet"])
@pytest.mark.parametrize(
    ("max_rows", "max_bytes", "sizes"), [(7, 2**30, [7] * 5 + [5]), (100, 150, None)]
)
def test_shards_byte_identical_for_any_slicing(tmp_path, fmt, max_rows, max_bytes, sizes):
    table = sample_table()
    one = [table]
    many = [table.slice(0, 3), table.slice(3, 17), table.slice(20, 0), table.slice(20)]
    filtered = [t.filter(pa.array([True] * t.num_rows, pa.bool_())) for t in many]
    limits = {"max_rows": max_rows, "max_bytes": max_bytes}
    meta_a, files_a = shards(tmp_path / "a", one, fmt, **limits)
    meta_b, files_b = shards(tmp_path / "b", many, fmt, **limits)
    meta_c, files_c = shards(tmp_path / "c", filtered, fmt, **limits)
    assert meta_a == meta_b == meta_c
    assert files_a == files_b == files_c
    assert len(meta_a) > 2 and sum(m["rows"] for m in meta_a) == table.num_rows
    if sizes:
        assert [m["rows"] for m in meta_a] == sizes
    ext = ".arrow" if fmt == "arrow" else ".parquet"
    assert [m["file"] for m in meta_a] == [f"shard-{i:05d}{ext}" for i in range(len(meta_a))]
    back = pa.concat_tables(read_table(tmp_path / "b" / m["file"]) for m in meta_b)
    assert back.equals(table)


def test_arrow_shards_open_as_materialized(tmp_path):
    table = sample_table()
    meta, _ = shards(tmp_path, [table], "arrow", max_rows=16)
    data = Materialized([tmp_path / m["file"] for m in meta], table.schema)
    assert data.num_rows == table.num_rows
    assert pa.concat_tables(data.tables()).equals(table)


def test_shards_bounded_by_bytes(tmp_path):
    table = pa.table({"text": ["a" * 100] * 10})  # 104 estimated bytes per row
    meta, _ = shards(tmp_path, [table], "arrow", max_rows=1000, max_bytes=350)
    assert [m["rows"] for m in meta] == [3, 3, 3, 1]
    big = pa.table({"text": ["b" * 1000, "c"]})  # a row over the limit gets its own shard
    meta, _ = shards(tmp_path / "big", [big], "arrow", max_bytes=100)
    assert [m["rows"] for m in meta] == [1, 1]


def test_shard_writer_replaces_a_longer_earlier_run(tmp_path):
    table = sample_table()
    shards(tmp_path, [table], "arrow", max_rows=5)
    meta, _ = shards(tmp_path, [table], "arrow", max_rows=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == [m["file"] for m in meta]


def test_shard_writer_empty_stream_and_schema_check(tmp_path):
    table = sample_table(3)
    meta, _ = shards(tmp_path / "e", [table.slice(0, 0)], "arrow")
    assert meta == [{"file": "shard-00000.arrow", "rows": 0, "bytes": meta[0]["bytes"]}]
    assert read_table(tmp_path / "e" / "shard-00000.arrow").schema == table.schema
    assert shards(tmp_path / "none", [], "arrow")[0] == []
    writer = ShardWriter(tmp_path / "s")
    writer.write(table)
    with pytest.raises(ValueError, match="schema differs"):
        writer.write(table.drop_columns(["tags"]))


def test_unify_and_conform(tmp_path):
    a = pa.table({"id": ["1"], "text": ["a"], "x": pa.array([1]), "n": pa.nulls(1)})
    b = pa.table({"id": ["2"], "text": ["b"], "x": pa.array([1.5]), "y": [True]})
    c = pa.table({"id": ["3"], "text": ["c"], "y": ["s"]})
    schema = unify_schemas([a.schema, b.schema, c.schema])
    assert schema == pa.schema(
        [("id", pa.string()), ("text", pa.string()), ("x", pa.float64()),
         ("n", pa.null()), ("y", pa.string())]
    )  # fmt: skip
    merged = pa.concat_tables([conform(t, schema) for t in (a, b, c)])
    assert merged.column("x").to_pylist() == [1.0, 1.5, None]
    assert merged.column("y").to_pylist() == [None, "true", "s"]
