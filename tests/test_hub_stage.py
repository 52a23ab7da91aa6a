"""``winnow publish --dry-run``: the staged repo tree, read back by the real ``datasets``.

Expected counts come from the run's ledger and bucket manifest (``expected_rows``),
never from the publish code.
"""

# ruff: noqa: F811  (pytest fixtures imported from hub_fixtures are test arguments)

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import List, Value
from datasets.exceptions import NonMatchingSplitsSizesError
from hub_fixtures import expected_rows, hub_run  # noqa: F401

from winnow.cli import main
from winnow.errors import WinnowError
from winnow.hub import CardOptions, plan_publish, publish, stage_and_verify
from winnow.hub.card import read_notes, todo_sections

SMALL_SHARDS = 40_000  # bytes: several Parquet shards per text config


def _stage(run, tree, **kw):
    plan = plan_publish(run, "tester/hubtest", concat=True, rejected=True, shard_bytes=SMALL_SHARDS)
    stage_and_verify(plan, tree, CardOptions(license="odc-by", language=("en",), **kw))
    return plan


def _card_meta(tree) -> dict:
    text = (tree / "README.md").read_text()
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", text, re.S).group(1))


@pytest.fixture(scope="module")
def tree(hub_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("tree") / "tree"
    _stage(hub_run, out)
    return out


def test_dry_run_loads_every_config_with_the_ledger_counts(hub_run, tmp_path, capsys):
    out = tmp_path / "tree"
    args = ["publish", str(hub_run), "tester/hubtest", "--dry-run", "--out", str(out)]
    assert main(args + ["--rejected", "--concat"]) == 0
    assert "dry run" in capsys.readouterr().out
    expected = expected_rows(hub_run)
    meta = _card_meta(out)
    assert {c["config_name"] for c in meta["configs"]} == set(expected)
    assert [c["config_name"] for c in meta["configs"] if c.get("default")] == ["default"]
    cache = tmp_path / "cache"
    for name, rows in expected.items():
        ds = datasets.load_dataset(str(out), name, split="train", cache_dir=str(cache))
        assert ds.num_rows == rows, name
        if name.startswith(("len_", "concat_len_")):
            n = int(name.rsplit("_", 1)[1])
            assert ds.features["tokens"] == List(Value("uint16"), length=n)
            assert all(len(t) == n for t in ds[:5]["tokens"])
    rejected = datasets.load_dataset(str(out), "rejected", split="train", cache_dir=str(cache))
    # the ledger counts a reason by its class, the part before "detail" after a colon
    pairs = Counter(
        (s, r.split(":")[0]) for s, r in zip(rejected["stage"], rejected["reason"], strict=True)
    )
    ledger = json.loads((hub_run / "ledger.json").read_text())
    want = {(s, r): n for s, c in ledger["stages"].items() for r, n in c["rejected"].items()}
    assert dict(pairs) == want


def test_text_config_keeps_every_kept_row_and_column(hub_run, tree):
    import pyarrow as pa

    source = pa.concat_tables(
        pa.ipc.open_file(pa.memory_map(str(p))).read_all()
        for p in sorted((hub_run / "data").glob("*.arrow"))
    )
    staged = pq.read_table(sorted((tree / "data").glob("*.parquet")))
    assert len(list((tree / "data").glob("*.parquet"))) > 1
    assert staged.replace_schema_metadata(None).equals(source.replace_schema_metadata(None))


def test_tampered_num_examples_makes_load_dataset_fail(hub_run, tree, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tree, bad)
    card = (bad / "README.md").read_text()
    meta = _card_meta(bad)
    info = next(i for i in meta["dataset_info"] if i["config_name"] == "len_64")
    info["splits"][0]["num_examples"] += 1
    body = card.split("\n---\n", 1)[1]
    (bad / "README.md").write_text(f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n{body}")
    with pytest.raises(NonMatchingSplitsSizesError):
        datasets.load_dataset(str(bad), "len_64", split="train", cache_dir=str(tmp_path / "c"))
    ok = datasets.load_dataset(str(bad), "len_32", split="train", cache_dir=str(tmp_path / "c"))
    assert ok.num_rows == expected_rows(hub_run)["len_32"]


def test_two_dry_runs_give_identical_bytes(hub_run, tree, tmp_path):
    again = tmp_path / "again"
    _stage(hub_run, again)
    files = sorted(p.relative_to(tree) for p in tree.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (tree / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_files_json_lists_every_file_with_hash_rows_and_sources(hub_run, tree):
    listing = json.loads((tree / "winnow" / "files.json").read_text())["files"]
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    assert {f["path"] for f in listing} == on_disk - {"winnow/files.json"}
    for f in listing:
        data = (tree / f["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        if f["path"].endswith(".parquet"):
            assert pq.ParquetFile(tree / f["path"]).metadata.num_rows == f["rows"]
            assert f["sources"] and all((hub_run / s).is_file() for s in f["sources"])


def test_parquet_carries_zstd_page_index_and_tokenizer_metadata(hub_run, tree):
    manifest = json.loads((hub_run / "buckets" / "manifest.json").read_text())
    path = next((tree / "tokens" / "len_64").glob("*.parquet"))
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(0).column(0)
    assert col.compression == "ZSTD" and col.has_offset_index
    winnow_meta = json.loads(pq.read_schema(path).metadata[b"winnow"])
    assert winnow_meta["tokenizer_sha256"] == manifest["tokenizer_sha256"]
    assert winnow_meta["seq_len"] == 64 and winnow_meta["token_dtype"] == "uint16"
    assert (tree / "winnow" / "tokenizer.json").is_file()


def test_card_shows_ledger_reconciliation_and_size(hub_run, tree):
    card = (tree / "README.md").read_text()
    ledger = json.loads((hub_run / "ledger.json").read_text())
    for sid, c in ledger["stages"].items():
        rejected = sum(c["rejected"].values())
        assert (
            f"| `{sid}` | {c['in']:,} | {c['created']:,} | {c['kept']:,} | {rejected:,} |" in card
        )
    assert "holds for every stage" in card
    meta = _card_meta(tree)
    assert meta["license"] == "odc-by" and meta["size_categories"] == ["n<1K"]
    assert 'load_dataset("tester/hubtest", "len_32"' in card
    assert todo_sections(card) == ["Limitations", "Personal and sensitive information"]


def test_public_needs_a_license_and_filled_sections(hub_run, tmp_path):
    plan = plan_publish(hub_run, "tester/hubtest")
    with pytest.raises(WinnowError, match="license"):
        publish(plan, tmp_path / "t1", CardOptions(), public=True)
    with pytest.raises(WinnowError, match="TODO sections"):
        publish(plan, tmp_path / "t2", CardOptions(license="mit"), public=True)
    assert not (tmp_path / "t1").exists() and not (tmp_path / "t2").exists()  # refused first
    notes = tmp_path / "notes.md"
    notes.write_text("## Limitations\n\nSmall.\n\n## Personal and sensitive information\n\nNone.\n")
    stage_and_verify(plan, tmp_path / "t3", CardOptions(license="mit", notes=read_notes(notes)))
    assert todo_sections((tmp_path / "t3" / "README.md").read_text()) == []


def test_bad_inputs_give_one_line_errors(hub_run, tmp_path):
    with pytest.raises(WinnowError, match="NAMESPACE/NAME"):
        plan_publish(hub_run, "no-namespace")
    with pytest.raises(WinnowError, match="not an output"):
        plan_publish(hub_run, "a/b", output="normalize")
    with pytest.raises(WinnowError, match="not a finished run"):
        plan_publish(tmp_path, "a/b")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(WinnowError, match="not a winnow staging folder"):
        stage_and_verify(plan_publish(hub_run, "a/b"), tmp_path / "mine", CardOptions())
