"""dsir: parity with the data-selection package (the oracle), the smoothed per-n-gram
score against hand arithmetic and a brute-force twin, sharding independence, and the
Gumbel keys."""

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from skills_corpus import docstrings

from winnow.stages.base import Materialized
from winnow.stages.dsir import Dsir, HashedNgrams, gumbel, log_ratio

TARGET = "networking, email and internet protocols"
OTHERS = ("mathematics and numbers", "dates and times", "concurrency, threads and processes")


@pytest.fixture(scope="module")
def corpus():
    """A reference of 60 target-domain docstrings; a raw pool in which 10% are."""
    target = docstrings(TARGET)
    others = [row for area in OTHERS for row in docstrings(area)]
    return target[::2][:60], target[1::2][: len(others) // 9] + others


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    return path


def write_arrow(folder, rows, n_files):
    folder.mkdir(parents=True, exist_ok=True)
    files, size = [], -(-len(rows) // n_files)
    for i in range(n_files):
        part = rows[i * size : (i + 1) * size]
        table = pa.table({"id": [r["id"] for r in part], "text": [r["text"] for r in part]})
        path = folder / f"part-{i:05d}.arrow"
        with pa.ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table)
        files.append(path)
    return Materialized(files)


def run_stage(tmp_path, reference, data, **params):
    stage = Dsir(
        Dsir.Params(reference=str(reference), **params), stage_id="dsir", seed=7, run_dir=tmp_path
    )
    outputs = list(stage.run(data, tmp_path / "work"))
    return pa.concat_tables([o.kept for o in outputs]), outputs


def test_exact_mode_reproduces_the_data_selection_package(tmp_path, corpus):
    from data_selection import HashedNgramDSIR

    target, raw = corpus
    ref = write_jsonl(tmp_path / "target.jsonl", target)
    dsir = HashedNgramDSIR(
        [str(write_jsonl(tmp_path / "raw.jsonl", raw))],
        [str(ref)],
        cache_dir=str(tmp_path / "cache"),
        num_proc=1,
    )
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    expected = np.load(tmp_path / "cache" / "log_importance_weights" / "0.npy")

    features = HashedNgrams("exact", 10_000, 2)
    for row in raw[:20]:  # per-document counts equal the package's featurizer
        ours = np.bincount(features.buckets(row["text"]), minlength=10_000)
        assert np.array_equal(ours, dsir.featurizer(row["text"]))
    kept, _ = run_stage(tmp_path, ref, write_arrow(tmp_path / "parts", raw, 3), mode="exact")
    assert np.array_equal(kept.column("dsir_score").to_numpy(), expected)  # bit for bit


def test_add_one_log_ratio_by_hand():
    target, raw = np.array([3, 1, 0]), np.array([2, 2, 4])
    # p_target = (4, 2, 1) / 7 and p_raw = (3, 3, 5) / 11
    expected = [math.log(4 / 7 * 11 / 3), math.log(2 / 7 * 11 / 3), math.log(1 / 7 * 11 / 5)]
    assert np.allclose(log_ratio(target, raw, 1.0), expected, rtol=1e-12)
    assert log_ratio(target, raw)[2] == math.log(1e-8) - math.log(0.5 + 1e-8)  # package


def test_llr_matches_a_brute_force_twin_on_the_package_counts(tmp_path, corpus):
    from data_selection import HashedNgramDSIR

    target, raw = corpus[0][:10], corpus[1][:40]
    ref = write_jsonl(tmp_path / "target.jsonl", target)
    featurize = HashedNgramDSIR([], [], cache_dir=str(tmp_path / "cache"), num_proc=1).featurizer
    raw_counts = [featurize(r["text"]) for r in raw]
    t = sum(featurize(r["text"]) for r in target) + 1  # add-one, per bucket
    r = sum(raw_counts) + 1
    expected = []
    for counts in raw_counts:
        total = sum(c * (math.log(t[b] / t.sum()) - math.log(r[b] / r.sum()))
                    for b, c in enumerate(counts) if c)  # fmt: skip
        expected.append(total / counts.sum())
    kept, _ = run_stage(tmp_path, ref, write_arrow(tmp_path / "parts", raw, 2), mode="exact")
    llr = kept.column("dsir_llr").to_numpy()
    assert np.allclose(llr, expected, rtol=1e-9)
    mean_grams = (r.sum() - len(r)) / len(raw)  # the Gumbel key: weight at mean length
    assert np.allclose(kept.column("dsir_gumbel").to_numpy(),
                       llr * mean_grams + gumbel(kept.column("id"), 7))  # fmt: skip


def test_scores_do_not_depend_on_sharding_and_rank_the_target_first(tmp_path, corpus):
    target, raw = corpus
    ref = write_jsonl(tmp_path / "target.jsonl", target)
    one, outputs = run_stage(tmp_path, ref, write_arrow(tmp_path / "a", raw, 1))
    four, _ = run_stage(tmp_path, ref, write_arrow(tmp_path / "b", raw, 4))
    assert one.equals(four)
    assert outputs[0].stats["dsir_target_ngrams"] > 0
    is_target = np.array([r["text"] in {t["text"] for t in docstrings(TARGET)} for r in raw])
    score, llr = one.column("dsir_score").to_numpy(), one.column("dsir_llr").to_numpy()
    assert auc(llr, is_target) > 0.89 and auc(score, is_target) > 0.65
    summed, _ = run_stage(tmp_path, ref, write_arrow(tmp_path / "c", raw, 2), normalize="none")
    grams = np.array([len(HashedNgrams("fast", 10_000, 2).buckets(r["text"])) for r in raw])
    assert np.allclose(llr * grams, summed.column("dsir_llr").to_numpy())
    assert np.array_equal(summed.column("dsir_score"), one.column("dsir_score"))


def auc(score, positive):
    """Brute force over all (positive, negative) pairs, ties counting one half."""
    pairs = score[positive][:, None] - score[~positive][None, :]
    return (pairs > 0).mean() + 0.5 * (pairs == 0).mean()


def test_gumbel_keys_are_seeded_per_id_and_standard_gumbel():
    ids = pa.array([f"doc-{i}" for i in range(20_000)])
    g = gumbel(ids, seed=3)
    assert np.array_equal(g[5:10], gumbel(ids[5:10], seed=3))
    assert not np.array_equal(g, gumbel(ids, seed=4))
    assert abs(g.mean() - np.euler_gamma) < 0.03  # E[Gumbel(0, 1)] = Euler's constant
    assert abs(g.var() - np.pi**2 / 6) < 0.08


def test_fast_mode_bigram_buckets_follow_word_order():
    features = HashedNgrams("fast", 1 << 20, 2)
    ab, ba = features.buckets("alpha beta"), features.buckets("beta alpha")
    assert sorted(ab[:2]) == sorted(ba[:2])  # the same unigrams
    assert ab[2] != ba[2]  # different bigrams
    assert len(features.buckets("Hello, world!")) == 4 + 3  # hello , world !
