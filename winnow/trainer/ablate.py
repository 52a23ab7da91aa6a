"""Proxy-model ablations: ``winnow ablate ABLATION.yaml``.

Trains the same config on several dataset variants (bucket directories, each in
bucket or concat mode) x seeds, scores every run on the held-out documents of the
``eval_on`` variants (the hash split holds out the same doc ids everywhere, so no
run trains on another variant's held-out documents) and on the configured tasks,
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
from winnow.trainer.train import Trainer

HIGHER_IS_BETTER = ("acc",)


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
    """Flat metrics of one run: ``loss@SET``, ``bpb@SET``, ``loss@SET/SOURCE``, task
    ``acc@TASK`` / ``acc_norm@TASK``, ``train_loss`` and ``tokens_per_s``."""
    m = {"train_loss": results["final_train_loss"]}
    if results.get("tokens_per_s"):
        m["tokens_per_s"] = results["tokens_per_s"]
    for name, ev in cross.items():
        held = ev["heldout"]
        m[f"loss@{name}"] = held["all"]["loss"]
        m[f"bpb@{name}"] = held["all"]["bpb"]
        for source, s in held["by_source"].items():
            m[f"loss@{name}/{source}"] = s["loss"]
    for task, r in results["eval"].get("tasks", {}).items():
        m[f"acc@{task}"] = r["acc"]
        m[f"acc_norm@{task}"] = r["acc_norm"]
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
    for name in eval_sets:
        path = cfg.variants[name].path
        if Path(path).resolve() == Path(tc.data.path).resolve():
            cross[name] = results["eval"]
            continue
        d = tc.data
        ds = BucketDataset(path, d.val_fraction, d.min_val_docs_per_source, d.min_len, d.max_len)
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
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = list(cfg.variants)
    baseline = cfg.baseline or variants[0]
    eval_sets = cfg.eval_on or _distinct_paths(cfg)
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
    for p in results["plots"]:
        print(f"plot: {p}")
    return 0
