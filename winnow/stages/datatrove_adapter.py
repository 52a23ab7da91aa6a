"""Run any datatrove filter or formatter as a winnow map stage.

``use: datatrove:GopherQualityFilter`` with ``params`` passed to the class's
constructor. Filters keep or reject each document; the reason a datatrove filter
returns (e.g. ``gopher_short_doc``) becomes the row's ``reason`` and so lands in
the ledger. Formatters rewrite the text. Other pipeline steps run through their
``run`` method; documents they do not yield back are rejected as
``dropped_by:<Class>``. Metadata a step adds to documents (e.g. a language
filter's ``language``) becomes new columns.

This also gives datatrove's step library the Spark runner it lacks: the adapter
is an ordinary map stage.
"""

from __future__ import annotations

import importlib
import inspect
import json
from functools import cache

import pyarrow as pa
from pydantic import ConfigDict, model_validator

from winnow.errors import ConfigError
from winnow.stages.base import MapStage, Output, Params
from winnow.table import ID, TEXT, mark_rejected, set_column

_MODULES = (
    "datatrove.pipeline.filters",
    "datatrove.pipeline.formatters",
    "datatrove.pipeline.extractors",
)


def _find_class(name: str, where: str) -> type:
    if "." in name:  # a full path such as datatrove.pipeline.filters.RegexFilter
        module_name, _, name = name.rpartition(".")
        modules = (module_name,)
    else:
        modules = _MODULES
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise ConfigError(
        f"{where}: datatrove step {name!r} not found (searched {', '.join(modules)}); "
        "is datatrove installed (pip install 'winnow[datatrove]')?"
    )


@cache
def datatrove_stage(name: str, where: str = "stage") -> type[MapStage]:
    """A MapStage subclass wrapping the datatrove class ``name``."""
    step_cls = _find_class(name, where)

    class DatatroveParams(Params):
        model_config = ConfigDict(extra="allow")

        @model_validator(mode="after")
        def _bind(self):
            try:
                inspect.signature(step_cls).bind(**(self.model_extra or {}))
            except TypeError as exc:
                raise ValueError(f"{step_cls.__name__}: {exc}") from None
            return self

    class DatatroveStage(DatatroveAdapter):
        Params = DatatroveParams
        step_class = step_cls

    DatatroveStage.__name__ = f"Datatrove{step_cls.__name__}"
    return DatatroveStage


class DatatroveAdapter(MapStage):
    """Base of the generated adapters; ``step_class`` is the wrapped datatrove class."""

    step_class: type

    def setup(self) -> None:
        from datatrove.pipeline.filters.base_filter import BaseFilter
        from datatrove.pipeline.formatters.base import BaseFormatter

        self._step = self.step_class(**(self.params.model_extra or {}))
        self._is_filter = isinstance(self._step, BaseFilter)
        self._is_formatter = isinstance(self._step, BaseFormatter)

    def process(self, table):
        from datatrove.data import Document

        meta_cols = [c for c in table.column_names if c not in (ID, TEXT)]
        rows = table.to_pylist()
        docs = [
            Document(text=r[TEXT], id=r[ID], metadata={c: r[c] for c in meta_cols}) for r in rows
        ]
        keep, reasons = self._decide(docs)
        kept_idx = [i for i, k in enumerate(keep) if k]
        drop_idx = [i for i, k in enumerate(keep) if not k]
        kept = table.take(pa.array(kept_idx, pa.int64()))
        if self._is_formatter or not self._is_filter:
            kept = set_column(kept, TEXT, pa.array([docs[i].text for i in kept_idx], pa.string()))
        kept = _add_metadata(kept, [docs[i] for i in kept_idx], set(meta_cols))
        dropped = table.take(pa.array(drop_idx, pa.int64()))
        dropped = mark_rejected(dropped, pa.array([reasons[i] for i in drop_idx], pa.string()))
        return Output(kept, dropped)

    def _decide(self, docs) -> tuple[list[bool], list[str | None]]:
        name = self.step_class.__name__
        if self._is_filter:
            keep, reasons = [], []
            for doc in docs:
                result = self._step.filter(doc)
                ok, why = result if isinstance(result, tuple) else (result, None)
                keep.append(bool(ok))
                reasons.append(None if ok else (why or f"filtered_by:{name}"))
            return keep, reasons
        if self._is_formatter:
            for doc in docs:
                doc.text = self._step.format(doc.text)
            return [True] * len(docs), [None] * len(docs)
        survivors = {id(d) for d in self._step.run(iter(docs), rank=0, world_size=1)}
        keep = [id(d) in survivors for d in docs]
        return keep, [None if k else f"dropped_by:{name}" for k in keep]


def _add_metadata(table: pa.Table, docs, known: set[str]) -> pa.Table:
    """Turn metadata keys the step added into columns (JSON for non-scalars)."""
    new_keys = sorted({k for d in docs for k in d.metadata} - known)
    for key in new_keys:
        values = [d.metadata.get(key) for d in docs]
        try:
            column = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            column = pa.array([None if v is None else json.dumps(v) for v in values])
        table = set_column(table, key, column)
    return table
