"""Language identification: ``lang`` and ``lang_score`` columns.

Offline default: py3langid (langid.py's model, 140 languages, ISO 639 codes,
probabilities normalised over languages). With ``model`` set to a fastText LID model
(a local path or hub id, see :mod:`winnow.scorers.models`) it uses that instead:
``facebook/fasttext-language-identification`` (lid.176, codes like ``en``) or
``cis-lmu/glotlid`` (codes like ``eng_Latn``); the label is stored without its
``__label__`` prefix. Newlines are replaced by spaces for fastText (it reads one line).
Only the first ``max_chars`` characters are read, which bounds the time per document.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from winnow.scorers.base import Scorer, ScorerParams
from winnow.scorers.models import load_fasttext
from winnow.scorers.text import TextBatch


class LangIdParams(ScorerParams):
    model: str | None = None
    """fastText LID model (path or hub id); ``null``: the bundled py3langid model."""
    column: str = "lang"
    """Output columns: ``<column>`` (label) and ``<column>_score`` (probability)."""
    languages: list[str] | None = None
    """Restrict py3langid to these languages (better accuracy when the set is known)."""
    max_chars: int | None = Field(default=10_000, gt=0)
    """Read only the first this-many characters (bounds the time per document); null:
    the whole text."""


class LangId(Scorer):
    """Most likely language of each document and its probability."""

    name = "langid"
    requires = {"py3langid": "quality"}
    Params = LangIdParams

    def setup(self) -> None:
        if self.params.model:
            self._fasttext = load_fasttext(self.params.model)
        else:
            self._langid = _py3langid(tuple(self.params.languages or ()))

    @classmethod
    def outputs(cls, params: LangIdParams) -> list[str]:
        return [params.column, f"{params.column}_score"]

    def score(self, batch: TextBatch) -> dict[str, pa.Array]:
        if not hasattr(self, "_fasttext") and not hasattr(self, "_langid"):
            self.setup()
        texts = batch.texts
        if self.params.max_chars:
            texts = pc.utf8_slice_codeunits(texts, 0, self.params.max_chars)
        if self.params.model:
            labels, scores = _fasttext_top1(self._fasttext, texts)
        else:
            labels, scores = self._classify(texts)
        return {
            self.params.column: pa.array(labels, pa.string()),
            f"{self.params.column}_score": pa.array(scores, pa.float64()),
        }

    def _classify(self, texts: pa.Array) -> tuple[list, np.ndarray]:
        labels, scores = [], np.zeros(len(texts))
        for i, text in enumerate(texts.to_pylist()):
            if text.strip():
                lang, prob = self._langid.classify(text)
                labels.append(lang)
                scores[i] = prob
            else:  # nothing to identify
                labels.append(None)
        return labels, scores


def _fasttext_top1(model, texts: pa.Array) -> tuple[list, np.ndarray]:
    """Top label (``__label__`` stripped) and its probability for each text."""
    flat = pc.replace_substring_regex(texts, r"[\r\n\x0b\x0c\x{85}\x{2028}\x{2029}]", " ")
    lines = [t.strip() for t in flat.to_pylist()]
    labels: list = [None] * len(lines)
    scores = np.zeros(len(lines))
    todo = [i for i, t in enumerate(lines) if t]
    if todo:
        predicted, probs = model.predict([lines[i] for i in todo], k=1)
        for i, label, prob in zip(todo, predicted, probs, strict=True):
            labels[i] = label[0].removeprefix("__label__") if label else None
            scores[i] = float(prob[0]) if len(prob) else 0.0
    return labels, scores


_IDENTIFIERS: dict[tuple, object] = {}


def _py3langid(languages: tuple[str, ...]):
    if languages not in _IDENTIFIERS:
        try:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier
        except ImportError:
            raise ImportError("py3langid is not installed: pip install 'winnow[quality]'") from None
        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        if languages:
            identifier.set_languages(list(languages))
        _IDENTIFIERS[languages] = identifier
    return _IDENTIFIERS[languages]
