"""Ablations: t-intervals, paired differences, ranking, plots and reuse of finished runs."""

import argparse
import json

import numpy as np
import pytest
import torch
from trainer_fixtures import junk_docs, real_docs, write_bucket_dir

from winnow.errors import ConfigError
from winnow.trainer.ablate import add_ablate_args, cli_ablate, run_ablation, t_interval
from winnow.trainer.config import parse_ablation_config

torch.set_num_threads(1)


def test_t_interval_against_table_values():
    mean, half = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-6)
    mean, half = t_interval([5.0, 7.0])
    assert mean == 6.0 and half == pytest.approx(12.706205 * np.sqrt(2) / np.sqrt(2), rel=1e-6)
    assert t_interval([4.0]) == (4.0, None)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("abl")
    docs = list(real_docs())
    curated = write_bucket_dir(root / "curated", docs, (32, 64, 128))
    raw = write_bucket_dir(root / "raw", docs + junk_docs(400), (32, 64, 128))
    return {"curated": str(curated), "raw": str(raw)}


def ablation(variants, out, **extra):
    cfg = {
        "name": "t",
        "out": str(out),
        "variants": {"raw": variants["raw"], "curated": variants["curated"]},
        "seeds": [0, 1],
        "eval_on": ["curated", "raw"],
        "base": {
            "data": {"val_fraction": 0.1},
            "train": {"steps": 24, "tokens_per_step": 1024, "threads": 1},
            "optim": {"warmup_steps": 3, "lr": 1e-2},
            "eval": {"max_docs_per_source": 3},
        },
    }
    cfg.update(extra)
    return cfg


def test_ablation_reports_intervals_ranking_and_plots(variants, tmp_path):
    logs = []
    res = run_ablation(ablation(variants, tmp_path / "abl"), log=logs.append)
    assert sum("training" in m for m in logs) == 4
    assert res["primary"] == "loss@curated" and res["baseline"] == "raw"
    assert sorted(res["ranking"]) == ["curated", "raw"]
    by_run = {(r["variant"], r["seed"]): r["metrics"] for r in res["runs"]}
    for v in ("raw", "curated"):
        entry = res["variants"][v]["loss@curated"]
        values = [by_run[(v, s)]["loss@curated"] for s in (0, 1)]
        assert entry["values"] == values
        assert entry["mean"], entry["ci95"] == t_interval(values)
        assert "loss@raw/junk" in res["variants"][v] and "bpb@curated" in res["variants"][v]
    diffs = [
        by_run[("curated", s)]["loss@curated"] - by_run[("raw", s)]["loss@curated"] for s in (0, 1)
    ]
    cur = res["variants"]["curated"]["loss@curated"]
    assert (cur["delta"], cur["delta_ci95"]) == pytest.approx(t_interval(diffs))
    means = {v: res["variants"][v]["loss@curated"]["mean"] for v in ("raw", "curated")}
    assert res["ranking"] == sorted(means, key=means.get)
    # raw is about half junk tokens: with the same token budget the curated model is
    # better on held-out curated text for every seed, and worse on held-out junk
    assert res["ranking"][0] == "curated" and max(diffs) < 0
    assert (
        res["variants"]["raw"]["loss@raw/junk"]["mean"]
        < res["variants"]["curated"]["loss@raw/junk"]["mean"]
    )
    out = tmp_path / "abl"
    for name in ("loss_curves.png", "metrics.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    assert "| curated |" in md and "±" in md and "(baseline)" in md
    assert json.loads((out / "results.json").read_text())["ranking"] == res["ranking"]
    # a rerun reuses every finished run
    logs.clear()
    again = run_ablation(ablation(variants, out), log=logs.append)
    assert all("reusing" in m for m in logs) and again["variants"] == res["variants"]


def test_ablation_cli_and_config_errors(variants, tmp_path, capsys):
    import yaml

    path = tmp_path / "abl.yaml"
    cfg = ablation(variants, tmp_path / "ignored", seeds=[0], eval_on=None)
    cfg["variants"]["curated_concat"] = {"path": variants["curated"], "mode": "concat"}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    parser = argparse.ArgumentParser()
    add_ablate_args(parser)
    args = parser.parse_args(
        [str(path), "--set", "base.train.steps=4", "--out", str(tmp_path / "cli")]
    )
    assert cli_ablate(args) == 0
    printed = capsys.readouterr().out
    assert "ranking by loss@raw" in printed and "curated_concat" in printed
    res = json.loads((tmp_path / "cli" / "results.json").read_text())
    # eval sets default to distinct dataset paths; concat mode reads the same tokens
    assert (
        "loss@curated" in res["variants"]["raw"]
        and "loss@curated_concat" not in res["variants"]["raw"]
    )
    logs = (tmp_path / "cli" / "runs" / "curated_concat" / "seed0" / "log.jsonl").read_text()
    assert {json.loads(ln)["bucket"] for ln in logs.splitlines()} == {128}
    with pytest.raises(ConfigError, match="eval_on: unknown variant 'nope'"):
        parse_ablation_config(ablation(variants, tmp_path / "x", eval_on=["nope"]))
    with pytest.raises(ConfigError, match=r"base: optim\.lrr: unknown key"):
        parse_ablation_config(ablation(variants, tmp_path / "x", base={"optim": {"lrr": 1}}))


@pytest.mark.slow
def test_scales_report_rank_agreement(variants, tmp_path):
    """Two scales of the same variants: each scale is a full ablation under
    ``out/scales/<name>``; the rank agreement matches Spearman of their means."""
    from scipy.stats import spearmanr

    cfg = ablation(variants, tmp_path / "sc", eval_on=["curated"])
    cfg["variants"]["curated_concat"] = {"path": variants["curated"], "mode": "concat"}
    cfg["base"]["train"]["steps"] = 8
    cfg["scales"] = [
        {"name": "small", "set": {"model.n_embd": 32, "model.n_head": 2}},
        {"name": "large", "set": {}, "seeds": [0, 1, 2]},
    ]
    logs = []
    res = run_ablation(cfg, log=logs.append)
    assert sum("training" in m for m in logs) == 3 * 2 + 3 * 3
    small = json.loads((tmp_path / "sc" / "scales" / "small" / "results.json").read_text())
    large = json.loads((tmp_path / "sc" / "scales" / "large" / "results.json").read_text())
    assert small["seeds"] == [0, 1] and large["seeds"] == [0, 1, 2]
    names = sorted(cfg["variants"])
    rows = {r["metric"]: r for r in res["agreement"]}
    for metric in ("loss@curated", "train_loss"):
        a = [small["variants"][v][metric]["mean"] for v in names]
        b = [large["variants"][v]["loss@curated"]["mean"] for v in names]
        row = rows[metric]["vs_primary"]
        assert row["rho"] == pytest.approx(spearmanr(a, b)[0])
        lo, hi = row["rho_ci"]
        assert -1 <= lo <= hi <= 1 and 0 <= row["winner_agreement"] <= 1
    assert "tokens_per_s" not in rows and res["best_predictor"] in rows
    best = res["agreement"][0]["vs_primary"]["rho"]
    assert not any(r["vs_primary"]["rho"] > best for r in res["agreement"])
    md = (tmp_path / "sc" / "results.md").read_text()
    assert "## Does `small` predict `large`?" in md and "| loss@curated |" in md
    # a rerun reuses every run of both scales
    logs.clear()
    run_ablation(cfg, log=logs.append)
    assert logs and all("reusing" in m for m in logs)
    with pytest.raises(ConfigError, match=r"scales\.0\.set: model\.n_embdd: unknown key"):
        parse_ablation_config({**cfg, "scales": [{"name": "a", "set": {"model.n_embdd": 3}}] * 2})
    with pytest.raises(ConfigError, match="scales: names must be unique"):
        parse_ablation_config({**cfg, "scales": [{"name": "a"}, {"name": "a"}]})


def test_eval_sets_are_scored_whole_and_never_trained(variants, tmp_path):
    """An ``eval_sets`` directory is scored on every document it holds (the count of
    documents equals its own listing) by every run, and is not a training variant."""
    from winnow.trainer.data import BucketDataset

    held = tmp_path / "held"
    write_bucket_dir(held, list(real_docs())[:12], (32, 64, 128))
    n_docs = len({k for t in BucketDataset(held, 0.0).tables.values() for k in t.doc_key})
    cfg = ablation(variants, tmp_path / "es", seeds=[0], eval_on=["curated", "held"])
    cfg["eval_sets"] = {"held": str(held)}
    cfg["base"]["train"]["steps"] = 4
    cfg["base"]["eval"]["max_docs_per_source"] = None
    logs = []
    res = run_ablation(cfg, log=logs.append)
    assert sum("training" in m for m in logs) == 2  # raw and curated only
    for r in res["runs"]:
        record = json.loads(
            (tmp_path / "es" / "runs" / r["variant"] / "seed0" / "ablation_eval.json").read_text()
        )
        assert record["cross"]["held"]["heldout"]["all"]["docs"] == n_docs
        assert "loss@held" in r["metrics"]
    with pytest.raises(ConfigError, match="eval_sets: 'raw' is also a variant"):
        parse_ablation_config(
            {**ablation(variants, tmp_path / "x"), "eval_sets": {"raw": str(held)}}
        )
