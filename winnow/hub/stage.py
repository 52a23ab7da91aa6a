"""Stage a publication: write the exact repo tree locally, Parquet only.

Shards are streamed from the run's Arrow files in record batches (bounded memory),
written with zstd, content-defined chunking (re-uploads of a slightly changed run
dedupe on content-addressed storage) and a page index, cut at ``shard_bytes``, and
named ``train-XXXXX-of-YYYYY.parquet``. Token configs carry the tokenizer facts in
their Parquet schema metadata (key ``winnow``). ``winnow/files.json`` lists every
other file with its sha256, rows, bytes and source shards: it is the manifest the
push diffs against. Same run -> byte-identical tree.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from winnow.errors import WinnowError
from winnow.hub.plan import ConfigPlan, PublishPlan

ROW_GROUP_BYTES = 64 * 1024 * 1024  # uncompressed bytes per Parquet row group
REJECTED_SCHEMA = pa.schema(
    [("id", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("text", pa.string())]
)
MARKER = "winnow/files.json"


@dataclass(frozen=True)
class StagedFile:
    path: str  # in the repo
    sha256: str
    bytes: int
    rows: int | None = None
    num_bytes: int | None = None  # Arrow (in-memory) bytes, for the card's dataset_info
    sources: tuple[str, ...] = ()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches()
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        except pa.ArrowInvalid:
            source.seek(0)
            yield from pa.ipc.open_stream(source)


def _rejected_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Rejected rows of any stage in one schema; read errors keep their raw line."""
    names = batch.schema.names
    n = batch.num_rows
    text = (
        batch.column("text") if "text" in names else batch.column("raw") if "raw" in names else None
    )
    cols = [
        batch.column(c) if c in names else pa.nulls(n, pa.string())
        for c in ("id", "stage", "reason")
    ]
    cols.append(text if text is not None else pa.nulls(n, pa.string()))
    cols = [c.cast(pa.string()) for c in cols]
    return pa.RecordBatch.from_arrays(cols, schema=REJECTED_SCHEMA)


def _schema_metadata(plan: PublishPlan, config: ConfigPlan) -> dict[bytes, bytes]:
    meta = {"output": plan.output, "config_hash": plan.manifest.get("config_hash")}
    if config.kind == "tokens" and plan.buckets:
        keys = ("token_dtype", "vocab_size", "eos_id", "tokenizer", "tokenizer_sha256")
        meta |= {k: plan.buckets.get(k) for k in keys} | {"seq_len": config.length}
    return {b"winnow": json.dumps(meta, sort_keys=True).encode()}


class _ShardCutter:
    """Parquet files of about ``shard_bytes`` each, written from a stream of batches."""

    def __init__(self, folder: Path, schema: pa.Schema, shard_bytes: int):
        self.folder, self.schema, self.shard_bytes = folder, schema, shard_bytes
        self.files: list[dict] = []  # {tmp, rows, num_bytes, sources}
        self._writer = self._sink = None
        self._pending: list[tuple[pa.RecordBatch, str]] = []
        self._pending_bytes = 0

    def add(self, batch: pa.RecordBatch, source: str) -> None:
        self._pending.append((batch, source))
        self._pending_bytes += batch.nbytes
        if self._pending_bytes >= min(ROW_GROUP_BYTES, self.shard_bytes):
            self._flush()

    def _open(self) -> None:
        tmp = self.folder / f".part-{len(self.files):05d}.parquet"
        self._sink = open(tmp, "wb")
        self._writer = pq.ParquetWriter(
            self._sink,
            self.schema,
            compression="zstd",
            compression_level=3,
            use_content_defined_chunking=True,
            write_page_index=True,
        )
        self.files.append({"tmp": tmp, "rows": 0, "num_bytes": 0, "sources": []})

    def _flush(self) -> None:
        """Write the pending batches as one row group; start a new file past the size."""
        if self._writer is None:
            self._open()
        table = pa.Table.from_batches([b for b, _ in self._pending], self.schema)
        entry = self.files[-1]
        for _, source in self._pending:
            if source not in entry["sources"]:
                entry["sources"].append(source)
        self._pending, self._pending_bytes = [], 0
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        entry["rows"] += table.num_rows
        entry["num_bytes"] += table.nbytes
        if self._sink.tell() >= self.shard_bytes:
            self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def finish(self) -> list[dict]:
        if self._pending or not self.files:  # an empty config still gets one empty file
            self._flush()
        self._close()
        return self.files


def _write_config(plan: PublishPlan, config: ConfigPlan, tree: Path) -> list[StagedFile]:
    folder = tree / config.prefix
    folder.mkdir(parents=True, exist_ok=True)
    schema = None
    cutter = None
    for src in config.sources:
        rel = src.relative_to(plan.run_dir).as_posix()
        for batch in _batches(src):
            if config.kind == "rejected":
                batch = _rejected_batch(batch)
            if schema is None:
                schema = batch.schema.with_metadata(_schema_metadata(plan, config))
                cutter = _ShardCutter(folder, schema, plan.shard_bytes)
            if batch.schema.remove_metadata() != schema.remove_metadata():
                raise WinnowError(f"{src}: schema differs from the first file of {config.name!r}")
            cutter.add(batch.replace_schema_metadata(schema.metadata), rel)
    if cutter is None:
        if config.kind != "rejected":
            raise WinnowError(f"{plan.run_dir}: config {config.name!r} has no data files")
        cutter = _ShardCutter(folder, REJECTED_SCHEMA, plan.shard_bytes)
    parts = cutter.finish()
    staged = []
    for i, part in enumerate(parts):
        name = f"{config.prefix}/train-{i:05d}-of-{len(parts):05d}.parquet"
        final = tree / name
        part["tmp"].replace(final)
        staged.append(
            StagedFile(
                name,
                sha256_file(final),
                final.stat().st_size,
                part["rows"],
                part["num_bytes"],
                tuple(part["sources"]),
            )
        )
    rows = sum(f.rows for f in staged)
    if rows != config.rows:
        raise WinnowError(
            f"config {config.name!r}: staged {rows} rows but the run records {config.rows}"
        )
    return staged


def _write_meta(tree: Path, name: str, data: bytes) -> StagedFile:
    path = tree / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return StagedFile(name, hashlib.sha256(data).hexdigest(), len(data))


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def prepare_dir(tree: Path) -> None:
    """Empty ``tree`` for a fresh staging; refuse to wipe a folder we did not write."""
    if tree.exists() and any(tree.iterdir()):
        if not (tree / MARKER).exists():
            raise WinnowError(f"{tree}: exists and is not a winnow staging folder; pick --out")
        shutil.rmtree(tree)
    tree.mkdir(parents=True, exist_ok=True)


def stage(plan: PublishPlan, tree: Path, render_card) -> list[StagedFile]:
    """Write the repo tree into ``tree``; returns every file, ``files.json`` last.

    ``render_card(plan, data_files) -> str`` builds README.md from the staged data."""
    prepare_dir(tree)
    data: dict[str, list[StagedFile]] = {}
    for config in plan.configs:
        data[config.name] = _write_config(plan, config, tree)
    files = [f for config in plan.configs for f in data[config.name]]
    files.append(_write_meta(tree, "winnow/manifest.json", _json_bytes(plan.manifest)))
    files.append(_write_meta(tree, "winnow/ledger.json", _json_bytes(plan.ledger)))
    pipeline = yaml.safe_dump(plan.manifest["config"], sort_keys=False, allow_unicode=True)
    files.append(_write_meta(tree, "winnow/pipeline.yaml", pipeline.encode()))
    if plan.buckets is not None:
        files.append(_write_meta(tree, "winnow/buckets.json", _json_bytes(plan.buckets)))
    if plan.tokenizer is not None:
        files.append(_write_meta(tree, "winnow/tokenizer.json", plan.tokenizer.read_bytes()))
    files.append(_write_meta(tree, "README.md", render_card(plan, data).encode()))
    listing = [
        {
            "path": f.path,
            "sha256": f.sha256,
            "bytes": f.bytes,
            "rows": f.rows,
            "sources": list(f.sources),
        }
        for f in sorted(files, key=lambda f: f.path)
    ]
    files.append(_write_meta(tree, MARKER, _json_bytes({"files": listing})))
    return files


def load_files(tree: Path) -> list[dict]:
    """The staged listing plus ``files.json`` itself."""
    listing = json.loads((tree / MARKER).read_text())["files"]
    data = (tree / MARKER).read_bytes()
    marker = {"path": MARKER, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return listing + [marker]
