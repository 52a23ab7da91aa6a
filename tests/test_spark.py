"""The Spark runner on a real ``local[2,3]`` session: parity with the local runner,
task retries, bad input."""

import json
import logging
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from winnow.cli import main as cli_main
from winnow.errors import InputError
from winnow.pipeline import parse_pipeline
from winnow.runners.local import run_pipeline

pytestmark = pytest.mark.spark

VOCAB = [f"w{i}" for i in range(400)]


def write_corpus(folder: Path, n_docs=1500, bad_lines=True) -> None:
    """Two JSONL files: random documents, exact copies (some differing only in case and
    spacing), near copies (one word changed) and, optionally, two malformed lines."""
    rng = random.Random(3)
    docs = []
    for i in range(n_docs):
        words = rng.choices(VOCAB, k=rng.randrange(8, 70))
        docs.append({"id": f"d{i:05d}", "text": " ".join(words), "src": f"s{i % 3}"})
    for j in range(120):
        orig = docs[rng.randrange(n_docs)]
        text = orig["text"].upper() if j % 3 == 0 else orig["text"].replace(" ", "  ", 2)
        docs.append({"id": f"x{j:04d}", "text": text if j % 2 else orig["text"], "src": "dup"})
    for j in range(80):
        words = docs[rng.randrange(n_docs)]["text"].split()
        words[rng.randrange(len(words))] = "changed"
        docs.append({"id": f"n{j:04d}", "text": " ".join(words), "src": "near"})
    rng.shuffle(docs)
    folder.mkdir(parents=True, exist_ok=True)
    half = len(docs) // 2
    for f, rows in enumerate([docs[:half], docs[half:]]):
        lines = [json.dumps(r) for r in rows]
        if bad_lines and f == 1:
            lines.insert(5, '{"id": "broken", "text": ')
            lines.insert(9, '{"id": "nulltext", "text": null}')
        (folder / f"part-{f}.jsonl").write_text("\n".join(lines) + "\n")


STAGES = [
    {"id": "norm", "use": "normalize"},
    {"id": "long", "use": "filter", "params": {"keep": "length(text) > 60"}},
    {"id": "exact", "use": "exact_dedup", "params": {"normalize": "lower_space"}},
    {"id": "near", "use": "minhash_dedup", "params": {"bands": 10, "rows": 5}},
    {"id": "half", "use": "sample", "params": {"fraction": 0.7}},
    {"id": "top", "use": "select", "params": {"by": "length(text)", "fraction": 0.5}},
]


def spec(tmp_path: Path, out: str, stages=STAGES, **input_over):
    return parse_pipeline(
        {
            "name": "t",
            "input": {"path": str(tmp_path / "in"), **input_over},
            "output": {"dir": str(tmp_path / out)},
            "runner": {"chunk_rows": 300, "progress": False},
            "stages": stages,
        }
    )


def tables(folder: Path) -> list[pa.Table]:
    out = []
    for path in sorted(folder.rglob("*.arrow")):
        with pa.memory_map(str(path)) as src:
            out.append(pa.ipc.open_file(src).read_all())
    return out


def rejected_rows(folder: Path) -> list[tuple]:
    table = pa.concat_tables(tables(folder))
    return sorted(zip(table["id"].to_pylist(), table["reason"].to_pylist(), strict=True))


def snapshot(run: Path) -> dict:
    """What must match between runners: output rows and columns, rejected ids and
    reasons per stage, the ledger and the pass layout."""
    return {
        "data": pa.concat_tables(tables(run / "data")),
        "rejected": {
            s.name: rejected_rows(s)
            for s in sorted((run / "rejected").iterdir())
            if any(s.glob("*.arrow"))
        },
        "ledger": json.loads((run / "ledger.json").read_text()),
        "parts": sorted(str(p.relative_to(run)) for p in run.glob("stages/*/part-*")),
        "outputs": json.loads((run / "manifest.json").read_text())["outputs"],
    }


def test_parity_with_local_runner(tmp_path, spark, caplog):
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in")
    local = run_pipeline(spec(tmp_path, "local"), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(spec(tmp_path, "spark"), spark).run()
    assert "ran on the driver" not in caplog.text  # exact, near and top are native
    assert ledger.to_json() == local.to_json()
    a, b = snapshot(tmp_path / "local"), snapshot(tmp_path / "spark")
    assert b["data"].equals(a["data"])  # same rows, columns, types and order
    assert b == a
    stages = a["ledger"]["stages"]
    assert sum(stages["read"]["rejected"].values()) == 2  # the two malformed lines
    assert stages["exact"]["rejected"]["exact_duplicate_of"] > 0
    assert stages["near"]["rejected"]["near_duplicate_of"] > 0
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")


def arrow_bytes(run: Path) -> dict[str, bytes]:
    """Every pass part, rejected part and output shard, byte for byte."""
    files = [
        *run.glob("stages/*/part-*.arrow"),
        *run.glob("rejected/*/*.arrow"),
        *run.glob("data/*"),
    ]
    return {str(f.relative_to(run)): f.read_bytes() for f in sorted(files)}


@pytest.mark.parametrize(
    "stages",
    [
        [
            {
                "id": "top",
                "use": "select",
                "params": {"by": "length(text)", "n": 150, "stratify": "src"},
            }
        ],
        [{"id": "top", "use": "select", "params": {"by": "NULL", "token_fraction": 0.3}}],
        [
            {"id": "ex", "use": "exact_dedup", "params": {"keep": "oldest", "keep_column": "src"}},
            {"id": "top", "use": "select", "params": {"by": "dup_count", "tokens": 2000}},
        ],
    ],
    ids=["n-stratified", "null-score-token-fraction", "oldest-then-tokens"],
)
def test_native_backends_match_local(tmp_path, spark, stages):
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=400, bad_lines=False)
    local = run_pipeline(spec(tmp_path, "local", stages), workers=1, progress=False)
    ledger = SparkRunner(spec(tmp_path, "spark", stages), spark).run()
    assert ledger.to_json() == local.to_json()
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")


def test_cli_run_on_spark(tmp_path, spark, capsys):
    """``winnow run --runner spark`` reuses the active session."""
    write_corpus(tmp_path / "in", n_docs=100)
    stages = "[{id: norm, use: normalize}, {id: ex, use: exact_dedup}]"
    yaml = f"name: t\ninput: {{path: {tmp_path / 'in'}}}\noutput: {{dir: {tmp_path / 'run'}}}\n"
    (tmp_path / "p.yaml").write_text(yaml + f"stages: {stages}\n")
    assert cli_main(["run", str(tmp_path / "p.yaml"), "--runner", "spark", "--quiet"]) == 0
    ledger = json.loads((tmp_path / "run" / "ledger.json").read_text())
    assert ledger["input_rows"] == ledger["output_rows"] + ledger["rejected_rows"]


def test_rerun_skips_finished_passes(tmp_path, spark):
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=300, bad_lines=False)
    stages = STAGES[:1] + STAGES[2:3]
    first = SparkRunner(spec(tmp_path, "run", stages), spark).run()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "stages").rglob("part-*")}
    again = SparkRunner(spec(tmp_path, "run", stages), spark).run()
    assert again.to_json() == first.to_json()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_failed_task_is_retried(tmp_path, spark):
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=600, bad_lines=False)

    def stages(flag: Path):
        fail = {"flag": str(flag), "when_id": "d00123"}
        return [
            {"id": "norm", "use": "normalize"},
            {"id": "flaky", "use": "plugins.stages:FailOnce", "params": fail},
            {"id": "exact", "use": "exact_dedup"},
        ]

    done = tmp_path / "already-failed"
    done.touch()
    local = run_pipeline(spec(tmp_path, "local", stages(done)), workers=1, progress=False)
    flag = tmp_path / "failed-once"
    ledger = SparkRunner(spec(tmp_path, "spark", stages(flag)), spark).run()
    assert flag.exists()  # the task did fail once, and Spark ran it again
    assert ledger.to_json() == local.to_json()
    a, b = snapshot(tmp_path / "local"), snapshot(tmp_path / "spark")
    assert b["data"].equals(a["data"]) and b["rejected"] == a["rejected"]


def test_on_error_fail_names_file_and_line(tmp_path, spark):
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=200)
    runner = SparkRunner(spec(tmp_path, "run", STAGES[:2], on_error="fail"), spark)
    with pytest.raises(InputError) as info:
        runner.run()
    message = str(info.value)
    assert "\n" not in message and "part-1.jsonl:6:" in message


def test_unwrap_errors_from_workers(tmp_path, spark):
    """A WinnowError raised inside a Spark task reaches the driver as itself."""
    from winnow.spark.session import unwrap_errors

    def boom(batches):
        for _ in batches:
            raise InputError("data.jsonl:3: bad row")
        yield from ()

    frame = spark.range(1).mapInArrow(boom, "id long")
    with pytest.raises(InputError, match=r"^data\.jsonl:3: bad row$"):
        with unwrap_errors():
            frame.collect()


def test_spark_submit_line(capsys):
    assert cli_main(["spark-submit", "pipelines/demo.yaml", "--master", "yarn"]) == 0
    line = capsys.readouterr().out
    assert "spark-submit --master yarn" in line
    assert f"spark.pyspark.python={sys.executable}" in line
    assert "winnow/spark/submit.py" in line and "pipelines/demo.yaml" in line


@pytest.mark.parametrize("module", ["winnow.spark", "winnow.runners.spark"])
def test_spark_entry_points_run(module, tmp_path):
    """``python -m winnow.spark`` and the older ``python -m winnow.runners.spark`` both
    reach the driver's command line (a missing pipeline is its one-line error)."""
    out = subprocess.run(
        [sys.executable, "-m", module, str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert (
        out.stderr.strip() == f"winnow: error: {tmp_path / 'missing.yaml'}: pipeline file not found"
    )


def test_connected_components_match_scipy(spark):
    """Large-star / small-star labels every node with its component's smallest node;
    a long path needs several rounds."""
    import numpy as np

    from winnow.kernels import clusters
    from winnow.spark.components import connected_components

    rng = np.random.default_rng(5)
    n = 300
    src, dst = rng.integers(0, n, 120), rng.integers(0, n, 120)
    path = rng.permutation(n)[:60]  # a 60-node chain in random order
    src, dst = np.concatenate([src, path[:-1]]), np.concatenate([dst, path[1:]])
    loops = src == dst
    edges = spark.createDataFrame(
        [(int(a), int(b)) for a, b in zip(src[~loops], dst[~loops], strict=True)], "a long, b long"
    )
    got = {r["a"]: r["b"] for r in connected_components(edges).collect()}
    labels = clusters.components(n, src, dst)
    smallest = {lab: int(np.flatnonzero(labels == lab).min()) for lab in np.unique(labels)}
    want = {v: smallest[labels[v]] for v in range(n) if smallest[labels[v]] != v}
    assert got == want


def test_minhash_native_with_verify(tmp_path, spark, caplog):
    """``keep: oldest`` and, in a second stage, ``verify: jaccard`` (which replaces
    cluster_id/cluster_size in place) both run natively: same bytes as locally."""
    from winnow.spark.executor import SparkRunner

    near = {"bands": 10, "rows": 5, "keep": "oldest", "keep_column": "src"}
    stages = [
        {"id": "norm", "use": "normalize"},
        {"id": "near", "use": "minhash_dedup", "params": near},
        {"id": "check", "use": "minhash_dedup", "params": {"verify": "jaccard", "ngram": 2}},
    ]
    write_corpus(tmp_path / "in", n_docs=400, bad_lines=False)
    local = run_pipeline(spec(tmp_path, "local", stages), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(spec(tmp_path, "spark", stages), spark).run()
    assert "ran on the driver" not in caplog.text
    assert ledger.to_json() == local.to_json()
    assert ledger.to_json()["stages"]["near"]["rejected"]["near_duplicate_of"] > 0
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")


def test_plugin_global_stage_runs_on_the_driver(tmp_path, spark, caplog):
    """A global stage without a Spark backend runs its local code on the driver, with
    a warning, and writes the same bytes as locally."""
    from winnow.spark.executor import SparkRunner

    stages = [
        {"id": "norm", "use": "normalize"},
        {"id": "order", "use": "plugins.stages:LongestFirst"},
    ]
    write_corpus(tmp_path / "in", n_docs=200, bad_lines=False)
    local = run_pipeline(spec(tmp_path, "local", stages), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(spec(tmp_path, "spark", stages), spark).run()
    assert "stage 'order' (LongestFirst): no Spark backend yet; ran on the driver" in caplog.text
    assert ledger.to_json() == local.to_json()
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")


def write_chains(folder: Path, n_docs=150) -> None:
    """Random 60-word documents; 30 of them start a chain of six copies, each one
    word off the previous one (so A~B~C with A and C dissimilar at threshold 0.8,
    5-word shingles), 30 more have copies 1, 2, 4 and 8 words off."""
    rng = random.Random(5)

    def word() -> str:  # letters only: normalisation maps every digit to 0
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=6))

    def edit(words: list[str], n: int) -> list[str]:
        out = words[:]
        for i in rng.sample(range(len(out)), n):
            out[i] = word()
        return out

    docs = [[word() for _ in range(60)] for _ in range(n_docs)]
    rows = [(f"d{i:04d}", words) for i, words in enumerate(docs)]

    for i in range(30):
        words = docs[i]
        for link in range(6):
            words = edit(words, 1)
            rows.append((f"c{i:02d}-{link}", words))
    for i in range(30, 60):
        rows += [(f"n{i:02d}-{k}", edit(docs[i], k)) for k in (1, 2, 4, 8)]
    rng.shuffle(rows)
    lines = [
        json.dumps({"id": i, "text": " ".join(w), "score": rng.random()}) + "\n" for i, w in rows
    ]
    folder.mkdir(parents=True)
    (folder / "part-0.jsonl").write_text("".join(lines[::2]))
    (folder / "part-1.jsonl").write_text("".join(lines[1::2]))


@pytest.mark.parametrize(
    "params",
    [
        {"verify": "jaccard"},
        {"verify": "signature", "keep": "highest_score", "keep_column": "score"},
    ],
    ids=["jaccard", "signature-highest-score"],
)
def test_minhash_verify_resolves_chains(tmp_path, spark, monkeypatch, params):
    """Verified clusters on Spark equal ``resolve_groups``'s: chain members that fail
    against their cluster's kept document are resolved again among themselves (here
    in three or more rounds); same ledger (verified_edges included) and bytes."""
    from winnow.kernels import clusters
    from winnow.spark.executor import SparkRunner

    rounds = []

    def counting(labels, priority, score, threshold):  # local rounds that score members
        def counted(u, v):
            if len(u):
                rounds.append(len(u))
            return score(u, v)

        return resolve(labels, priority, counted, threshold)

    resolve = clusters.resolve_groups
    monkeypatch.setattr(clusters, "resolve_groups", counting)
    stages = [{"id": "near", "use": "minhash_dedup", "params": params}]
    write_chains(tmp_path / "in")
    local = run_pipeline(spec(tmp_path, "local", stages), workers=1, progress=False)
    assert len(rounds) >= 3
    ledger = SparkRunner(spec(tmp_path, "spark", stages), spark).run()
    assert ledger.to_json() == local.to_json()
    stats = local.to_json()["stages"]["near"]["stats"]
    assert 0 < stats["verified_edges"] < stats["candidate_edges"]
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")


def test_minhash_without_candidates(tmp_path, spark):
    """No candidate edges at all (distinct texts, an empty one): every row kept, as a
    singleton cluster, as locally."""
    from winnow.spark.executor import SparkRunner

    (tmp_path / "in").mkdir()
    rows = [{"id": "a", "text": "one two three four five six"}, {"id": "b", "text": ""}]
    rows.append({"id": "c", "text": "seven eight nine ten eleven twelve"})
    (tmp_path / "in" / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    stages = [{"id": "near", "use": "minhash_dedup"}]
    local = run_pipeline(spec(tmp_path, "local", stages), workers=1, progress=False)
    ledger = SparkRunner(spec(tmp_path, "spark", stages), spark).run()
    assert ledger.to_json() == local.to_json()
    assert ledger.to_json()["stages"]["near"]["stats"]["candidate_edges"] == 0
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")


def bucket_files(run: Path, folder: str) -> dict[str, bytes]:
    """Every file of a decompose output folder (shards and manifest), byte for byte."""
    root = run / folder
    return {
        str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
    }


def sink_tables(run: Path) -> dict[str, pa.Table]:
    """Each sink's output (``data/<sink>/``) as one table."""
    return {s.name: pa.concat_tables(tables(s)) for s in sorted((run / "data").iterdir())}


def dag_snapshot(run: Path) -> dict:
    """``snapshot`` for a run with several sinks."""
    return {
        "data": sink_tables(run),
        "rejected": {  # parts may differ in columns (a malformed line's own fields)
            s.name: sorted(
                (i, r)
                for t in tables(s)
                for i, r in zip(t["id"].to_pylist(), t["reason"].to_pylist(), strict=True)
            )
            for s in sorted((run / "rejected").iterdir())
            if any(s.glob("*.arrow"))
        },
        "ledger": json.loads((run / "ledger.json").read_text()),
        "parts": sorted(str(p.relative_to(run)) for p in run.glob("stages/*/part-*")),
        "outputs": json.loads((run / "manifest.json").read_text())["outputs"],
    }


def dag_bytes(run: Path) -> dict[str, bytes]:
    """``arrow_bytes`` for a run with several sinks (``data/<sink>/shard-*``)."""
    files = [
        *run.glob("stages/*/part-*.arrow"),
        *run.glob("rejected/*/*.arrow"),
        *run.glob("data/*/*"),
    ]
    return {str(f.relative_to(run)): f.read_bytes() for f in sorted(files)}


def bucket_token_counts(run: Path, folder: str) -> dict[str, int]:
    manifest = json.loads((run / folder / "manifest.json").read_text())
    return {size: b["tokens"] for size, b in manifest["buckets"].items()}


@pytest.mark.slow
def test_demo_pipeline_parity(tmp_path, spark, caplog):
    """The shipped demo DAG (two branches, normalize, filters, exact and MinHash dedup,
    score, tokenize, decompose) on the demo corpus: same sinks, rows, columns, ledger,
    buckets and bytes on Spark as locally."""
    from winnow.demo import PIPELINE, build_corpus, train_demo_tokenizer
    from winnow.pipeline import load_pipeline
    from winnow.spark.executor import SparkRunner

    build_corpus(tmp_path, docs=400)
    tokenizer = str(train_demo_tokenizer(tmp_path))

    def demo_spec(out: str):
        overrides = {  # the overrides run_demo uses
            "input.path": str(tmp_path / "input"),
            "output.dir": str(tmp_path / out),
            "stages.tokenize.params.tokenizer": tokenizer,
            "stages.tokenize_raw.params.tokenizer": tokenizer,
        }
        return load_pipeline(PIPELINE, overrides)

    local = run_pipeline(demo_spec("local"), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(demo_spec("spark"), spark).run()
    for sid in (
        "not_empty",
        "exact_dedup",
        "near_dedup",
        "quality_filter",
        "buckets",
        "buckets_raw",
    ):
        assert f"'{sid}'" not in caplog.text
    assert ledger.to_json() == local.to_json()
    a, b = dag_snapshot(tmp_path / "local"), dag_snapshot(tmp_path / "spark")
    assert set(a["data"]) == {"buckets", "buckets_raw"}
    for sink, table in a["data"].items():
        assert table.num_rows > 0
        assert b["data"][sink]["id"].to_pylist() == table["id"].to_pylist()  # kept ids
        assert b["data"][sink].schema == table.schema  # columns and types
        assert b["data"][sink].equals(table)
    assert b == a  # rejected ids and reasons per stage, ledger, pass layout, outputs
    stages = a["ledger"]["stages"]
    assert sum(stages["read"]["rejected"].values()) == 6  # the malformed lines
    assert stages["exact_dedup"]["rejected"]["exact_duplicate_of"] > 0
    assert stages["near_dedup"]["rejected"]["near_duplicate_of"] > 0
    a, b = tmp_path / "local", tmp_path / "spark"
    for folder in ("buckets", "buckets-raw"):
        assert bucket_token_counts(b, folder) == bucket_token_counts(a, folder)
        assert sum(bucket_token_counts(a, folder).values()) > 0
        assert bucket_files(b, folder) == bucket_files(a, folder)  # manifest included
    assert dag_bytes(b) == dag_bytes(a)


def write_scale_corpus(folder: Path, n_docs: int, seed: int = 11) -> None:
    """``n_docs`` documents of 3-11 standard-library docstring sentences recombined, in
    three sources, 2% exact copies and 2% near copies (one word changed); four files."""
    import re

    from winnow.sample_text import docstrings

    sentences = sorted(
        {
            s
            for d in docstrings(min_chars=50)
            for s in re.split(r"(?<=[.!?])\s+", " ".join(d["text"].split()))
            if 30 <= len(s) <= 300
        }
    )
    rng = random.Random(seed)
    n_copies = n_docs // 50
    docs = []
    for i in range(n_docs - 2 * n_copies):
        text = " ".join(rng.sample(sentences, rng.randrange(3, 12)))
        docs.append({"id": f"d{i:06d}", "text": text, "source": f"s{i % 3}"})
    originals = docs[: len(docs) // 2]
    for j in range(n_copies):
        docs.append({**rng.choice(originals), "id": f"x{j:05d}"})
    for j in range(n_copies):
        words = rng.choice(originals)["text"].split()
        words[rng.randrange(len(words))] = "changed"
        docs.append({"id": f"n{j:05d}", "text": " ".join(words), "source": "s0"})
    rng.shuffle(docs)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(4):
        lines = [json.dumps(r) + "\n" for r in docs[f::4]]
        (folder / f"part-{f}.jsonl").write_text("".join(lines))


@pytest.mark.slow
def test_parity_at_scale(tmp_path, spark, caplog):
    """20,000 documents through exact and MinHash dedup, score, stratified token
    selection, tokenize and decompose: same ledger, kept ids, columns, bucket token
    counts (and bytes) on Spark as locally. (About 40 s on Spark on 2 cores.)"""
    from winnow.io.writers import write_table
    from winnow.spark.executor import SparkRunner
    from winnow.tokenizer import train_tokenizer

    write_scale_corpus(tmp_path / "in", 20_000)
    sample = (tmp_path / "in" / "part-0.jsonl").read_text().splitlines()[:2000]
    texts = pa.table({"text": [json.loads(line)["text"] for line in sample]})
    write_table(tmp_path / "tokenizer-text.arrow", texts)
    tokenizer = train_tokenizer([tmp_path / "tokenizer-text.arrow"], tmp_path / "tok.json", 512)
    scorers = [{"use": "gopher_quality"}, {"use": "fineweb_quality"}]
    top = {"by": "gopher_mean_word_len", "token_fraction": 0.8, "stratify": "source"}
    stages = [
        {"id": "exact", "use": "exact_dedup"},
        {"id": "near", "use": "minhash_dedup", "params": {"bands": 14, "rows": 8}},
        {"id": "quality", "use": "score", "params": {"scorers": scorers}},
        {"id": "top", "use": "select", "params": top},
        {"id": "tok", "use": "tokenize", "params": {"tokenizer": str(tokenizer)}},
        {"id": "buckets", "use": "decompose", "params": {"min_log2": 4, "max_log2": 9}},
    ]

    def scale_spec(out: str):
        return parse_pipeline(
            {
                "name": "scale",
                "input": {"path": str(tmp_path / "in")},
                "output": {"dir": str(tmp_path / out)},
                "runner": {"chunk_rows": 5000, "progress": False},
                "stages": stages,
            }
        )

    local = run_pipeline(scale_spec("local"), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(scale_spec("spark"), spark).run()
    assert "ran on the driver" not in caplog.text  # decompose included
    assert ledger.to_json() == local.to_json()
    a, b = snapshot(tmp_path / "local"), snapshot(tmp_path / "spark")
    assert b["data"]["id"].to_pylist() == a["data"]["id"].to_pylist()  # kept ids
    assert b["data"].schema == a["data"].schema  # columns and types
    assert b == a
    counts = local.to_json()["stages"]
    assert counts["read"]["in"] >= 20_000
    assert counts["exact"]["rejected"]["exact_duplicate_of"] >= 390
    assert counts["near"]["rejected"]["near_duplicate_of"] >= 350
    assert counts["top"]["rejected"]["not_selected"] > 0
    a, b = tmp_path / "local", tmp_path / "spark"
    assert bucket_token_counts(b, "buckets") == bucket_token_counts(a, "buckets")
    assert bucket_files(b, "buckets") == bucket_files(a, "buckets")
    assert arrow_bytes(b) == arrow_bytes(a)
