"""``combine``: corpus-wide z-score / percentile normalisation and weighted sums,
checked against scipy.stats."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from winnow.errors import ConfigError
from winnow.pipeline import parse_pipeline
from winnow.stages.base import Materialized
from winnow.stages.combine import Combine


def corpus(n: int = 500, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    a = rng.normal(3.0, 2.0, n)
    b = rng.integers(0, 5, n).astype(float)  # many ties
    b_null = b.copy()
    b_null[::17] = np.nan
    return pa.table(
        {
            "id": [f"d{i:04d}" for i in range(n)],
            "text": ["x"] * n,
            "a": a,
            "b": pa.array(b_null, pa.float64(), from_pandas=True),  # NaN -> null
            "flag": rng.random(n) < 0.3,
        }
    )


def materialize(table: pa.Table, tmp_path, parts: int) -> Materialized:
    files = []
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        path = tmp_path / f"part-{parts}-{i}.arrow"
        with pa.ipc.new_file(path, table.schema) as writer:
            writer.write_table(table.slice(lo, hi - lo))
        files.append(path)
    return Materialized(files, table.schema)


def run(tmp_path, table, parts=3, **params) -> pa.Table:
    stage = Combine(Combine.Params(**params), stage_id="c", seed=0, run_dir=tmp_path)
    outputs = list(stage.run(materialize(table, tmp_path, parts), tmp_path))
    return pa.concat_tables([o.kept for o in outputs])


def test_zscore_weighted_sum_matches_scipy(tmp_path):
    table = corpus()
    out = run(tmp_path, table, weights={"a": 2.0, "b": -0.5, "flag": 1.0}, output="q")
    a = table.column("a").to_numpy()
    b = table.column("b").to_numpy(zero_copy_only=False)
    flag = table.column("flag").to_numpy(zero_copy_only=False).astype(float)
    zb = np.where(np.isnan(b), 0.0, (b - np.nanmean(b)) / np.nanstd(b))
    expected = 2.0 * stats.zscore(a) - 0.5 * zb + stats.zscore(flag)
    np.testing.assert_allclose(out.column("q").to_numpy(), expected, rtol=1e-12, atol=1e-12)
    assert out.column("id").to_pylist() == table.column("id").to_pylist()
    assert out.column_names == table.column_names + ["q"]
    summary = json.loads((tmp_path / "combine-c.json").read_text())
    assert summary["normalizers"]["a"]["mean"] == pytest.approx(a.mean())


def test_percentile_matches_scipy_and_ignores_sharding(tmp_path):
    table = corpus(300, seed=1)
    one = run(tmp_path, table, parts=1, normalize="percentile", weights={"b": 1.0})
    many = run(tmp_path, table, parts=4, normalize="percentile", weights={"b": 1.0})
    assert one.column("quality_score").equals(many.column("quality_score"))
    b = table.column("b").to_numpy(zero_copy_only=False)
    finite = b[~np.isnan(b)]
    expected = [
        0.0 if np.isnan(x) else stats.percentileofscore(finite, x, kind="mean") / 100 for x in b
    ]
    np.testing.assert_allclose(one.column("quality_score").to_numpy(), expected, atol=1e-12)


def test_per_column_methods_and_weights_file(tmp_path):
    table = corpus(200, seed=2)
    weights = tmp_path / "learned.json"
    weights.write_text(json.dumps({"weights": {"a": 1.0, "b": 3.0}, "fitted_on": "ablation-7"}))
    out = run(tmp_path, table, weights=str(weights), per_column={"b": "none"}, output="meta_rater")
    a = table.column("a").to_numpy()
    b = np.nan_to_num(table.column("b").to_numpy(zero_copy_only=False), nan=0.0)
    np.testing.assert_allclose(out.column("meta_rater").to_numpy(), stats.zscore(a) + 3.0 * b)


def test_constant_and_missing_columns(tmp_path):
    table = corpus(50).append_column("const", pa.array([7.0] * 50))
    out = run(tmp_path, table, weights={"const": 1.0})
    assert out.column("quality_score").to_pylist() == [0.0] * 50
    with pytest.raises(ConfigError, match="not found: nope"):
        run(tmp_path, table, weights={"nope": 1.0})


def test_params_validated_up_front(tmp_path):
    def pipeline(params):
        return {
            "name": "t",
            "input": {"path": "x"},
            "output": {"dir": "y"},
            "stages": [{"id": "c", "use": "combine", "params": params}],
        }

    with pytest.raises(ConfigError, match="normalize"):
        parse_pipeline(pipeline({"weights": {"a": 1}, "normalize": "minmax"}))
    with pytest.raises(ConfigError, match="not found"):
        parse_pipeline(pipeline({"weights": str(tmp_path / "missing.json")}))
    with pytest.raises(ConfigError, match="at least one"):
        parse_pipeline(pipeline({"weights": {}}))
    parse_pipeline(pipeline({"weights": {"dclm_score": 1.0, "fineweb_edu": 0.5}}))
