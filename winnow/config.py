"""YAML -> validated pipeline spec (pydantic v2).

Every error names its YAML path (``stages[2].params.threshold``) and, where the
value must come from a fixed set, the allowed values. Validation resolves each
stage class and checks its params, so a typo fails before any data is read.
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
    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    use: str
    params: dict[str, Any] = Field(default_factory=dict)
    after: list[str] | None = None


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


def parse_pipeline(data: Any, source: str = "<pipeline>") -> PipelineSpec:
    """Validate a loaded YAML mapping, including each stage's params."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    for i, stage in enumerate(spec.stages):
        build_params(stage, f"{source}: stages[{i}]")
    return spec


def build_params(stage: StageSpec, where: str):
    """Resolve the stage class and validate its params; returns (cls, params)."""
    from winnow.stages import resolve

    cls = resolve(stage.use, f"{where}.use")
    try:
        params = cls.Params.model_validate(stage.params)
    except ValidationError as exc:
        raise ConfigError(f"{where}.params: {format_validation_error(exc)}") from None
    return cls, params


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineSpec:
    """Read and validate a pipeline YAML file; ``overrides`` maps dotted keys to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return parse_pipeline(set_dotted(data, overrides), str(path))


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
