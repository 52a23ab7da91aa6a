"""The dataset card (README.md), generated from the ledger, the manifests and the
staged files.

Its YAML header declares every config with its data files and a ``dataset_info``
entry per config (features and ``num_examples``), so ``load_dataset`` itself checks
the row counts when it builds a split (a mismatch raises). The body says how to load
the data, and shows the pipeline, the ledger with its reconciliation, the buckets and
tokenizer, and what is needed to reproduce the run. Sections a person must write
(limitations, personal information) hold a ``TODO`` until filled from ``--notes``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from winnow.errors import WinnowError
from winnow.hub.plan import PublishPlan, stage_order
from winnow.hub.stage import StagedFile

TODO = "TODO"
HUMAN_SECTIONS = ("Limitations", "Personal and sensitive information")
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
]


@dataclass(frozen=True)
class CardOptions:
    license: str | None = None
    language: tuple[str, ...] = ()
    pretty_name: str | None = None
    notes: dict[str, str] = field(default_factory=dict)  # section title -> markdown


def size_category(rows: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if rows < bound:
            return name
    return "n>1T"


def read_notes(path: Path) -> dict[str, str]:
    """``## Title`` sections of a markdown file, for the card's human sections."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise WinnowError(f"--notes {path}: {exc.strerror}") from None
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.M)
    notes = {
        title.strip(): body.strip() for title, body in zip(parts[1::2], parts[2::2], strict=True)
    }
    unknown = sorted(set(notes) - set(HUMAN_SECTIONS))
    if unknown:
        raise WinnowError(f"--notes {path}: unknown sections {unknown}; use {list(HUMAN_SECTIONS)}")
    return notes


def todo_sections(card: str) -> list[str]:
    """Human sections of a card still holding the TODO placeholder."""
    out = []
    for title in HUMAN_SECTIONS:
        m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, flags=re.M | re.S)
        if m and m.group(1).lstrip().startswith(TODO):
            out.append(title)
    return out


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _metadata(plan: PublishPlan, data: dict[str, list[StagedFile]], tree: Path, opts) -> str:
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    configs, infos = [], {}
    for config in plan.configs:
        entry = {
            "config_name": config.name,
            "data_files": [{"split": "train", "path": f"{config.prefix}/train-*"}],
        }
        if config.default:
            entry["default"] = True
        configs.append(entry)
        files = data[config.name]
        features = datasets.Features.from_arrow_schema(pq.read_schema(tree / files[0].path))
        num_bytes = sum(f.num_bytes for f in files)
        split = datasets.SplitInfo("train", num_bytes=num_bytes, num_examples=config.rows)
        infos[config.name] = datasets.DatasetInfo(
            features=features,
            splits=datasets.SplitDict({"train": split}),
            download_size=sum(f.bytes for f in files),
            dataset_size=num_bytes,
        )
    rows = plan.ledger["outputs"][plan.output]
    card = DatasetCardData(
        license=opts.license,
        language=list(opts.language) or None,
        pretty_name=opts.pretty_name or plan.repo_id.split("/")[1],
        size_categories=[size_category(rows)],
        task_categories=["text-generation"],
        tags=["winnow"],
        configs=configs,
    )
    DatasetInfosDict(infos).to_dataset_card_data(card)
    return card.to_yaml()


def _loading(plan: PublishPlan) -> str:
    repo = plan.repo_id
    lines = [
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("{repo}", split="train")',
        f'stream = load_dataset("{repo}", split="train", streaming=True)',
    ]
    tokens = [c for c in plan.configs if c.kind == "tokens"]
    if tokens:
        lines.append(f'bucket = load_dataset("{repo}", "{tokens[0].name}", split="train")')
    lines += [
        "```",
        "",
        "```sql",
        f"SELECT count(*) FROM 'hf://datasets/{repo}/data/*.parquet';  -- DuckDB",
        "```",
    ]
    return "\n".join(lines)


def _configs(plan: PublishPlan, data: dict[str, list[StagedFile]]) -> str:
    rows = [
        [
            f"`{c.name}`" + (" (default)" if c.default else ""),
            f"`{c.prefix}/`",
            len(data[c.name]),
            f"{c.rows:,}",
            f"{sum(f.bytes for f in data[c.name]):,}",
        ]
        for c in plan.configs
    ]
    return _table(["config", "folder", "files", "rows", "bytes"], rows)


def _pipeline(plan: PublishPlan) -> str:
    rows = []
    for s in plan.manifest["config"]["stages"]:
        after = ", ".join(s.get("after") or []) or "previous"
        params = json.dumps(s.get("params") or {}, sort_keys=True)
        rows.append([f"`{s['id']}`", f"`{s['use']}`", after, f"`{params}`"])
    return _table(["stage", "use", "after", "params"], rows)


def _ledger(plan: PublishPlan) -> str:
    rows, broken = [], []
    for sid in stage_order(plan.manifest, plan.ledger):
        c = plan.ledger["stages"][sid]
        rejected = sum(c["rejected"].values())
        if c["in"] + c["created"] != c["kept"] + rejected:
            broken.append(sid)
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(c["rejected"].items()))
        rows.append([f"`{sid}`", f"{c['in']:,}", f"{c['created']:,}", f"{c['kept']:,}"])
        rows[-1] += [f"{rejected:,}", reasons or "-"]
    status = "holds for every stage" if not broken else f"FAILS for {', '.join(broken)}"
    table = _table(["stage", "in", "created", "kept", "rejected", "reasons"], rows)
    return f"{table}\n\nReconciliation (in + created = kept + rejected): {status}."


def _buckets(plan: PublishPlan) -> str:
    b = plan.buckets
    if b is None:
        return "This run has no length buckets."
    rows = [
        [f"`len_{n}`", f"{info['sequences']:,}", f"{info['tokens']:,}"]
        for n, info in sorted(b["buckets"].items(), key=lambda kv: int(kv[0]))
    ]
    facts = [
        f"- tokenizer: `{Path(str(b.get('tokenizer'))).name}` "
        f"(sha256 `{b.get('tokenizer_sha256')}`)"
        + (", shipped as `winnow/tokenizer.json`" if plan.tokenizer else ""),
        f"- vocabulary {b.get('vocab_size')}, EOS id {b.get('eos_id')}, token dtype "
        f"`{b.get('token_dtype')}`",
        f"- {b.get('documents', 0):,} documents, {b.get('input_tokens', 0):,} tokens; "
        f"{b.get('dropped_tokens', 0):,} tail tokens dropped",
    ]
    if b.get("concat"):
        c = b["concat"]
        facts.append(
            f"- concat-and-chunk baseline: {c['sequences']:,} sequences of {c['len']} tokens"
        )
    return _table(["bucket", "sequences", "tokens"], rows) + "\n\n" + "\n".join(facts)


def _reproduce(plan: PublishPlan) -> str:
    m = plan.manifest
    versions = ", ".join(f"{k} {v}" for k, v in sorted(m.get("versions", {}).items()))
    passes = _table(
        ["pass", "hash"],
        [[f"`{k}`", f"`{v}`"] for k, v in sorted(m.get("pass_hashes", {}).items())],
    )
    return (
        f"- winnow {m.get('versions', {}).get('winnow', '?')}, seed {m.get('seed')}, "
        f"config hash `{m.get('config_hash')}`\n- packages: {versions}\n"
        f"- the resolved pipeline is `winnow/pipeline.yaml`; the manifest, ledger and "
        f"bucket manifest are in `winnow/`, and `winnow/files.json` lists every file with "
        f"its sha256 and source shards\n\n{passes}"
    )


def render_card(
    plan: PublishPlan, data: dict[str, list[StagedFile]], tree: Path, opts: CardOptions
) -> str:
    name = opts.pretty_name or plan.repo_id.split("/")[1]
    read = plan.ledger["stages"].get("read", {}).get("in", plan.ledger.get("input_rows"))
    kept = plan.ledger["outputs"][plan.output]
    placeholder = f"{TODO}: fill in with --notes before publishing."
    human = [f"## {t}\n\n{opts.notes.get(t) or placeholder}" for t in HUMAN_SECTIONS]
    sections = [
        f"---\n{_metadata(plan, data, tree, opts).rstrip()}\n---",
        f"# {name}",
        f"Curated with winnow, pipeline `{plan.manifest.get('name')}`: "
        f"{kept:,} documents in the published output `{plan.output}`, from {read:,} input rows.",
        "## How to load",
        _loading(plan),
        "## Configs",
        _configs(plan, data),
        "## Pipeline",
        _pipeline(plan),
        "## Ledger",
        _ledger(plan),
        "## Length buckets and tokenizer",
        _buckets(plan),
        "## Reproducibility",
        _reproduce(plan),
        *human,
    ]
    return "\n\n".join(sections) + "\n"
