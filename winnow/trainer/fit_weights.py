"""Learn ``combine`` score weights from proxy ablations: ``winnow fit-weights FIT.yaml``.

The Meta-rater / DataMan / PreSelect recipe at proxy scale:

1. Each score column is z-scored over the corpus (the normalisation ``combine``
   applies), so a selection's mean score vector is comparable across columns.
2. ``selections`` subsets, each the top ``token_fraction`` of the corpus's tokens by
   ``u . z`` for a direction ``u``: every column alone first (``u = e_i``), then
   seeded random unit directions. Each is a real pipeline branch (``select`` then
   ``decompose``), so every selection has the same token budget.
3. One proxy model per selection and seed (``winnow ablate``: same config, same
   held-out documents of ``eval_on``), scored by ``metric``.
4. A ridge regression of the metric on the selections' mean z-score vectors,
   fitted on all but the last ``heldout`` selections; the Spearman correlation of
   predicted and measured metric on those held-out selections says whether the fit
   generalises (Meta-rater reports ~0.7 and above).
5. The weights are the regression's direction of improvement (``-coef`` for a
   lower-is-better metric), scaled to ``sum |w| = 1``, written to
   ``out/weights.json`` as ``{"weights": {...}, "fit": {...}}`` (``combine``'s format).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from winnow.errors import ConfigError
from winnow.files import atomic_write
from winnow.scorers.combine import fit as fit_normalizer
from winnow.trainer.config import (
    Strict,
    TrainConfig,
    add_config_args,
    apply_overrides,
    cli_overrides,
    read_yaml,
    validate_model,
)
from winnow.trainer.rank_stats import spearman


class FitWeightsConfig(Strict):
    """Selections of a scored, tokenized corpus, a proxy per selection, a regression."""

    name: str = "fit-weights"
    out: str
    # a folder of Arrow parts (a run's scored, tokenized pass: RUN/stages/<id>) or a
    # glob of Arrow/Parquet files, with id, text, tokens, n_tokens and the score columns
    data: str
    columns: list[str] = Field(min_length=1)  # score columns to weight
    eval_on: str  # a bucket dir (same tokenizer) whose held-out documents score every proxy
    selections: int = Field(default=12, gt=1)
    heldout: int = Field(default=4, ge=0)  # last selections kept out of the fit
    token_fraction: float = Field(default=0.3, gt=0, le=1)
    metric: str = "bpb@eval"
    ridge: float = Field(default=1e-3, ge=0)  # L2 penalty on standardised features
    seed: int = 0  # random directions
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)  # proxy seeds
    decompose: dict[str, Any] = Field(default_factory=lambda: {"min_log2": 5, "max_log2": 10})
    base: dict[str, Any] = Field(default_factory=dict)  # train config, less out/data.path


# --------------------------------------------------------------------------- the maths


def directions(k: int, n: int, seed: int) -> np.ndarray:
    """(n, k) unit directions: the k axes first, then seeded Gaussian directions."""
    rng = np.random.default_rng(seed)
    out = [np.eye(k)[i] for i in range(min(k, n))]
    while len(out) < n:
        u = rng.standard_normal(k)
        out.append(u / np.linalg.norm(u))
    return np.asarray(out)


def fit_linear(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> tuple[float, np.ndarray]:
    """Ridge regression ``y ~ a + x @ b`` on standardised columns of ``x``; returns
    ``(a, b)`` in the original units (a constant column gets coefficient 0)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mu, sd = x.mean(0), x.std(0)
    sd_safe = np.where(sd > 0, sd, 1.0)
    xs = (x - mu) / sd_safe
    xs[:, sd == 0] = 0.0
    yc = y - y.mean()
    gram = xs.T @ xs + ridge * len(y) * np.eye(x.shape[1])
    b_std = np.linalg.lstsq(gram, xs.T @ yc, rcond=None)[0]
    b = np.where(sd > 0, b_std / sd_safe, 0.0)
    return float(y.mean() - mu @ b), b


def weights_from_coef(coef: np.ndarray, columns: list[str], lower_is_better: bool) -> dict:
    """``combine`` weights: the direction that improves the metric, ``sum |w| = 1``."""
    w = -coef if lower_is_better else coef
    total = np.abs(w).sum()
    w = w / total if total > 0 else w
    return {c: float(v) for c, v in zip(columns, w, strict=True)}


def fit_report(
    x: np.ndarray, y: np.ndarray, columns: list[str], heldout: int, ridge: float, lower: bool
) -> dict:
    """Fit on all but the last ``heldout`` rows, check on those (Spearman of predicted
    vs measured), then refit on every row for the weights written out."""
    n_fit = len(y) - heldout
    a, b = fit_linear(x[:n_fit], y[:n_fit], ridge)
    pred = a + x @ b
    report = {
        "n_fit": n_fit,
        "n_heldout": heldout,
        "train_spearman": spearman(pred[:n_fit], y[:n_fit]),
        "heldout_spearman": spearman(pred[n_fit:], y[n_fit:]) if heldout >= 2 else math.nan,
        "heldout_predicted": pred[n_fit:].tolist(),
        "heldout_measured": y[n_fit:].tolist(),
    }
    a, b = fit_linear(x, y, ridge)
    report.update(intercept=a, coef=dict(zip(columns, b.tolist(), strict=True)))
    return {"weights": weights_from_coef(b, columns, lower), "fit": report}


# --------------------------------------------------------------------------- the runs


def _input(data: str) -> dict:
    path = str(Path(data) / "part-*.arrow") if Path(data).is_dir() else data
    fmt = "parquet" if path.endswith(".parquet") else "arrow"
    return {"path": path, "format": fmt, "text_field": "text", "id_field": "id"}


def _score_matrix(data: str, columns: list[str]) -> tuple[pa.Table, np.ndarray, list]:
    """The corpus, its (rows, columns) z-scores (null = 0) and each column's
    (mean, std)."""
    from winnow.config import InputSpec
    from winnow.io.discovery import plan_chunks
    from winnow.io.readers import read_chunk

    spec = InputSpec(**_input(data))
    parts = [read_chunk(c, spec).table for c in plan_chunks(spec, 1 << 20)]
    if not parts:
        raise ConfigError(f"fit-weights: data: no rows in {data}")
    table = pa.concat_tables(parts, promote_options="default")
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ConfigError(f"fit-weights: columns: {missing} not in {data}")
    z, norms = [], []
    for c in columns:
        values = np.asarray(table.column(c).to_numpy(zero_copy_only=False), np.float64)
        norm = fit_normalizer(values, "zscore")
        z.append(np.nan_to_num(norm.transform(values), nan=0.0))
        norms.append((norm.mean, norm.std))
    return table, np.stack(z, 1), norms


def _sql_direction(u: np.ndarray, columns: list[str], norms: list[tuple[float, float]]) -> str:
    """``u . z`` as DuckDB SQL (a null score counts as the mean, z = 0)."""
    terms = [
        f'({float(w)!r}) * ((coalesce(CAST("{c}" AS DOUBLE), {m!r}) - {m!r}) / {s!r})'
        for w, c, (m, s) in zip(u, columns, norms, strict=True)
        if w != 0 and s > 0
    ]
    return " + ".join(terms) or "0"


def selection_pipeline(cfg: FitWeightsConfig, dirs: np.ndarray, norms, meta: dict) -> dict:
    """One pipeline: the scored input, then per selection a ``select`` by its direction
    and a ``decompose`` into ``sel<j>/`` buckets."""
    params = {**cfg.decompose, **{k: meta[k] for k in ("vocab_size", "eos_id") if meta.get(k)}}
    stages: list[dict] = [
        {"id": "scored", "use": "filter", "params": {"keep": "n_tokens > 0", "reason": "empty"}}
    ]
    for j, u in enumerate(dirs):
        stages.append(
            {
                "id": f"select_{j}",
                "use": "select",
                "after": ["scored"],
                "params": {
                    "by": _sql_direction(u, cfg.columns, norms),
                    "token_fraction": cfg.token_fraction,
                },
            }
        )
        stages.append(
            {"id": f"buckets_{j}", "use": "decompose", "params": {**params, "dir": f"sel{j}"}}
        )
    return {
        "name": f"{cfg.name}-selections",
        "seed": cfg.seed,
        "input": _input(cfg.data),
        "output": {"dir": str(Path(cfg.out) / "run"), "format": "arrow"},
        "stages": stages,
    }


def _selected_ids(run_dir: Path, j: int) -> set[str]:
    from winnow.io.writers import read_table

    paths = sorted((run_dir / "stages" / f"select_{j}").glob("part-*.arrow"))
    return {i for p in paths for i in read_table(p).column("id").to_pylist()}


def run_fit_weights(config, overrides=None, log: Callable[[str], None] = print) -> dict:
    """Selections, proxies, regression; writes ``out/weights.json`` and returns it."""
    from winnow.pipeline import parse_pipeline
    from winnow.runners.local import run_pipeline
    from winnow.trainer.ablate import higher_is_better, run_ablation

    data = read_yaml(config) if isinstance(config, str | Path) else copy.deepcopy(config)
    where = str(config) if isinstance(config, str | Path) else "<fit-weights config>"
    cfg = validate_model(FitWeightsConfig, apply_overrides(data, overrides), where)
    if cfg.heldout > cfg.selections - 2:
        raise ConfigError(f"{where}: heldout: leave at least 2 selections to fit")
    probe = apply_overrides(copy.deepcopy(cfg.base), {"out": "-", "data.path": "-"})
    validate_model(TrainConfig, probe, f"{where}: base")
    out = Path(cfg.out)
    table, z, norms = _score_matrix(cfg.data, cfg.columns)
    meta = json.loads((Path(cfg.eval_on) / "manifest.json").read_text())
    dirs = directions(len(cfg.columns), cfg.selections, cfg.seed)
    spec = parse_pipeline(selection_pipeline(cfg, dirs, norms, meta), f"{cfg.name} selections")
    log(f"writing {cfg.selections} selections of {cfg.token_fraction:.0%} of the tokens")
    run_pipeline(spec, workers=None, progress=False)
    ids = table.column("id").to_pylist()
    row = {i: r for r, i in enumerate(ids)}
    means = []
    for j in range(cfg.selections):
        rows = [row[i] for i in _selected_ids(out / "run", j)]
        means.append(z[rows].mean(0))
    base = copy.deepcopy(cfg.base)
    if meta.get("tokenizer"):
        base = apply_overrides(base, {"eval.token_bytes": meta["tokenizer"]})
    variants = {
        "eval": cfg.eval_on,
        **{f"sel{j}": str(out / "run" / f"sel{j}") for j in range(cfg.selections)},
    }
    res = run_ablation(
        {
            "name": cfg.name,
            "out": str(out / "ablation"),
            "variants": variants,
            "seeds": cfg.seeds,
            "eval_on": ["eval"],
            "primary": cfg.metric,
            "base": base,
        },
        log=log,
    )
    y = np.asarray([res["variants"][f"sel{j}"][cfg.metric]["mean"] for j in range(cfg.selections)])
    x = np.asarray(means)
    result = fit_report(x, y, cfg.columns, cfg.heldout, cfg.ridge, not higher_is_better(cfg.metric))
    result["fit"].update(
        metric=cfg.metric,
        selections=[
            {
                "direction": dict(zip(cfg.columns, d.tolist(), strict=True)),
                "mean_z": m.tolist(),
                "metric": v,
            }
            for d, m, v in zip(dirs, x, y.tolist(), strict=True)
        ],
    )
    atomic_write(out / "weights.json", json.dumps(result, indent=2).encode())
    return result


def add_fit_weights_args(parser) -> None:
    add_config_args(parser, "fit-weights", "base.train.steps=50")


def cli_fit_weights(args) -> int:
    result = run_fit_weights(args.config, cli_overrides(args))
    fit = result["fit"]
    for c, w in result["weights"].items():
        print(f"{c}: {w:+.4f}")
    print(
        f"{fit['metric']}: Spearman on {fit['n_heldout']} held-out selections "
        f"{fit['heldout_spearman']:+.3f} (on the {fit['n_fit']} fitted: "
        f"{fit['train_spearman']:+.3f})"
    )
    return 0
