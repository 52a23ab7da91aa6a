"""What every runner shares: building stages, pass hashes, the run directory layout.

Run directory::

    RUN/stages/<pass>/part-00000.arrow   materialised pass output (+ part-*.json markers)
    RUN/stages/<pass>/_SUCCESS           the pass's hash and per-stage counts
    RUN/rejected/<stage>/part-*.arrow    dropped rows with ``stage`` and ``reason``
    RUN/data/shard-*.arrow|parquet       final output (``data/<sink>/`` with several sinks)
    RUN/manifest.json, RUN/ledger.json
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from winnow import __version__
from winnow.config import PipelineSpec, build_params
from winnow.plan import Plan, build_plan, stage_parents
from winnow.stages.base import Stage

READ_STAGE = "read"


def stage_seed(run_seed: int, stage_id: str) -> int:
    digest = hashlib.sha256(f"{run_seed}:{stage_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class StageRecipe:
    """Everything needed to rebuild a stage in another process (picklable)."""

    stage_id: str
    use: str
    params: dict
    seed: int

    def build(self, run_dir: Path | None) -> Stage:
        from winnow.config import StageSpec

        spec = StageSpec(id=self.stage_id, use=self.use, params=self.params)
        cls, params = build_params(spec, f"stage {self.stage_id!r}")
        return cls(params, stage_id=self.stage_id, seed=self.seed, run_dir=run_dir)


def stage_recipes(spec: PipelineSpec) -> tuple[dict[str, StageRecipe], dict[str, str]]:
    """Validated recipes and kinds ("map" | "global") for every stage."""
    recipes, kinds = {}, {}
    for i, s in enumerate(spec.stages):
        cls, params = build_params(s, f"stages[{i}]")
        recipes[s.id] = StageRecipe(
            s.id, s.use, params.model_dump(mode="json"), stage_seed(spec.seed, s.id)
        )
        kinds[s.id] = cls.kind
    return recipes, kinds


def make_plan(spec: PipelineSpec) -> tuple[Plan, dict[str, StageRecipe]]:
    recipes, kinds = stage_recipes(spec)
    return build_plan(spec, kinds), recipes


def ledger_parents(spec: PipelineSpec) -> dict[str, list[str]]:
    """Stage -> parent stages, with the pseudo-stage ``read`` at the root."""
    parents = {READ_STAGE: []}
    for sid, ps in stage_parents(spec).items():
        parents[sid] = [READ_STAGE if p == "<input>" else p for p in ps]
    return parents


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    names = ["winnow", "pyarrow", "duckdb", "numpy", "datatrove", "tokenizers", "torch", "pyspark"]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["winnow"] = __version__
    return out


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(path.read_text())


def reset_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
