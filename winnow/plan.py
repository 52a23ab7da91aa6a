"""Pipeline spec -> DAG -> execution plan.

Stages form a DAG through ``after`` (default: the previous stage; the first
stage reads the input). A stage listing several parents reads the union of
their outputs, in the order listed. The plan is a list of *passes* in
topological order (ties keep YAML order):

- a **map pass** is a maximal chain of map stages where each stage has exactly
  one parent and that parent has exactly one child, so the chain is fused into
  one pass over the data with no intermediate files; a stage that *materialises*
  (``score``, ``tokenize``, model-backed stages, or ``materialize: true`` in the
  YAML) ends its chain, so editing a stage after it reuses its output;
- a **global pass** is one global stage; its input is materialised.

A pass whose parent is the pipeline input also reads the input; when the first
stage is global, a read-only pass (id ``read``) materialises the input for it.
Passes with no children are sinks: their output becomes the run's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from winnow.config import INPUT, PipelineSpec, stage_parents, topological_order
from winnow.pipeline import StageRecipe, bind


@dataclass
class Pass:
    """One unit of execution: a fused map chain or a single global stage."""

    kind: str  # "map" | "global"
    stage_ids: list[str]
    parents: list[str]  # pass ids, or [INPUT]
    children: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.stage_ids[-1] if self.stage_ids else "read"

    @property
    def reads_input(self) -> bool:
        return self.parents == [INPUT]


@dataclass
class Plan:
    passes: list[Pass]

    @property
    def sinks(self) -> list[Pass]:
        return [p for p in self.passes if not p.children]

    def by_id(self, pass_id: str) -> Pass:
        return next(p for p in self.passes if p.id == pass_id)


def make_plan(spec: PipelineSpec) -> tuple[Plan, dict[str, StageRecipe]]:
    """Bind the stages and plan their passes."""
    recipes = bind(spec)
    return build_plan(spec, recipes), recipes


def build_plan(spec: PipelineSpec, recipes: dict[str, StageRecipe]) -> Plan:
    """Fuse map chains and order passes, from each stage's kind and ``materialize``."""
    kinds = {sid: r.kind for sid, r in recipes.items()}
    ids = [s.id for s in spec.stages]
    parents = stage_parents(spec.stages)
    order = topological_order(ids, parents)
    children: dict[str, list[str]] = {i: [] for i in ids}
    for sid in order:
        for p in parents[sid]:
            if p != INPUT:
                children[p].append(sid)

    passes: list[Pass] = []
    pass_of: dict[str, Pass] = {}
    for sid in order:
        ps = parents[sid]
        if kinds[sid] == "map" and len(ps) == 1 and ps[0] != INPUT:
            parent_pass = pass_of[ps[0]]
            if (
                parent_pass.kind == "map"
                and kinds[ps[0]] == "map"
                and not recipes[ps[0]].materialize
                and len(children[ps[0]]) == 1
                and parent_pass.id == ps[0]
            ):
                parent_pass.stage_ids.append(sid)
                pass_of[sid] = parent_pass
                continue
        new = Pass(kinds[sid], [sid], list(ps))  # stage ids for now, pass ids below
        passes.append(new)
        pass_of[sid] = new
    if passes and passes[0].kind == "global" and passes[0].parents == [INPUT]:
        reader = Pass("map", [], [INPUT])  # materialises the input for the global stage
        passes[0].parents = [reader.id]
        passes.insert(0, reader)
        pass_of[reader.id] = reader
    for p in passes:
        p.parents = [s if s == INPUT else pass_of[s].id for s in p.parents]
        for parent in p.parents:
            if parent != INPUT:
                pass_of[parent].children.append(p.id)
    if not passes:  # no stages: read the input and write it out
        passes.append(Pass("map", [], [INPUT]))
    return Plan(passes)
