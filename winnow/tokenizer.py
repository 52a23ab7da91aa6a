"""Tokenizer helpers: load (file or hub id), fingerprint, find EOS, train a byte-level BPE.

``train_tokenizer`` fits a GPT-2 style byte-level BPE on the ``text`` column of a
run's output shards, so a whole pipeline (tokenize, decompose, train) works offline.
Byte-level BPE round-trips any text exactly: ``decode(encode(t)) == t``.

The fingerprint is the sha256 of ``Tokenizer.to_str()``, the canonical JSON
serialisation; it is identical for a file and for the same tokenizer from the hub.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from winnow.errors import InputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>")
"""Tried in order when the EOS token is not given."""

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>",)


def load_tokenizer(name_or_path: str) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` path or a Hugging Face hub id."""
    from tokenizers import Tokenizer

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise InputError(f"{path}: not a valid tokenizer.json ({exc})") from None
    if path.suffix == ".json":
        raise InputError(f"tokenizer file not found: {path}")
    try:
        return Tokenizer.from_pretrained(name_or_path)
    except Exception as exc:
        raise InputError(
            f"cannot load tokenizer {name_or_path!r}: not a file and not loadable from the "
            f"Hugging Face hub ({exc})"
        ) from None


def tokenizer_sha256(tokenizer: Tokenizer) -> str:
    """Hex sha256 of the tokenizer's canonical JSON serialisation."""
    return hashlib.sha256(tokenizer.to_str().encode()).hexdigest()


def resolve_eos(tokenizer: Tokenizer, eos: str | int | None) -> int | None:
    """The EOS id: ``"auto"`` tries ``EOS_CANDIDATES``; a string is a token; an int an id."""
    if eos is None:
        return None
    if isinstance(eos, int):
        if not 0 <= eos < tokenizer.get_vocab_size(with_added_tokens=True):
            raise InputError(f"eos id {eos} is outside the tokenizer's vocabulary")
        return eos
    candidates = EOS_CANDIDATES if eos == "auto" else (eos,)
    for token in candidates:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token_id
    if eos == "auto":
        raise InputError(
            f"the tokenizer has none of the EOS tokens {', '.join(EOS_CANDIDATES)}; "
            "set eos to a token, an id, or null for no EOS"
        )
    raise InputError(f"eos token {eos!r} is not in the tokenizer's vocabulary")


# -- training -----------------------------------------------------------------------------


def shard_files(run_dir_or_files: str | Path | Iterable[str | Path]) -> list[Path]:
    """Text shards to train on: a run directory (its ``data/``), a folder, or files."""
    if isinstance(run_dir_or_files, str | Path):
        run_dir_or_files = [run_dir_or_files]
    files: list[Path] = []
    for entry in map(Path, run_dir_or_files):
        if entry.is_dir():
            folder = entry / "data" if (entry / "data").is_dir() else entry
            found = sorted(
                p for p in folder.rglob("*") if p.suffix in (".arrow", ".parquet") and p.is_file()
            )
            if not found:
                raise InputError(f"{folder}: no .arrow or .parquet shards")
            files.extend(found)
        elif entry.is_file():
            files.append(entry)
        else:
            raise InputError(f"{entry}: no such file or directory")
    return files


def _record_batches(path: Path, column: str) -> Iterator[pa.Array]:
    """The ``column`` of each record batch of an Arrow IPC (file or stream) or Parquet file."""
    if path.suffix == ".parquet":
        parquet = pq.ParquetFile(path)
        if column not in parquet.schema_arrow.names:
            raise InputError(f"{path}: no {column!r} column")
        for batch in parquet.iter_batches(columns=[column]):
            yield batch.column(0)
        return
    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_stream(source)
            batches = iter(reader)
        if column not in reader.schema.names:
            raise InputError(f"{path}: no {column!r} column")
        for batch in batches:
            yield batch.column(column)


def iter_texts(
    files: Iterable[Path], column: str = "text", limit: int | None = None
) -> Iterator[list[str]]:
    """Lists of non-empty strings from ``column`` of each file, in file order."""
    seen = 0
    for path in files:
        for values in _record_batches(path, column):
            texts = [t for t in values.to_pylist() if t]
            if limit is not None:
                texts = texts[: limit - seen]
            seen += len(texts)
            if texts:
                yield texts
            if limit is not None and seen >= limit:
                return


def train_tokenizer(
    run_dir_or_files: str | Path | Iterable[str | Path],
    out_path: str | Path,
    vocab_size: int = 32768,
    *,
    min_frequency: int = 2,
    special_tokens: Iterable[str] = DEFAULT_SPECIAL_TOKENS,
    max_docs: int | None = None,
    text_column: str = "text",
) -> Path:
    """Train a byte-level BPE on the shards' text and save it as ``tokenizer.json``.

    Deterministic for the same files. The first special token (``<|endoftext|>``)
    gets id 0 and is the EOS the tokenize stage finds by default.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    files = shard_files(run_dir_or_files)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(iter_texts(files, text_column, max_docs), trainer)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tokenizer.save(str(tmp))
    tmp.replace(out_path)
    return out_path


def add_train_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``winnow train-tokenizer``."""
    parser.add_argument(
        "inputs", nargs="+", help="run directory (uses RUN/data/), shard folder, or shard files"
    )
    parser.add_argument("--vocab", type=int, default=32768, help="vocabulary size (32768)")
    parser.add_argument(
        "--out", default=None, help="output tokenizer.json (default: FIRST_INPUT/tokenizer.json)"
    )
    parser.add_argument("--min-frequency", type=int, default=2, help="min pair count (2)")
    parser.add_argument("--max-docs", type=int, default=None, help="train on the first N docs")
    parser.add_argument("--text-column", default="text", help="text column (text)")


def cli_train_tokenizer(args: argparse.Namespace) -> int:
    """Run ``winnow train-tokenizer``; user errors surface as ``WinnowError``."""
    first = Path(args.inputs[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent)
    if not args.out:
        out = out / "tokenizer.json"
    path = train_tokenizer(
        args.inputs,
        out,
        args.vocab,
        min_frequency=args.min_frequency,
        max_docs=args.max_docs,
        text_column=args.text_column,
    )
    tokenizer = load_tokenizer(str(path))
    print(
        f"wrote {path} (vocab {tokenizer.get_vocab_size()}, "
        f"sha256 {tokenizer_sha256(tokenizer)[:12]})"
    )
    return 0
