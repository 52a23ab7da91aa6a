"""Tokenize stage and tokenizer training, checked against tokenizers' plain ``encode``
and datatrove's ``DocumentTokenizer`` on real documents."""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from tokenizers import Tokenizer

from winnow.errors import InputError
from winnow.sample_text import real_documents
from winnow.stages.tokenize import META_EOS, META_SHA256, META_VOCAB, Tokenize
from winnow.tokenizer import (
    add_train_tokenizer_args,
    cli_train_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return real_documents(300) + [{"id": "empty", "text": "", "source": "edge"}]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, docs):
    """A run directory shaped like the runner's output: RUN/data/shard-*.arrow."""
    run = tmp_path_factory.mktemp("run")
    (run / "data").mkdir()
    for i in range(2):
        table = pa.Table.from_pylist(docs[i::2])
        with pa.ipc.new_file(str(run / "data" / f"shard-{i:05d}.arrow"), table.schema) as w:
            w.write_table(table)
    return run


@pytest.fixture(scope="module")
def tok_path(run_dir, tmp_path_factory):
    return train_tokenizer(run_dir, tmp_path_factory.mktemp("tok") / "tokenizer.json", 1024)


def tokenize(table: pa.Table, **params) -> pa.Table:
    stage = Tokenize(Tokenize.Params(**params), stage_id="tok", seed=0)
    stage.setup()
    return stage.process(table).kept


def test_train_tokenizer_is_deterministic_byte_level_bpe(run_dir, tok_path, tmp_path, docs):
    again = train_tokenizer(sorted((run_dir / "data").glob("*.arrow")), tmp_path / "t.json", 1024)
    assert again.read_bytes() == tok_path.read_bytes()
    tok = Tokenizer.from_file(str(tok_path))
    assert tok.get_vocab_size() == 1024
    assert tok.token_to_id(EOT) == 0
    for doc in docs:
        assert tok.decode(tok.encode(doc["text"]).ids) == doc["text"]


def test_tokens_match_plain_encode_plus_eos(tok_path, docs):
    out = tokenize(pa.Table.from_pylist(docs), tokenizer=str(tok_path), batch_size=37)
    tok = Tokenizer.from_file(str(tok_path))
    assert out.schema.field("tokens").type == pa.list_(pa.uint32())
    assert out.schema.field("n_tokens").type == pa.int64()
    assert out.column_names[:3] == ["id", "text", "source"]
    expected = [tok.encode(d["text"]).ids + [0] for d in docs]
    assert out.column("tokens").to_pylist() == expected
    assert out.column("n_tokens").to_pylist() == [len(e) for e in expected]
    assert out.column("tokens").to_pylist()[-1] == [0]  # empty text: EOS only
    meta = out.schema.field("tokens").metadata
    assert meta[META_SHA256].decode() == hashlib.sha256(tok.to_str().encode()).hexdigest()
    assert meta[META_VOCAB] == b"1024" and meta[META_EOS] == b"0"


def test_tokens_match_datatrove_document_tokenizer(tok_path, docs, tmp_path):
    from datatrove.data import Document
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    step = DocumentTokenizer(
        str(tmp_path),
        str(tok_path),
        eos_token=EOT,
        shuffle_documents=False,
        save_final_metadata=False,
    )
    step.run(iter([Document(text=d["text"], id=d["id"]) for d in docs]))
    ids = np.fromfile(tmp_path / "00000_unshuffled.ds", "<u2")
    ends = np.fromfile(tmp_path / "00000_unshuffled.ds.index", "<u8")
    ours = tokenize(pa.Table.from_pylist(docs), tokenizer=str(tok_path))
    assert np.array_equal(ours.column("tokens").combine_chunks().values.to_numpy(), ids)
    assert np.array_equal(np.cumsum(ours.column("n_tokens").to_numpy()), ends)


def test_eos_choices(tok_path, docs):
    table = pa.Table.from_pylist(docs[:5])
    plain = tokenize(table, tokenizer=str(tok_path), eos=None)
    by_name = tokenize(table, tokenizer=str(tok_path), eos=EOT)
    by_id = tokenize(table, tokenizer=str(tok_path), eos=7)
    for a, b, c in zip(
        plain.column("tokens").to_pylist(),
        by_name.column("tokens").to_pylist(),
        by_id.column("tokens").to_pylist(),
        strict=True,
    ):
        assert b == a + [0] and c == a + [7]
    assert plain.schema.field("tokens").metadata[META_EOS] == b""
    with pytest.raises(InputError, match="not in the tokenizer"):
        tokenize(table, tokenizer=str(tok_path), eos="<missing>")
    with pytest.raises(InputError, match="outside"):
        tokenize(table, tokenizer=str(tok_path), eos=10**6)


def test_auto_eos_needs_a_known_token(run_dir, tmp_path, docs):
    path = train_tokenizer(run_dir, tmp_path / "t.json", 300, special_tokens=["<pad>"])
    with pytest.raises(InputError, match="none of the EOS tokens"):
        tokenize(pa.Table.from_pylist(docs[:2]), tokenizer=str(path))
    out = tokenize(pa.Table.from_pylist(docs[:2]), tokenizer=str(path), eos="<pad>")
    assert out.column("tokens").to_pylist()[0][-1] == 0


def test_tokenizer_folder_and_missing_file(tok_path, tmp_path):
    assert load_tokenizer(str(tok_path.parent)).to_str() == load_tokenizer(str(tok_path)).to_str()
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not a valid"):
        load_tokenizer(str(tmp_path / "bad.json"))


def test_hub_id_failure_is_a_clear_error():
    """Hub loading is real code; offline it must fail with one clear message."""
    code = (
        "from winnow.tokenizer import load_tokenizer\n"
        "try:\n    load_tokenizer('winnow-test/does-not-exist')\n"
        "except Exception as e:\n    print(type(e).__name__, e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.startswith("InputError cannot load tokenizer 'winnow-test/does-not-exist'")


def test_cli_train_tokenizer(run_dir, capsys):
    parser = argparse.ArgumentParser()
    add_train_tokenizer_args(parser)
    args = parser.parse_args([str(run_dir), "--vocab", "512", "--max-docs", "100"])
    assert cli_train_tokenizer(args) == 0
    tok = Tokenizer.from_file(str(run_dir / "tokenizer.json"))
    assert tok.get_vocab_size() == 512
    assert "tokenizer.json" in capsys.readouterr().out


def test_train_needs_shards(tmp_path):
    with pytest.raises(InputError, match="no .arrow or .parquet"):
        train_tokenizer(tmp_path, tmp_path / "t.json", 300)
