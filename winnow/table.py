"""The document schema and small Arrow helpers shared by every stage.

A corpus is a stream of Arrow tables with at least ``id`` (string, stable) and
``text`` (string). Any other column is metadata or an attribute added by a scorer.
Rejected rows keep all their columns and gain ``stage`` and ``reason``.
"""

from __future__ import annotations

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
