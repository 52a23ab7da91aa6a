"""The document schema and small Arrow helpers shared by every stage.

A corpus is a stream of Arrow tables with at least ``id`` (string, stable) and
``text`` (string). Any other column is metadata or an attribute added by a scorer.
Rejected rows keep all their columns and gain ``stage`` and ``reason``.
Tables read from different chunks or parts may disagree on metadata types;
``unify_schemas`` and ``conform`` resolve that deterministically.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

ID = "id"
TEXT = "text"
STAGE = "stage"
REASON = "reason"


def empty_like(table: pa.Table) -> pa.Table:
    """A zero-row table with the same schema."""
    return table.schema.empty_table()


def mark_rejected(table: pa.Table, reason: str | pa.Array) -> pa.Table:
    """Attach a ``reason`` column (one string for all rows, or one per row)."""
    if isinstance(reason, str):
        reason = pa.array([reason] * table.num_rows, pa.string())
    if REASON in table.column_names:
        table = table.drop_columns([REASON])
    return table.append_column(REASON, reason)


def split_by_mask(table: pa.Table, keep: pa.Array) -> tuple[pa.Table, pa.Table]:
    """Split rows into (kept, dropped) by a boolean mask; nulls count as dropped."""
    keep = pc.fill_null(keep, False)
    return table.filter(keep), table.filter(pc.invert(keep))


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Add a column, replacing an existing one of the same name in place."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def _canonical(value):
    """JSON value normalised so it prints the same whatever chunk it was read in.

    Keys sorted, null members dropped (Arrow cannot tell them from missing ones),
    integers beyond int64 and integral floats treated as pyarrow's JSON reader does.
    """
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in sorted(value.items()) if v is not None}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        value = float(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def json_text(value) -> str:
    """Canonical compact JSON of a value (how nested metadata is stored as text)."""
    return json.dumps(_canonical(value), ensure_ascii=False, separators=(",", ":"))


def is_stringlike(t: pa.DataType) -> bool:
    """A string type, plain, large, view or dictionary-encoded."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def unify_schemas(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for tables read from different chunks of the same input.

    Fields in order of first appearance; a type seen with null is that type; int64
    with float64 is float64; any other disagreement is string. Field metadata (e.g.
    the tokenizer hash on ``tokens``) is kept from a field's first appearance.
    """
    types: dict[str, pa.DataType] = {}
    metadata: dict[str, dict | None] = {}
    for schema in schemas:
        for field in schema:
            old = types.get(field.name)
            types[field.name] = field.type if old is None else _merge_types(old, field.type)
            metadata.setdefault(field.name, field.metadata)
    fields = [pa.field(name, t, metadata=metadata[name]) for name, t in types.items()]
    return pa.schema(fields, metadata=schemas[0].metadata if schemas else None)


def _merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if {a, b} == {pa.int64(), pa.float64()}:
        return pa.float64()
    return pa.string()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast ``table`` to ``schema`` (from ``unify_schemas``), adding missing columns as nulls."""
    cols = []
    for field in schema:
        if field.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        if col.type != field.type:
            col = _cast_column(col, field.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _cast_column(col: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_string(target) and not is_stringlike(col.type):
        return pa.array([None if v is None else json_text(v) for v in col.to_pylist()], pa.string())
    return pc.cast(col, target)
