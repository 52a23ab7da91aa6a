"""The shipped pipelines validate, and the demo runs end to end on a small corpus."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from winnow.cli import main
from winnow.demo import NEAR_DUP_RATES, build_corpus
from winnow.pipeline import load_pipeline

PIPELINES = sorted((Path(__file__).resolve().parent.parent / "pipelines").glob("*.yaml"))


def _kind(path: Path) -> str:
    """pipeline, ablation (`winnow ablate`) or fit-weights, by the top-level keys."""
    data = yaml.safe_load(path.read_text())
    return "pipeline" if "stages" in data else "ablation" if "variants" in data else "fit"


@pytest.mark.parametrize("path", [p for p in PIPELINES if _kind(p) == "pipeline"], ids=str)
def test_shipped_pipelines_validate(path):
    load_pipeline(path)


@pytest.mark.parametrize("path", [p for p in PIPELINES if _kind(p) != "pipeline"], ids=str)
def test_shipped_ablation_configs_validate(path):
    from winnow.trainer.config import load_ablation_config, read_yaml, validate_model
    from winnow.trainer.fit_weights import FitWeightsConfig

    if _kind(path) == "ablation":
        load_ablation_config(path)
    else:
        validate_model(FitWeightsConfig, read_yaml(path), str(path))


def _text_rows(root: Path) -> list[dict]:
    rows = []
    for f in sorted((root / "input").glob("*.jsonl.gz")):
        for line in gzip.decompress(f.read_bytes()).splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # the deliberately malformed lines
                continue
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("text"), str)]


def test_demo_corpus_labels_match_its_files(tmp_path):
    labels = build_corpus(tmp_path, docs=300)
    assert {r["id"] for r in _text_rows(tmp_path)} == set(labels)
    assert build_corpus(tmp_path / "again", docs=300) == labels


def test_demo_copies_and_their_sources_are_trained_on(tmp_path):
    """Neither an exact copy nor its source falls in the ablation's held-out range, so
    no variant is scored on a document another variant trained a copy of."""
    from winnow.config import read_yaml
    from winnow.trainer.data import doc_keys, held_out

    labels = build_corpus(tmp_path, docs=300)
    fraction = read_yaml(PIPELINES[0].parent / "ablation.yaml")["base"]["data"]["val_fraction"]
    rows = _text_rows(tmp_path)
    copied = ("exact_duplicate", *(f"near_dup_{rate}" for rate in NEAR_DUP_RATES))
    copies = [r for r in rows if labels[r["id"]] in copied]
    exact = {r["text"] for r in rows if labels[r["id"]] == "exact_duplicate"}
    sources = [r["id"] for r in rows if labels[r["id"]] == "clean" and r["text"] in exact]
    assert len(copies) > 20 and len(sources) >= len(exact) > 5
    ids = [r["id"] for r in copies] + sources
    assert not held_out(doc_keys(pa.array(ids)), fraction).any()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--docs", "400", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "defects caught" in out and "proxy-model ablation" in out
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert ledger["stages"]["read"]["rejected"] == {
        "invalid_utf8": 1,
        "malformed_json": 1,
        "missing_text": 1,
        "non_string_text": 1,
        "not_object": 1,
        "null_text": 1,
    }
    labels = json.loads((tmp_path / "labels.json").read_text())
    kept = set()
    for f in (tmp_path / "run" / "data" / "buckets").glob("*.arrow"):
        kept |= set(pa.ipc.open_file(str(f)).read_all().column("id").to_pylist())
    for label in ("keyword_spam", "empty", "short", "exact_duplicate"):
        assert not [i for i, v in labels.items() if v == label and i in kept], label
    assert (tmp_path / "ablation" / "results.md").exists()
    manifest = json.loads((tmp_path / "run" / "buckets" / "manifest.json").read_text())
    assert manifest["buckets"]


def _results(delta, half, primary="loss@curated"):
    return {
        "primary": primary,
        "seeds": [0, 1, 2],
        "variants": {"curated": {primary: {"delta": delta, "delta_ci95": half}}},
    }


def test_verdict_names_metric_interval_and_decision():
    from winnow.demo import verdict

    cached = {
        "budget": "tiny, 3 seeds",
        "effects": {"dedup (bpb)": {"delta": 0.02, "ci95": 0.01, "separates": True}},
        "command": "python benchmarks/ablation_fidelity.py effects",
    }
    undecided = verdict(_results(0.01, 0.05), cached)
    assert "loss@curated" in undecided[0] and "+0.0100 ± 0.0500" in undecided[0]
    assert "3 seeds" in undecided[0] and undecided[1].startswith("decision: none")
    assert "dedup (bpb) +0.0200 ± 0.0100 (decided)" in undecided[2]
    assert "benchmarks/ablation_fidelity.py" in undecided[2]
    assert verdict(_results(-0.2, 0.05), None)[1].startswith("decision: curation helped")
    assert verdict(_results(0.2, 0.05), None)[1].startswith("decision: curation hurt")
    # for a higher-is-better metric a positive difference means curation helped
    assert "helped" in verdict(_results(0.2, 0.05, "acc@cloze"), None)[1]
    assert len(verdict(_results(0.2, 0.05), None)) == 2
