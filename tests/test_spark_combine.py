"""The Spark ``combine`` backend: parts and fit file byte-identical to the local stage's."""

import logging

import pytest
from test_spark import arrow_bytes, spec, write_corpus

from winnow.runners.local import run_pipeline

pytestmark = pytest.mark.spark

SCORE = {"id": "q", "use": "score", "params": {"scorers": [{"use": "gopher_quality"}]}}
WEIGHTS = {
    "gopher_mean_word_len": 1.0,  # float
    "gopher_n_words": -0.25,  # int
    "gopher_alpha_words_ratio": 0.5,
    "gopher_quality_pass": 2.0,  # bool
}


def test_combine_matches_local_bytes(tmp_path, spark, caplog):
    """z-scores over float, int and bool columns; then percentiles mixed with z-score and
    none, written in place over the first combine's float64 output."""
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=400, bad_lines=False)
    mixed = {
        "weights": {**WEIGHTS, "quality": 0.1},
        "normalize": "percentile",
        "per_column": {"gopher_n_words": "zscore", "gopher_quality_pass": "none"},
        "output": "quality",
    }
    stages = [
        SCORE,
        {"id": "z", "use": "combine", "params": {"weights": WEIGHTS, "output": "quality"}},
        {"id": "pct", "use": "combine", "params": mixed},
    ]
    local = run_pipeline(spec(tmp_path, "local", stages), workers=1, progress=False)
    with caplog.at_level(logging.WARNING, logger="winnow.spark"):
        ledger = SparkRunner(spec(tmp_path, "spark", stages), spark).run()
    assert "ran on the driver" not in caplog.text
    assert ledger.to_json() == local.to_json()
    assert arrow_bytes(tmp_path / "spark") == arrow_bytes(tmp_path / "local")
    for fit in ("combine-z.json", "combine-pct.json"):
        assert (tmp_path / "spark" / fit).read_bytes() == (tmp_path / "local" / fit).read_bytes()
    assert len(list((tmp_path / "local" / "stages").glob("*/part-*.arrow"))) > 3  # several parts


def test_output_over_a_non_float_column_is_refused(tmp_path, spark):
    from winnow.errors import WinnowError
    from winnow.spark.executor import SparkRunner

    write_corpus(tmp_path / "in", n_docs=50, bad_lines=False)
    params = {"weights": {"gopher_hash_ratio": 1.0}, "output": "gopher_n_words"}
    stages = [SCORE, {"id": "mix", "use": "combine", "params": params}]
    with pytest.raises(WinnowError, match="must be a new column or a float64 one"):
        SparkRunner(spec(tmp_path, "spark", stages), spark).run()
