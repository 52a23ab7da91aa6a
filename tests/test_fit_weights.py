"""Learned score weights: the regression recovers known weights from synthetic
ablations, and ``winnow fit-weights`` runs selections, proxies and the fit end to end."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from scipy.stats import spearmanr

from winnow.errors import ConfigError
from winnow.scorers.combine import combine, fit, load_weights
from winnow.trainer.fit_weights import (
    directions,
    fit_linear,
    fit_report,
    run_fit_weights,
    weights_from_coef,
)

torch.set_num_threads(1)

COLUMNS = ["stop_words", "alpha_ratio", "dup_lines"]
TRUE_W = np.array([0.5, 0.3, -0.2])  # the direction that lowers the metric, sum |w| = 1


def synthetic_ablation(n_sel=24, noise=0.002, seed=0):
    """A corpus of correlated z-scores; each selection is the top 30% along a
    direction; its metric falls linearly along TRUE_W (plus noise)."""
    rng = np.random.default_rng(seed)
    mix = np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    z = rng.standard_normal((4000, 3)) @ mix
    z = (z - z.mean(0)) / z.std(0)
    means = []
    for u in directions(3, n_sel, seed=1):
        score = z @ u
        top = np.argsort(-score)[: int(0.3 * len(z))]
        means.append(z[top].mean(0))
    x = np.asarray(means)
    y = 1.5 - x @ TRUE_W + noise * rng.standard_normal(n_sel)
    return z, x, y


def test_directions_are_axes_then_seeded_unit_vectors():
    d = directions(3, 7, seed=5)
    assert np.array_equal(d[:3], np.eye(3))
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0)
    assert np.array_equal(d, directions(3, 7, seed=5)) and not np.array_equal(
        d[3:], directions(3, 7, seed=6)[3:]
    )


def test_fit_linear_matches_least_squares():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 4))
    x[:, 3] = 2.0  # a constant column gets no weight
    y = 0.7 + x[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.standard_normal(30)
    a, b = fit_linear(x, y, ridge=0.0)
    design = np.column_stack([np.ones(30), x[:, :3]])
    ref = np.linalg.lstsq(design, y, rcond=None)[0]
    assert a == pytest.approx(ref[0], abs=1e-9)
    assert b[:3] == pytest.approx(ref[1:], abs=1e-9) and b[3] == 0.0


def test_fit_recovers_true_weights_and_ranks_heldout_selections():
    z, x, y = synthetic_ablation()
    result = fit_report(x, y, COLUMNS, heldout=8, ridge=1e-6, lower=True)
    w = np.array([result["weights"][c] for c in COLUMNS])
    assert np.abs(w).sum() == pytest.approx(1.0)
    assert w == pytest.approx(TRUE_W, abs=0.03)
    fit_ = result["fit"]
    assert fit_["n_fit"] == 16 and fit_["n_heldout"] == 8
    measured, predicted = fit_["heldout_measured"], fit_["heldout_predicted"]
    assert fit_["heldout_spearman"] == pytest.approx(spearmanr(predicted, measured)[0])
    assert fit_["heldout_spearman"] > 0.9
    # a higher-is-better metric (e.g. accuracy) gives the same direction from -y
    flipped = fit_report(x, -y, COLUMNS, heldout=8, ridge=1e-6, lower=False)["weights"]
    assert [flipped[c] for c in COLUMNS] == pytest.approx(list(w))


def test_fitted_weights_drive_combine(tmp_path):
    """The weights file loads in ``combine``, and its combined score orders the corpus
    as the true direction does."""
    z, x, y = synthetic_ablation()
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(fit_report(x, y, COLUMNS, 8, 1e-6, True)))
    weights = load_weights(str(path))
    cols = {c: z[:, i] * 3 + 10 for i, c in enumerate(COLUMNS)}  # raw units: combine z-scores
    score = combine(cols, {c: fit(v, "zscore") for c, v in cols.items()}, weights)
    assert spearmanr(score, z @ TRUE_W)[0] > 0.99


def test_noise_lowers_heldout_spearman():
    clean = fit_report(*synthetic_ablation(noise=0.0)[1:], COLUMNS, 8, 1e-6, True)
    noisy = fit_report(*synthetic_ablation(noise=0.5)[1:], COLUMNS, 8, 1e-6, True)
    assert clean["fit"]["heldout_spearman"] > noisy["fit"]["heldout_spearman"]


def test_weights_from_coef_signs():
    assert weights_from_coef(np.array([2.0, -2.0]), ["a", "b"], True) == {"a": -0.5, "b": 0.5}
    assert weights_from_coef(np.array([2.0, -2.0]), ["a", "b"], False) == {"a": 0.5, "b": -0.5}


@pytest.fixture(scope="module")
def scored_corpus(tmp_path_factory):
    """A scored, tokenized corpus (real docstrings plus junk) as Arrow parts, and the
    bucket directory of its clean part, through the real pipeline stages."""
    from trainer_fixtures import junk_docs, real_docs

    from winnow.io.writers import write_table
    from winnow.pipeline import parse_pipeline
    from winnow.runners.local import run_pipeline
    from winnow.tokenizer import train_tokenizer

    root = tmp_path_factory.mktemp("fitw")
    docs = [dict(d) for d in real_docs()] + junk_docs(120)
    write_table(root / "in.arrow", pa.Table.from_pylist(docs))
    tokenizer = train_tokenizer([root / "in.arrow"], root / "tok.json", 300)
    spec = parse_pipeline(
        {
            "name": "scored",
            "input": {"path": str(root / "in.arrow"), "id_field": "id"},
            "output": {"dir": str(root / "run")},
            "stages": [
                {
                    "id": "quality",
                    "use": "score",
                    "params": {"scorers": [{"use": "gopher_quality"}]},
                },
                {
                    "id": "tok",
                    "use": "tokenize",
                    "params": {"tokenizer": str(tokenizer)},
                    "materialize": True,
                },
                {
                    "id": "clean",
                    "use": "filter",
                    "params": {"keep": "source <> 'junk'", "reason": "junk"},
                },
                {"id": "buckets", "use": "decompose", "params": {"min_log2": 5, "max_log2": 7}},
            ],
        }
    )
    run_pipeline(spec, workers=1, progress=False)
    return root


@pytest.mark.slow
def test_fit_weights_end_to_end(scored_corpus, tmp_path):
    cfg = {
        "out": str(tmp_path / "fit"),
        "data": str(scored_corpus / "run" / "stages" / "tok"),
        "columns": ["gopher_stop_words", "gopher_alpha_words_ratio"],
        "eval_on": str(scored_corpus / "run" / "buckets"),
        "selections": 5,
        "heldout": 2,
        "token_fraction": 0.5,
        "decompose": {"min_log2": 5, "max_log2": 7},
        "base": {
            "data": {"val_fraction": 0.1},
            "train": {"steps": 6, "tokens_per_step": 1024, "threads": 1},
            "eval": {"max_docs_per_source": 3},
        },
    }
    result = run_fit_weights(cfg, log=lambda m: None)
    saved = json.loads((tmp_path / "fit" / "weights.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert set(load_weights(str(tmp_path / "fit" / "weights.json"))) == set(cfg["columns"])
    sels = saved["fit"]["selections"]
    assert len(sels) == 5 and saved["fit"]["n_fit"] == 3
    # the first selections are the single columns: each is highest on its own column
    assert sels[0]["mean_z"][0] > 0 and sels[1]["mean_z"][1] > 0
    # every selection holds about half of the corpus's tokens (select's token budget)
    manifests = [
        json.loads((tmp_path / "fit" / "run" / f"sel{j}" / "manifest.json").read_text())
        for j in range(5)
    ]
    tokens = [m["input_tokens"] for m in manifests]
    assert max(tokens) / min(tokens) < 1.2
    with pytest.raises(ConfigError, match="heldout: leave at least 2"):
        run_fit_weights({**cfg, "heldout": 4})
    with pytest.raises(ConfigError, match=r"base: optim\.lrr"):
        run_fit_weights({**cfg, "base": {"optim": {"lrr": 1}}})
