"""A pipeline file -> a validated spec whose stages are bound to their classes.

Binding resolves each stage's ``use`` to a class, validates its params, applies the
YAML overrides of ``materialize`` and ``resources`` to the class defaults, checks the
optional modules the stage ``requires`` (naming the pip extra), and derives the
stage's seed. The result, a :class:`StageRecipe` per stage, is all a runner needs to
rebuild the stage in another process; the plan (``winnow.plan``) is built from it.
Everything here happens before any data is read, so a typo fails first.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from winnow.config import PipelineSpec, StageSpec, format_validation_error, read_yaml, set_dotted
from winnow.errors import ConfigError
from winnow.registry import missing_requirement
from winnow.stages import resolve
from winnow.stages.base import Resources, Stage


def stage_seed(run_seed: int, stage_id: str) -> int:
    """The stage's own seed: a hash of the run seed and the stage id."""
    digest = hashlib.sha256(f"{run_seed}:{stage_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class StageRecipe:
    """Everything needed to rebuild a stage in another process (picklable)."""

    stage_id: str
    use: str
    params: dict
    seed: int
    kind: str
    materialize: bool
    resources: dict

    def build(self, run_dir: Path | None) -> Stage:
        spec = StageSpec(id=self.stage_id, use=self.use, params=self.params)
        cls, params = resolve_params(spec, f"stage {self.stage_id!r}")
        resources = Resources.model_validate(self.resources)
        return cls(
            params, stage_id=self.stage_id, seed=self.seed, run_dir=run_dir, resources=resources
        )

    @property
    def fingerprint(self) -> dict:
        """What defines the stage's output (its pass hash covers this): not its resources,
        which change how it runs, never what it writes."""
        return {
            "stage_id": self.stage_id,
            "use": self.use,
            "params": self.params,
            "seed": self.seed,
        }


def resolve_params(stage: StageSpec, where: str) -> tuple[type[Stage], Any]:
    """Resolve the stage class and validate its params; returns (cls, params)."""
    cls = resolve(stage.use, f"{where}.use")
    try:
        params = cls.Params.model_validate(stage.params)
    except ValidationError as exc:
        raise ConfigError(f"{where}.params: {format_validation_error(exc)}") from None
    return cls, params


def check_requires(cls: type[Stage], where: str) -> None:
    """One-line error naming the pip extra when a module the stage needs is missing."""
    problem = missing_requirement(cls.requires, f"stage {cls.name or cls.__name__!r}")
    if problem:
        raise ConfigError(f"{where}: {problem}")


def bind_stage(stage: StageSpec, run_seed: int, where: str) -> StageRecipe:
    cls, params = resolve_params(stage, where)
    check_requires(cls, where)
    try:
        resources = Resources.model_validate(
            {**cls.resources.model_dump(), **(stage.resources or {})}
        )
    except ValidationError as exc:
        raise ConfigError(f"{where}.resources.{format_validation_error(exc)}") from None
    if cls.kind == "global" and stage.materialize is False:
        raise ConfigError(f"{where}.materialize: a global stage always materialises its output")
    materialize = cls.materialize if stage.materialize is None else stage.materialize
    return StageRecipe(
        stage.id,
        stage.use,
        params.model_dump(mode="json"),
        stage_seed(run_seed, stage.id),
        cls.kind,
        materialize,
        resources.model_dump(),
    )


def bind(spec: PipelineSpec, source: str = "") -> dict[str, StageRecipe]:
    """A recipe per stage id, in YAML order."""
    prefix = f"{source}: " if source else ""
    return {
        s.id: bind_stage(s, spec.seed, f"{prefix}stages[{i}]") for i, s in enumerate(spec.stages)
    }


def parse_pipeline(data: Any, source: str = "<pipeline>") -> PipelineSpec:
    """Validate a loaded YAML mapping, including each stage's class and params."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None
    bind(spec, source)
    return spec


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineSpec:
    """Read and validate a pipeline YAML file; ``overrides`` maps dotted keys to values."""
    data = read_yaml(path, "pipeline file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return parse_pipeline(set_dotted(data, overrides), str(path))
