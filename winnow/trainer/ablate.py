"""Proxy-model ablations: ``winnow ablate ABLATION.yaml``.

Trains the same config on several dataset variants (bucket directories, each in
bucket or concat mode) x seeds, scores every run on the held-out documents of the
``eval_on`` variants (the hash split holds out the same doc ids everywhere, so no
run trains on another variant's held-out documents), on every document of the
``eval_sets`` directories (trained by no run) and on the configured tasks,
and reports per metric the mean over seeds with a 95% t-interval, the difference
to the baseline variant paired by seed (same seed = same init and data order seed)
with its interval, and the ranking by the primary metric. Writes ``results.json``,
``results.md`` and PNG plots under ``out``; finished runs are reused on a rerun.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from winnow.files import atomic_write
from winnow.trainer.checkpoint import config_hash
from winnow.trainer.config import (
    AblationConfig,
    add_config_args,
    apply_overrides,
    cli_overrides,
    load_ablation_config,
    parse_ablation_config,
    parse_train_config,
)
from winnow.trainer.data import BucketDataset, fingerprint
from winnow.trainer.eval import evaluate
from winnow.trainer.rank_stats import rank_agreement
from winnow.trainer.train import Trainer

HIGHER_IS_BETTER = ("acc", "gold_")


def t_interval(values) -> tuple[float, float | None]:
    """Mean and half-width of its two-sided 95% Student-t interval (None for n < 2)."""
    from scipy.stats import t

    x = np.asarray(values, np.float64)
    if len(x) < 2:
        return float(x.mean()) if len(x) else math.nan, None
    half = t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


def higher_is_better(metric: str) -> bool:
    return metric.startswith(HIGHER_IS_BETTER)


def run_metrics(results: dict, cross: dict[str, dict]) -> dict[str, float]:
    """Flat metrics of one run: ``loss@SET``, ``bpb@SET``, ``loss@SET/SOURCE``,
    ``bpb@SET/SOURCE``, ``late_loss@SET`` (predictions with long context), task
    ``acc@TASK`` / ``acc_norm@TASK`` / ``gold_lpb@TASK`` / ``gold_prob@TASK``,
    ``train_loss``, ``tokens_per_s`` and ``train_seconds`` (steady-state step time
    times steps, evaluation excluded)."""
    m = {"train_loss": results["final_train_loss"]}
    if results.get("tokens_per_s"):
        m["tokens_per_s"] = results["tokens_per_s"]
        m["train_seconds"] = results["tokens"] / results["tokens_per_s"]
    for name, ev in cross.items():
        held = ev["heldout"]
        m[f"loss@{name}"] = held["all"]["loss"]
        m[f"bpb@{name}"] = held["all"]["bpb"]
        m[f"late_loss@{name}"] = held.get("late", {}).get("loss")
        for source, s in held["by_source"].items():
            m[f"loss@{name}/{source}"] = s["loss"]
            m[f"bpb@{name}/{source}"] = s["bpb"]
    for task, r in results["eval"].get("tasks", {}).items():
        for key in ("acc", "acc_norm", "gold_lpb", "gold_prob"):
            m[f"{key}@{task}"] = r.get(key)
    return {k: v for k, v in m.items() if v is not None}  # no bpb without byte lengths


def _train_config(cfg: AblationConfig, variant: str, seed: int, run_dir: Path):
    v = cfg.variants[variant]
    data = apply_overrides(
        copy.deepcopy(cfg.base), {"out": str(run_dir), "data.path": v.path, "train.seed": seed}
    )
    if v.mode:
        data["data"]["mode"] = v.mode
    return parse_train_config(data, f"ablation variant {variant} seed {seed}")


def _run_one(
    cfg: AblationConfig, variant: str, seed: int, eval_sets: list[str], log: Callable[[str], None]
) -> dict:
    run_dir = Path(cfg.out) / "runs" / variant / f"seed{seed}"
    tc = _train_config(cfg, variant, seed, run_dir)
    done = run_dir / "ablation_eval.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        if (
            cached.get("config_hash") == config_hash(tc)
            and set(cached["cross"]) == set(eval_sets)
            and cached.get("data_hash") == fingerprint(tc.data.path)
        ):
            log(f"{variant} seed {seed}: reusing {run_dir}")
            return cached
    trainer = Trainer(tc)
    log(f"{variant} seed {seed}: training {tc.train.steps} steps on {tc.data.path}")
    results = trainer.run()
    cross = {}
    d = tc.data
    for name in eval_sets:
        if name in cfg.eval_sets:  # never trained on: every document is held out
            ds = BucketDataset(cfg.eval_sets[name], 1.0, 0, d.min_len, d.max_len)
        elif Path(cfg.variants[name].path).resolve() == Path(d.path).resolve():
            cross[name] = results["eval"]
            continue
        else:
            path = cfg.variants[name].path
            ds = BucketDataset(
                path, d.val_fraction, d.min_val_docs_per_source, d.min_len, d.max_len
            )
        eval_cfg = tc.eval.model_copy(update={"tasks": []})
        cross[name] = evaluate(
            trainer.model, ds, eval_cfg, trainer.eval_len, trainer.device, trainer.autocast
        )
    record = {
        "variant": variant,
        "seed": seed,
        "run_dir": str(run_dir),
        "config_hash": trainer.config_hash,
        "data_hash": trainer.data_hash,
        "results": results,
        "cross": cross,
        "metrics": run_metrics(results, cross),
    }
    atomic_write(done, json.dumps(record, indent=2).encode())
    return record


def summarize(runs: list[dict], variants: list[str], baseline: str) -> dict:
    """Per variant and metric: values by seed, mean and 95% interval, and the paired
    difference to the baseline with its interval."""
    by_variant = {v: {r["seed"]: r["metrics"] for r in runs if r["variant"] == v} for v in variants}
    out: dict[str, dict] = {}
    for v, seeds in by_variant.items():
        metrics = sorted({k for m in seeds.values() for k in m})
        out[v] = {}
        for k in metrics:
            values = [seeds[s][k] for s in sorted(seeds) if k in seeds[s]]
            mean, half = t_interval(values)
            entry = {"mean": mean, "ci95": half, "n": len(values), "values": values}
            base = by_variant[baseline]
            paired = [
                seeds[s][k] - base[s][k]
                for s in sorted(seeds)
                if s in base and k in seeds[s] and k in base[s]
            ]
            if v != baseline and paired:
                entry["delta"], entry["delta_ci95"] = t_interval(paired)
            out[v][k] = entry
    return out


def _fmt(mean: float, half: float | None, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "")


def markdown_table(summary: dict, metrics: list[str], baseline: str) -> str:
    head = ["variant"] + [f"{m}" for m in metrics] + [f"Δ {metrics[0]} vs {baseline}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, ms in summary.items():
        cells = [v]
        for m in metrics:
            e = ms.get(m)
            cells.append(_fmt(e["mean"], e["ci95"]) if e else "-")
        e = ms.get(metrics[0], {})
        cells.append(
            _fmt(e["delta"], e.get("delta_ci95"))
            if "delta" in e
            else "(baseline)"
            if v == baseline
            else "-"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict], summary: dict, primary: str, out: Path) -> list[str]:
    """Loss curves (train loss vs tokens, mean over seeds with min-max band, and
    held-out loss points when logged) and a bar chart of the primary metric."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, variant in enumerate(summary):
        color = f"C{i}"
        curves, vals = [], []
        for r in runs:
            if r["variant"] != variant:
                continue
            log = [
                json.loads(ln)
                for ln in (Path(r["run_dir"]) / "log.jsonl").read_text().splitlines()
                if ln.strip()
            ]
            curves.append(np.array([[x["tokens"], x["loss"]] for x in log]))
            vals += [(x["tokens"], x["val_loss"]) for x in log if "val_loss" in x]
        n = min(len(c) for c in curves)
        tokens = curves[0][:n, 0]
        losses = np.stack([c[:n, 1] for c in curves])
        k = max(1, n // 20)
        smooth = np.stack([np.convolve(row, np.ones(k) / k, mode="valid") for row in losses])
        x = tokens[k - 1 :]
        ax.plot(x, smooth.mean(0), color=color, label=f"{variant} (train)")
        ax.fill_between(x, smooth.min(0), smooth.max(0), color=color, alpha=0.2)
        if vals:
            vt = sorted({t for t, _ in vals})
            vm = [np.mean([v for t2, v in vals if t2 == t]) for t in vt]
            ax.plot(vt, vm, "o--", color=color, label=f"{variant} (own held-out)")
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Loss curves (mean over seeds, band = min-max)")
    ax.legend()
    fig.tight_layout()
    paths = [out / "loss_curves.png"]
    fig.savefig(paths[0], dpi=110)

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    names = list(summary)
    means = [summary[v][primary]["mean"] if primary in summary[v] else np.nan for v in names]
    errs = [(summary[v].get(primary, {}).get("ci95") or 0.0) for v in names]
    for i, (m, e) in enumerate(zip(means, errs, strict=True)):
        ax.errorbar([i], [m], yerr=[e], fmt="o", capsize=8, color=f"C{i}", markersize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel(primary)
    ax.set_title(f"{primary}: mean ± 95% t-interval")
    fig.tight_layout()
    paths.append(out / "metrics.png")
    fig.savefig(paths[1], dpi=110)
    return [str(p) for p in paths]


def run_ablation(config, overrides=None, log: Callable[[str], None] = print) -> dict:
    """Run (or finish) an ablation. ``config`` is an AblationConfig, a mapping or a YAML
    path. Returns the results dict also written to ``out/results.json``."""
    if isinstance(config, str | Path):
        cfg = load_ablation_config(config, overrides)
    elif isinstance(config, dict):
        cfg = parse_ablation_config(apply_overrides(copy.deepcopy(config), overrides))
    else:
        cfg = config
    if cfg.scales:
        return run_scales(cfg, log)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = list(cfg.variants)
    baseline = cfg.baseline or variants[0]
    eval_sets = cfg.eval_on or _distinct_paths(cfg) + list(cfg.eval_sets)
    runs = [_run_one(cfg, v, s, eval_sets, log) for v in variants for s in cfg.seeds]
    summary = summarize(runs, variants, baseline)
    primary = cfg.primary or f"loss@{eval_sets[0]}"
    if not any(primary in summary[v] for v in variants):
        known = sorted({k for v in variants for k in summary[v]})
        raise ValueError(f"primary metric {primary!r} not produced; known: {known}")
    sign = -1 if higher_is_better(primary) else 1
    ranking = sorted(
        variants, key=lambda v: sign * summary[v].get(primary, {"mean": math.inf})["mean"]
    )
    shown = [primary] + [m for m in _headline(eval_sets, summary) if m != primary]
    table = markdown_table(summary, shown, baseline)
    results = {
        "name": cfg.name,
        "primary": primary,
        "baseline": baseline,
        "seeds": cfg.seeds,
        "ranking": ranking,
        "variants": summary,
        "table": table,
        "runs": [{k: r[k] for k in ("variant", "seed", "run_dir", "metrics")} for r in runs],
    }
    results["plots"] = plot(runs, summary, primary, out)
    atomic_write(out / "results.json", json.dumps(results, indent=2).encode())
    order = " < ".join(ranking) if sign > 0 else " > ".join(ranking)
    md = (
        f"# Ablation {cfg.name}\n\nSeeds: {cfg.seeds}. Mean ± 95% t-interval over seeds; "
        f"Δ is paired by seed against `{baseline}`.\n\n{table}\n\n"
        f"Ranking by `{primary}` (best first): {', '.join(ranking)} ({order})\n"
    )
    atomic_write(out / "results.md", md.encode())
    return results


def run_scales(cfg: AblationConfig, log: Callable[[str], None] = print) -> dict:
    """Every variant x seed at each scale (under ``out/scales/<name>``), then the rank
    agreement of the first (small) scale with the last (large) one, per small-scale
    metric: against the same metric at the large scale, and against the large
    scale's primary metric (which small-scale metric predicts the decision best)."""
    per: dict[str, dict] = {}
    for s in cfg.scales:
        sub = cfg.model_copy(
            update={
                "out": str(Path(cfg.out) / "scales" / s.name),
                "base": apply_overrides(copy.deepcopy(cfg.base), s.set),
                "seeds": s.seeds or cfg.seeds,
                "scales": None,
            }
        )
        per[s.name] = run_ablation(sub, log=log)
    small, large = per[cfg.scales[0].name], per[cfg.scales[-1].name]
    primary = large["primary"]
    target = _by_seed(large, primary)
    rows = []
    for metric in sorted({k for ms in small["variants"].values() for k in ms}):
        values = _by_seed(small, metric)
        if values is None or target is None or metric in _NOT_QUALITY:
            continue
        flips = {"flip_small": higher_is_better(metric), "flip_large": higher_is_better(primary)}
        row = {"metric": metric, "vs_primary": rank_agreement(values, target, **flips)}
        same = _by_seed(large, metric)
        if same is not None:
            flips["flip_large"] = higher_is_better(metric)
            row["vs_same"] = rank_agreement(values, same, **flips)
        rows.append(row)
    rows.sort(
        key=lambda r: tuple(
            -_finite(x) for x in (r["vs_primary"]["rho"], *r["vs_primary"]["rho_ci"])
        )
    )
    names = [s.name for s in cfg.scales]
    results = {
        "name": cfg.name,
        "primary": primary,
        "scales": {n: {k: per[n][k] for k in ("ranking", "table", "variants")} for n in names},
        "agreement": rows,
        "best_predictor": rows[0]["metric"] if rows else None,
    }
    md = [f"# Ablation {cfg.name} at scales {', '.join(names)}\n"]
    for n in names:
        md += [
            f"## {n}\n",
            per[n]["table"],
            f"\nRanking by `{primary}`: {', '.join(per[n]['ranking'])}\n",
        ]
    md += [
        f"## Does `{names[0]}` predict `{names[-1]}`?\n",
        f"Spearman rho of variant means (95% bootstrap interval over seeds) between each "
        f"`{names[0]}` metric and `{primary}` at `{names[-1]}`, and the same metric at both "
        "scales; winner: share of bootstrap draws where both scales pick the same best variant.\n",
        f"| {names[0]} metric | rho vs {names[-1]} {primary} | winner "
        f"| rho vs itself at {names[-1]} |",
        "|---|---|---|---|",
    ]
    for r in rows:
        a, same = r["vs_primary"], r.get("vs_same")
        md.append(
            f"| {r['metric']} | {_rho(a)} | {a['winner_agreement']:.0%} | "
            f"{_rho(same) if same else '-'} |"
        )
    atomic_write(Path(cfg.out) / "results.json", json.dumps(results, indent=2).encode())
    atomic_write(Path(cfg.out) / "results.md", ("\n".join(md) + "\n").encode())
    results["table"] = "\n".join(md[-len(rows) - 2 :])
    results["ranking"] = per[names[-1]]["ranking"]
    return results


_NOT_QUALITY = ("tokens_per_s", "train_seconds")


def _by_seed(results: dict, metric: str) -> dict[str, list[float]] | None:
    """variant -> the metric's values by seed, or None when a run lacks it."""
    out = {}
    for v, ms in results["variants"].items():
        e = ms.get(metric)
        if e is None or e["n"] != len(results["seeds"]):
            return None
        out[v] = e["values"]
    return out


def _finite(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _rho(a: dict) -> str:
    lo, hi = a["rho_ci"]
    return f"{a['rho']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def _distinct_paths(cfg: AblationConfig) -> list[str]:
    seen, out = set(), []
    for name, v in cfg.variants.items():
        key = str(Path(v.path).resolve())
        if key not in seen:
            seen.add(key)
            out.append(name)
    return out


def _headline(eval_sets: list[str], summary: dict) -> list[str]:
    keys = {k for v in summary.values() for k in v}
    cols = [f"{kind}@{s}" for s in eval_sets for kind in ("loss", "bpb")]
    cols += sorted(k for k in keys if k.startswith("acc@"))
    cols += ["train_loss"]
    return [c for c in cols if c in keys]


def add_ablate_args(parser) -> None:
    add_config_args(parser, "ablation", "base.train.steps=50")


def cli_ablate(args) -> int:
    results = run_ablation(args.config, cli_overrides(args))
    print(results["table"])
    print(f"ranking by {results['primary']}: {', '.join(results['ranking'])}")
    if results.get("best_predictor"):
        print(f"best small-scale predictor of {results['primary']}: {results['best_predictor']}")
    for p in results.get("plots", []):
        print(f"plot: {p}")
    return 0
