"""A small finished run (text shards, rejected rows, length buckets) for the publish
and report tests, built once per test session with the real local runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from winnow.cli import main
from winnow.demo import build_corpus, train_demo_tokenizer

PIPELINE = """\
name: hubtest
seed: 0
input: {{path: "{input}", format: jsonl, text_field: text, id_field: id}}
output: {{dir: "{run}", format: arrow, shard_rows: 120}}
runner: {{workers: 1, chunk_rows: 150}}
stages:
  - {{id: normalize, use: normalize}}
  - id: not_empty
    use: filter
    params: {{keep: "length(trim(text)) > 0", reason: empty_text}}
  - id: min_words
    use: filter
    params: {{keep: "len(string_split_regex(trim(text), '\\\\s+')) >= 20", reason: too_few_words}}
  - {{id: exact_dedup, use: exact_dedup}}
  - id: quality
    use: score
    params: {{scorers: [{{use: gopher_repetition}}]}}
  - id: quality_filter
    use: filter
    params: {{keep: "gopher_dup_line_frac < 0.3", reason: low_quality}}
  - id: tokenize
    use: tokenize
    params: {{tokenizer: "{tokenizer}"}}
  - id: buckets
    use: decompose
    params: {{dir: buckets, min_log2: 5, max_log2: 8}}
"""


def build_run(root: Path, docs: int = 300) -> Path:
    build_corpus(root, docs)
    tokenizer = train_demo_tokenizer(root, vocab=512)
    run = root / "run"
    yaml_path = root / "pipeline.yaml"
    yaml_path.write_text(PIPELINE.format(input=root / "input", run=run, tokenizer=tokenizer))
    assert main(["run", str(yaml_path), "--quiet", "--workers", "1"]) == 0
    return run


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def hub_run(tmp_path_factory) -> Path:
    """One run for every module that imports this fixture (pytest would otherwise
    build it once per importing module)."""
    if "run" not in _BUILT:
        _BUILT["run"] = build_run(tmp_path_factory.mktemp("hub-run"))
    return _BUILT["run"]


def expected_rows(run: Path) -> dict[str, int]:
    """Rows per config computed straight from ledger.json and buckets/manifest.json."""
    ledger = json.loads((run / "ledger.json").read_text())
    buckets = json.loads((run / "buckets" / "manifest.json").read_text())
    rows = {"default": ledger["outputs"]["buckets"]}
    rows |= {f"len_{n}": b["sequences"] for n, b in buckets["buckets"].items()}
    rows[f"concat_len_{buckets['concat']['len']}"] = buckets["concat"]["sequences"]
    rows["rejected"] = sum(sum(s["rejected"].values()) for s in ledger["stages"].values())
    return rows
