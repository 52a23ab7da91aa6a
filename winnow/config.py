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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(Strict):
    """Where documents come from.

    ``path`` is a local path, a glob, an fsspec URL (``s3://``, ``hf://datasets/...``),
    or a list of them; with ``format: hf`` it may also be a saved ``datasets`` dir
    or a hub dataset id. ``id_field`` is optional: without it ids are derived from
    the file name and row number, which is stable while the files are unchanged.
    """

    path: str | list[str]
    format: Literal["auto", "jsonl", "parquet", "arrow", "hf"] = "auto"
    text_field: str = "text"
    id_field: str | None = "id"
    hf_split: str = "train"
    hf_config: str | None = None
    on_error: Literal["quarantine", "fail"] = "quarantine"

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
    def _unique_ids(self) -> PipelineSpec:
        seen: set[str] = set()
        for i, stage in enumerate(self.stages):
            if stage.id == "read":
                raise ValueError(f"stages[{i}].id: 'read' is reserved for the input reader")
            if stage.id in seen:
                raise ValueError(f"stages[{i}].id: duplicate stage id {stage.id!r}")
            seen.add(stage.id)
        return self


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
