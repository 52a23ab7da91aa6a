"""``embed_sim``: embedding similarity to a reference set (kNN and centroid baselines).

The reference set is embedded once, in the driver (``prepare``), with the same
embedder as the ``skills`` stage, and stored under
``RUN/embed_sim/<stage id>/<key>/embeddings.npy``. Each document then gets

- ``knn_score``: the mean cosine similarity to its ``k`` most similar reference
  documents,
- ``centroid_score``: the cosine similarity to the normalised mean reference
  embedding,

and, with ``keep_embeddings``, an ``embedding`` column (a fixed-size float32 list,
its field metadata naming the embedder): the ``(id, embedding)`` pairs stay with
the rows, so a later ``skills`` stage with ``embedding_column: embedding`` reuses
them instead of embedding the corpus again.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from winnow.files import atomic_write
from winnow.skills.aggregate import rowwise
from winnow.skills.embedder import normalize
from winnow.skills.load import EmbedderParams
from winnow.skills.reference import read_reference, texts_digest
from winnow.stages.base import MapStage, Output, Params, Resources
from winnow.stages.skills import EMBEDDER_KEY, REQUIRES, document_embeddings, embedder_cache
from winnow.table import TEXT, set_column


class EmbedSimParams(Params):
    reference: str | list[str]
    """The reference set (paths or globs, read like the pipeline input)."""
    text_field: str = "text"
    """Text field of the reference files."""
    k: int = Field(default=10, gt=0)
    """Neighbours averaged in ``knn_score``."""
    embedder: EmbedderParams = Field(default_factory=EmbedderParams)
    """The embedding model (use the same params as a ``skills`` stage to share embeddings)."""
    keep_embeddings: bool = False
    """Add the ``embedding`` column."""
    embedding_column: str | None = None
    """Read embeddings from this column instead of embedding the text."""
    text_column: str = TEXT
    """Column of the corpus holding the text."""


class EmbedSim(MapStage):
    """kNN-k and centroid cosine similarity of each document to the reference set."""

    name = "embed_sim"
    Params = EmbedSimParams
    materialize = True
    resources = Resources(batch_rows=1024)
    requires = REQUIRES

    def _artifact(self) -> Path:
        if not hasattr(self, "_path"):
            p = self.params
            if self.run_dir is None:
                raise ValueError(f"stage {self.stage_id!r}: embed_sim needs a run directory")
            self._texts = read_reference(p.reference, p.text_field)
            recipe = {"reference": texts_digest(self._texts), "embedder": p.embedder.key()}
            key = xxhash.xxh3_64_hexdigest(json.dumps(recipe, sort_keys=True))
            self._path = Path(self.run_dir) / "embed_sim" / self.stage_id / key / "embeddings.npy"
        return self._path

    def _embedder(self):
        return self.params.embedder.load(embedder_cache(self.run_dir))

    def prepare(self) -> None:
        path = self._artifact()
        if not path.exists():
            buffer = io.BytesIO()
            np.save(buffer, self._embedder().encode(self._texts))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, buffer.getvalue())
        elif self.params.embedder.mode == "static":
            self._embedder()

    def side_outputs(self) -> list[Path]:
        outputs = [self._artifact()]
        if self.params.embedder.mode == "static":
            outputs.append(embedder_cache(self.run_dir))
        return outputs

    def setup(self) -> None:
        if not self._artifact().exists():
            self.prepare()
        self._reference = np.load(self._artifact()).astype(np.float64)
        self._centroid = normalize(self._reference.mean(axis=0, keepdims=True))[0]

    def process(self, table: pa.Table) -> Output:
        if not hasattr(self, "_reference"):
            self.setup()
        p = self.params
        docs = document_embeddings(table, p, p.embedder, self._embedder)
        sims = rowwise(docs, self._reference)
        k = min(p.k, sims.shape[1])
        knn = -np.sort(-sims, axis=1)[:, :k].mean(axis=1)
        centroid = rowwise(docs, self._centroid[None, :])[:, 0]
        table = set_column(table, "knn_score", pa.array(knn, pa.float64()))
        table = set_column(table, "centroid_score", pa.array(centroid, pa.float64()))
        if p.keep_embeddings and p.embedding_column != "embedding":
            values = pa.FixedSizeListArray.from_arrays(
                pa.array(docs.astype(np.float32).ravel()), docs.shape[1]
            )
            field = pa.field("embedding", values.type, metadata={EMBEDDER_KEY: p.embedder.key()})
            if "embedding" in table.column_names:
                table = table.drop_columns(["embedding"])
            table = table.append_column(field, values)
        return Output(kept=table)
