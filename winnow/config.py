"""YAML -> validated pipeline spec (pydantic v2), and the one YAML reader.

Every error names its YAML path (``stages[2].params.threshold``) and, where the
value must come from a fixed set, the allowed values. This module knows the shape of
a pipeline only; resolving each stage's class and params is ``winnow.pipeline``'s job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from winnow.errors import ConfigError

INPUT = "<input>"  # the parent of a stage that reads the pipeline's input


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(Strict):
    """Where documents come from.

    ``path`` is a local path, a glob, an fsspec URL (``s3://``, ``hf://datasets/...``),
    or a list of them; with ``format: hf`` it may also be a saved ``datasets`` dir
    or a hub dataset id. ``id_field`` is optional: without it ids are derived from
    the file name and row number, which is stable while the files are unchanged.
    Ids must be unique: ``duplicate_ids: fail`` (the default) stops the run at the
    first repeated id with its file and line (and those of its first occurrence);
    ``allow`` skips the check, for pipelines without dedup or provenance needs.
    """

    path: str | list[str]
    format: Literal["auto", "jsonl", "parquet", "arrow", "hf"] = "auto"
    text_field: str = "text"
    id_field: str | None = "id"
    hf_split: str = "train"
    hf_config: str | None = None
    on_error: Literal["quarantine", "fail"] = "quarantine"
    duplicate_ids: Literal["fail", "allow"] = "fail"

    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


class OutputSpec(Strict):
    """Where the run directory goes and how final shards are cut."""

    dir: str
    format: Literal["arrow", "parquet"] = "arrow"
    shard_rows: int = Field(default=100_000, gt=0)
    shard_bytes: int = Field(default=256 * 2**20, gt=0)


class RunnerSpec(Strict):
    """Local runner settings. ``workers: auto`` uses every core."""

    workers: int | Literal["auto"] = "auto"
    chunk_rows: int = Field(default=20_000, gt=0)
    progress: bool = True


class StageSpec(Strict):
    """One stage: ``use`` names its class, ``params`` its settings; ``materialize`` and
    ``resources`` override the class defaults (``winnow.stages.base``)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    use: str
    params: dict[str, Any] = Field(default_factory=dict)
    after: list[str] | None = None
    materialize: bool | None = None
    resources: dict[str, Any] | None = None


class PipelineSpec(Strict):
    name: str
    input: InputSpec
    output: OutputSpec
    seed: int = 0
    stages: list[StageSpec] = Field(default_factory=list)
    runner: RunnerSpec = Field(default_factory=RunnerSpec)

    @model_validator(mode="after")
    def _check_dag(self) -> PipelineSpec:
        """Stage ids unique, ``after`` naming known stages, no cycle."""
        seen: set[str] = set()
        for i, stage in enumerate(self.stages):
            if stage.id == "read":
                raise ValueError(f"stages[{i}].id: 'read' is reserved for the input reader")
            if stage.id in seen:
                raise ValueError(f"stages[{i}].id: duplicate stage id {stage.id!r}")
            seen.add(stage.id)
        topological_order([s.id for s in self.stages], stage_parents(self.stages))
        return self


def stage_parents(stages: list[StageSpec]) -> dict[str, list[str]]:
    """Each stage's parents after applying the default (previous stage / input);
    a ``ValueError`` names the YAML path of a bad ``after``."""
    ids = [s.id for s in stages]
    parents: dict[str, list[str]] = {}
    for i, stage in enumerate(stages):
        if stage.after is None:
            parents[stage.id] = [ids[i - 1]] if i else [INPUT]
            continue
        if not stage.after:
            raise ValueError(f"stages[{i}].after: must name at least one stage id")
        for j, ref in enumerate(stage.after):
            if ref not in ids:
                raise ValueError(
                    f"stages[{i}].after[{j}]: unknown stage id {ref!r}; known ids: {', '.join(ids)}"
                )
            if ref == stage.id:
                raise ValueError(f"stages[{i}].after[{j}]: stage {ref!r} cannot follow itself")
        parents[stage.id] = list(dict.fromkeys(stage.after))
    return parents


def topological_order(ids: list[str], parents: dict[str, list[str]]) -> list[str]:
    """Kahn's algorithm; among ready stages the earliest in YAML order goes first (a
    ``ValueError`` on a cycle)."""
    pending = {i: {p for p in parents[i] if p != INPUT} for i in ids}
    order: list[str] = []
    while pending:
        ready = [i for i in ids if i in pending and not pending[i]]
        if not ready:
            cycle = " -> ".join(sorted(pending))
            raise ValueError(f"stages: the 'after' references form a cycle among: {cycle}")
        order.append(ready[0])
        del pending[ready[0]]
        for deps in pending.values():
            deps.discard(ready[0])
    return order


def _yaml_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``path: message (got value)``."""
    lines = []
    for err in exc.errors():
        path = _yaml_path(tuple(err["loc"]))
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        msg = err["msg"]
        if err["type"] == "value_error" and not err["loc"]:
            lines.append(str(err["ctx"]["error"]))  # a whole-pipeline check: its own path
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        got = err.get("input")
        shown = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {got!r})"
        lines.append(f"{path or '<top>'}: {msg}{shown}")
    return "; ".join(lines)


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """Parse a YAML file; a missing file or bad YAML is one ``file:line`` ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None


def set_dotted(data: dict, overrides: dict[str, Any] | None) -> dict:
    """Apply ``{"a.b.c": value}`` overrides in place. In a list of mappings with ids
    (``stages``) a path segment may name an item by id: ``stages.tok.params.tokenizer``."""
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            if isinstance(node, list):
                match = [item for item in node if isinstance(item, dict) and item.get("id") == key]
                if not match:
                    raise ConfigError(f"override {dotted}: no item with id {key!r}")
                node = match[0]
                continue
            node = node.setdefault(key, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {dotted}: {key} is not a mapping")
        node[last] = value
    return data
