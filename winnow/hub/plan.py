"""Plan a publication: which configs a finished run becomes, read from the run only.

One config per schema (``datasets`` needs one schema per config): the text output
(``default``, under ``data/``), one config per token bucket (``len_<N>``, under
``tokens/len_<N>/``), optionally the concat-and-chunk baseline (``concat_len_<L>``)
and the rejected rows of the published output's lineage (``rejected``: id, stage,
reason, text). Each config carries its expected row count taken from the ledger or
the bucket manifest, never from the files, so staging and loading check against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from winnow.errors import WinnowError

SHARD_BYTES = 500 * 1024 * 1024


@dataclass(frozen=True)
class ConfigPlan:
    name: str
    prefix: str  # folder in the repo
    kind: str  # "text" | "tokens" | "rejected"
    sources: tuple[Path, ...]
    rows: int  # expected rows, from the ledger or the bucket manifest
    length: int | None = None  # sequence length of a tokens config
    default: bool = False


@dataclass(frozen=True)
class PublishPlan:
    run_dir: Path
    repo_id: str
    output: str  # the published output stage
    configs: tuple[ConfigPlan, ...]
    manifest: dict
    ledger: dict
    buckets: dict | None  # buckets/manifest.json of the output's decompose stage
    tokenizer: Path | None  # tokenizer.json, when present and matching the bucket manifest
    shard_bytes: int = SHARD_BYTES


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WinnowError(f"{path.parent}: not a finished run (no {path.name})") from None
    except json.JSONDecodeError as exc:
        raise WinnowError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def lineage(ledger: dict, stage: str) -> list[str]:
    """``stage`` and all its ancestors, nearest first (breadth first, deterministic)."""
    seen, queue = [], [stage]
    while queue:
        sid = queue.pop(0)
        if sid not in seen:
            seen.append(sid)
            queue.extend(ledger["parents"].get(sid, []))
    return seen


def stage_order(manifest: dict, ledger: dict) -> list[str]:
    """``read`` first, then pipeline order (the ledger's JSON is sorted by name)."""
    order = ["read"] + [s["id"] for s in manifest["config"]["stages"]]
    return [sid for sid in order if sid in ledger["stages"]]


def default_output(manifest: dict, ledger: dict) -> str:
    """The output of the last terminal stage in pipeline order (a pipeline ends with
    its main product; the demo's raw branch comes before its curated one)."""
    order = [s["id"] for s in manifest["config"]["stages"]]
    outputs = sorted(ledger["outputs"], key=lambda s: order.index(s) if s in order else -1)
    if not outputs:
        raise WinnowError("the run has no outputs to publish")
    return outputs[-1]


def _sources(run_dir: Path, out: dict) -> tuple[Path, ...]:
    return tuple(run_dir / out["dir"] / s["file"] for s in out["shards"])


def _bucket_configs(run_dir: Path, buckets: dict, bucket_dir: Path, concat: bool):
    configs = []
    for length, info in sorted(buckets["buckets"].items(), key=lambda kv: int(kv[0])):
        n = int(length)
        files = tuple(bucket_dir / s for s in info["shards"])
        if not files:  # an empty bucket is no config (datasets cannot load zero files)
            continue
        configs.append(
            ConfigPlan(f"len_{n}", f"tokens/len_{n}", "tokens", files, info["sequences"], n)
        )
    if concat and buckets.get("concat"):
        info = buckets["concat"]
        n = int(info["len"])
        files = tuple(bucket_dir / s for s in info["shards"])
        configs.append(
            ConfigPlan(
                f"concat_len_{n}", f"tokens/concat/len_{n}", "tokens", files, info["sequences"], n
            )
        )
    return configs


def plan_publish(
    run_dir: Path,
    repo_id: str,
    *,
    output: str | None = None,
    concat: bool = False,
    rejected: bool = False,
    shard_bytes: int = SHARD_BYTES,
) -> PublishPlan:
    """Read ``run_dir`` (manifest, ledger, bucket manifest) and decide the repo's configs."""
    run_dir = Path(run_dir)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise WinnowError(f"repo id {repo_id!r}: expected NAMESPACE/NAME")
    manifest = _load_json(run_dir / "manifest.json")
    ledger = _load_json(run_dir / "ledger.json")
    output = output or default_output(manifest, ledger)
    if output not in manifest["outputs"]:
        known = ", ".join(sorted(manifest["outputs"]))
        raise WinnowError(f"--output {output!r}: not an output of this run (outputs: {known})")
    out = manifest["outputs"][output]
    if out["rows"] != ledger["outputs"][output]:
        raise WinnowError(f"{run_dir}: manifest and ledger disagree on the rows of {output!r}")
    configs = [
        ConfigPlan("default", "data", "text", _sources(run_dir, out), out["rows"], None, True)
    ]
    stages = {s["id"]: s for s in manifest["config"]["stages"]}
    line = lineage(ledger, output)
    buckets = tokenizer = None
    decompose = [s for s in line if stages.get(s, {}).get("use") == "decompose"]
    if decompose:
        bucket_dir = run_dir / stages[decompose[0]]["params"].get("dir", "buckets")
        buckets = _load_json(bucket_dir / "manifest.json")
        configs += _bucket_configs(run_dir, buckets, bucket_dir, concat)
        tokenizer = _tokenizer(buckets)
    if rejected:
        dirs = [run_dir / "rejected" / s for s in reversed(line)]
        files = tuple(f for d in dirs for f in sorted(d.glob("part-*.arrow")))
        rows = sum(sum(ledger["stages"][s]["rejected"].values()) for s in line)
        configs.append(ConfigPlan("rejected", "rejected", "rejected", files, rows))
    return PublishPlan(
        run_dir, repo_id, output, tuple(configs), manifest, ledger, buckets, tokenizer, shard_bytes
    )


def _tokenizer(buckets: dict) -> Path | None:
    """The bucket manifest's tokenizer file, if it is still there with the same content
    (its sha256 is over the canonical serialisation, see ``winnow.tokenizer``)."""
    path = Path(buckets.get("tokenizer") or "")
    if not path.is_file():
        return None
    try:
        from tokenizers import Tokenizer

        from winnow.tokenizer import tokenizer_sha256
    except ImportError:
        return None
    if tokenizer_sha256(Tokenizer.from_file(str(path))) != buckets.get("tokenizer_sha256"):
        return None
    return path
