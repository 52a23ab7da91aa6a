"""fastText quality classifier score (the DCLM recipe's ``fasttext`` filter).

Adds one column: the probability the model gives to ``label`` for each document.
The model is a local path or a hub id (:mod:`winnow.scorers.models`), e.g. DCLM's
``mlfoundations/fasttext-oh-eli5/openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train.bin``,
or one trained with ``winnow train-classifier``. It is loaded once per worker.
Newlines become ``newline`` (DCLM uses a space; datatrove's filter uses "").
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from winnow.errors import WinnowError
from winnow.scorers.base import Scorer, ScorerParams
from winnow.scorers.models import load_fasttext
from winnow.scorers.text import TextBatch


class FastTextParams(ScorerParams):
    model: str
    """The fastText model: a local path or a hub id ``OWNER/REPO[/FILE]``."""
    label: str = "__label__hq"
    """Label whose probability is reported (``hq`` and ``__label__hq`` both work)."""
    column: str = "fasttext_score"
    """The output column of probabilities (float64)."""
    newline: str = " "
    """What newlines become before prediction (DCLM: a space; datatrove: "")."""


class FastTextScorer(Scorer):
    """Probability of one label of a supervised fastText model."""

    name = "fasttext"
    requires = {"fasttext": "quality"}
    Params = FastTextParams

    def setup(self) -> None:
        self._model = load_fasttext(self.params.model)
        label = self.params.label
        self._label = label if label.startswith("__label__") else f"__label__{label}"
        if self._label not in self._model.labels:
            raise WinnowError(
                f"model {self.params.model!r} has no label {self._label!r}; "
                f"labels: {', '.join(self._model.labels)}"
            )

    @classmethod
    def outputs(cls, params: FastTextParams) -> list[str]:
        return [params.column]

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        if not hasattr(self, "_model"):
            self.setup()
        return {self.params.column: pa.array(self.probabilities(batch.texts), pa.float64())}

    def probabilities(self, texts: pa.Array) -> np.ndarray:
        flat = pc.replace_substring(texts, "\n", self.params.newline)
        lines = [t.strip() for t in flat.to_pylist()]
        k = len(self._model.labels)
        labels, probs = self._model.predict(lines, k=k)
        out = np.zeros(len(lines))
        for i, (names, values) in enumerate(zip(labels, probs, strict=True)):
            for name, value in zip(names, values, strict=True):
                if name == self._label:
                    out[i] = value
                    break
        return out
