"""The seams every stage relies on: materialising stages end their pass (tag once,
select many), side outputs belong to their pass, per-stage resources size the pool,
``prepare`` runs once in the driver, ``requires`` is checked up front, and every
param has help."""

import os
from pathlib import Path

import pyarrow as pa
import pytest
from test_runner import pipeline, tree_bytes, write_corpus

from winnow.errors import ConfigError
from winnow.io.writers import read_table
from winnow.pipeline import parse_pipeline
from winnow.plan import make_plan
from winnow.runners.local import run_pipeline
from winnow.scorers.base import registry as builtin_scorers
from winnow.stages import builtin_stages

SCORE = {
    "id": "quality",
    "use": "score",
    "params": {"scorers": ["gopher_quality", "gopher_repetition"]},
}


def keep(threshold: int) -> dict:
    return {"id": "short", "use": "filter", "params": {"keep": f"length(text) > {threshold}"}}


def passes(stages: list[dict], tmp_path: Path) -> list[list[str]]:
    plan, _ = make_plan(parse_pipeline(pipeline(tmp_path, stages=stages)))
    return [p.stage_ids for p in plan.passes]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_materialising_stages_end_their_pass(tmp_path):
    norm = {"id": "norm", "use": "normalize"}
    assert passes([norm, SCORE, keep(50)], tmp_path) == [["norm", "quality"], ["short"]]
    fused = dict(SCORE, materialize=False)  # the YAML overrides the class default
    assert passes([norm, fused, keep(50)], tmp_path) == [["norm", "quality", "short"]]
    cut = dict(norm, materialize=True)
    assert passes([cut, keep(50)], tmp_path) == [["norm"], ["short"]]
    with pytest.raises(ConfigError, match=r"stages\[1\]\.materialize: a global stage always"):
        passes([norm, {"id": "d", "use": "exact_dedup", "materialize": False}], tmp_path)


def test_editing_a_filter_after_score_reuses_the_scores(tmp_path):
    write_corpus(tmp_path / "in", n_docs=300, bad_lines=False)
    stages = [{"id": "norm", "use": "normalize"}, SCORE, keep(40)]
    run_pipeline(parse_pipeline(pipeline(tmp_path, stages=stages)), workers=2, progress=False)
    scored = tmp_path / "run" / "stages" / "quality"
    before = snapshot(scored)
    filtered = snapshot(tmp_path / "run" / "stages" / "short")

    stages[-1] = keep(80)
    ledger = run_pipeline(parse_pipeline(pipeline(tmp_path, stages=stages)), progress=False)
    assert snapshot(scored) == before  # same bytes, same mtimes: nothing was re-scored
    assert snapshot(tmp_path / "run" / "stages" / "short") != filtered
    fresh = run_pipeline(
        parse_pipeline(pipeline(tmp_path, out="fresh", stages=stages)), progress=False
    )
    assert ledger.to_json() == fresh.to_json()
    assert tree_bytes(tmp_path / "run", "data") == tree_bytes(tmp_path / "fresh", "data")


DECOMPOSE = [
    {"id": "tok", "use": "tokenize", "params": {"tokenizer": "TOKENIZER"}},
    {"id": "buckets", "use": "decompose", "params": {"min_log2": 3, "max_log2": 6}},
]


def bucket_pipeline(tmp_path: Path, tokenizer: Path) -> dict:
    stages = [dict(s, params=dict(s["params"])) for s in DECOMPOSE]
    stages[0]["params"]["tokenizer"] = str(tokenizer)
    return pipeline(tmp_path, stages=stages)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from winnow.io.writers import write_table
    from winnow.tokenizer import train_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    texts = [" ".join(["alpha beta gamma delta epsilon"] * (i % 9 + 1)) for i in range(200)]
    write_table(folder / "text.arrow", pa.table({"text": texts}))
    return train_tokenizer([folder / "text.arrow"], folder / "tokenizer.json", vocab_size=300)


def test_a_missing_or_altered_side_output_reruns_its_pass(tmp_path, tokenizer):
    write_corpus(tmp_path / "in", n_docs=200, bad_lines=False)
    spec = parse_pipeline(bucket_pipeline(tmp_path, tokenizer))
    run_pipeline(spec, workers=1, progress=False)
    buckets = tmp_path / "run" / "buckets"
    good = {p.relative_to(buckets): p.read_bytes() for p in buckets.rglob("*") if p.is_file()}
    parts = snapshot(tmp_path / "run" / "stages" / "tok")

    shard = next(buckets.glob("len_*/shard_*.arrow"))
    shard.unlink()
    run_pipeline(spec, workers=1, progress=False)
    assert {p.relative_to(buckets): p.read_bytes() for p in buckets.rglob("*") if p.is_file()} == (
        good
    )
    (buckets / "manifest.json").write_text("{}")  # altered in place
    run_pipeline(spec, workers=1, progress=False)
    assert (buckets / "manifest.json").read_bytes() == good[Path("manifest.json")]
    assert snapshot(tmp_path / "run" / "stages" / "tok") == parts  # upstream untouched


def test_a_deleted_combine_summary_is_written_again(tmp_path):
    write_corpus(tmp_path / "in", n_docs=200, bad_lines=False)
    stages = [
        SCORE,
        {"id": "mix", "use": "combine", "params": {"weights": {"gopher_quality_pass": 1.0}}},
    ]
    spec = parse_pipeline(pipeline(tmp_path, stages=stages))
    run_pipeline(spec, progress=False)
    summary = tmp_path / "run" / "combine-mix.json"
    text = summary.read_text()
    summary.unlink()
    run_pipeline(spec, progress=False)
    assert summary.read_text() == text


def test_prepare_runs_once_in_the_driver_and_its_artifact_is_tracked(tmp_path):
    write_corpus(tmp_path / "in", n_docs=300, bad_lines=False)
    stages = [{"id": "vocab", "use": "plugins.structure:Vocabulary"}, keep(10)]
    spec = parse_pipeline(pipeline(tmp_path, stages=stages))
    run_pipeline(spec, workers=2, progress=False)
    log = tmp_path / "run" / "artifacts" / "vocab.log"
    assert log.read_text() == "prepared\n"  # three chunks, two workers, one prepare
    table = read_table(next((tmp_path / "run" / "stages" / "vocab").glob("part-*.arrow")))
    assert "has_alpha" in table.column_names
    run_pipeline(spec, workers=2, progress=False)
    assert log.read_text() == "prepared\n"  # finished: not prepared again
    (tmp_path / "run" / "artifacts" / "vocab.txt").unlink()
    run_pipeline(spec, workers=2, progress=False)
    assert log.read_text() == "prepared\n" * 2  # the side output was missing: recomputed


def stage_rows(tmp_path: Path, stages: list[dict], workers: int) -> pa.Table:
    spec = parse_pipeline(pipeline(tmp_path, stages=stages))
    run_pipeline(spec, workers=workers, progress=False)
    return pa.concat_tables(read_table(p) for p in sorted((tmp_path / "run" / "data").glob("*")))


def test_resources_size_the_pass(tmp_path):
    write_corpus(tmp_path / "in", n_docs=600, bad_lines=False)  # 6 chunks of 100 rows
    both = stage_rows(tmp_path, [{"id": "who", "use": "plugins.structure:WhoRan"}], 2)
    pids = set(both["pid"].to_pylist())
    assert os.getpid() not in pids and len(pids) <= 2  # a pool of (at most) two workers
    assert max(both["slice_rows"].to_pylist()) == 7  # fed in slices of batch_rows
    one = stage_rows(tmp_path, [{"id": "who", "use": "plugins.structure:OneWorker"}], 2)
    assert set(one["pid"].to_pylist()) == {os.getpid()}  # capped to one worker: in-process
    override = [{"id": "who", "use": "plugins.structure:WhoRan", "resources": {"workers": 1}}]
    assert set(stage_rows(tmp_path, override, 2)["pid"].to_pylist()) == {os.getpid()}


def test_a_pass_takes_the_smallest_worker_cap_and_the_most_gpus():
    from plugins.structure import OneWorker, WhoRan

    from winnow.runners.runner import pass_resources
    from winnow.stages.base import Resources

    def stage(cls, **res):
        return cls(cls.Params(), stage_id="s", seed=0, resources=Resources(**res))

    assert pass_resources([stage(WhoRan)], 8) == Resources(workers=8, gpus=0)
    assert pass_resources([stage(WhoRan), stage(OneWorker, workers=1)], 8).workers == 1
    assert pass_resources([stage(WhoRan, workers=3, gpus=1), stage(WhoRan, gpus=2)], 2) == (
        Resources(workers=2, gpus=2)
    )


def test_gpu_stages_get_one_device_group_per_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    write_corpus(tmp_path / "in", n_docs=600, bad_lines=False)
    stages = [{"id": "who", "use": "plugins.structure:WhoRan", "resources": {"gpus": 2}}]
    rows = stage_rows(tmp_path, stages, workers=4)
    by_pid = {}
    for pid, gpus in zip(rows["pid"].to_pylist(), rows["gpus"].to_pylist(), strict=True):
        by_pid.setdefault(pid, set()).add(gpus)
    assert len(by_pid) <= 2  # 4 devices / 2 per worker
    assert sorted(g for groups in by_pid.values() for g in groups) == ["0,1", "2,3"][: len(by_pid)]


def test_bad_resources_and_missing_requirements_fail_before_reading(tmp_path):
    bad = [{"id": "who", "use": "plugins.structure:WhoRan", "resources": {"workers": 0}}]
    with pytest.raises(ConfigError, match=r"stages\[0\]\.resources\.workers"):
        parse_pipeline(pipeline(tmp_path, stages=bad))
    typo = [{"id": "who", "use": "plugins.structure:WhoRan", "resources": {"wrokers": 1}}]
    with pytest.raises(ConfigError, match=r"resources\.wrokers: unknown key"):
        parse_pipeline(pipeline(tmp_path, stages=typo))
    missing = [{"id": "m", "use": "plugins.structure:NeedsMissing"}]
    with pytest.raises(
        ConfigError, match=r"winnow_no_such_module.*pip install 'winnow\[rephrase\]'"
    ):
        parse_pipeline(pipeline(tmp_path, stages=missing))


def test_every_stage_and_scorer_param_has_help():
    missing = []
    for name, cls in [*builtin_stages().items(), *builtin_scorers().items()]:
        for field, info in cls.Params.model_fields.items():
            if not (info.description or "").strip():
                missing.append(f"{name}.{field}")
    assert missing == []


@pytest.mark.spark
def test_a_plugin_global_stage_ships_its_own_spark_backend(tmp_path, spark, caplog):
    from plugins import spark_backends

    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=300, bad_lines=False)
    stages = [{"id": "chars", "use": "plugins.structure:CharCount"}]
    local = run_pipeline(parse_pipeline(pipeline(tmp_path, stages=stages)), progress=False)
    spark_backends.CALLS.clear()
    with caplog.at_level("WARNING", logger="winnow.spark"):
        ledger = SparkRunner(parse_pipeline(pipeline(tmp_path, "spark", stages)), spark).run()
    assert spark_backends.CALLS == ["chars"]  # the plugin's backend ran, not the driver path
    assert "ran on the driver" not in caplog.text
    assert ledger.to_json() == local.to_json()
    assert tree_bytes(tmp_path / "spark", "data") == tree_bytes(tmp_path / "run", "data")
