"""DuckDB helpers: check SQL expressions up front and evaluate them on Arrow tables."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from winnow.errors import WinnowError


def check_expression(expr: str) -> str:
    """Raise ``ValueError`` (shown with the YAML path) if ``expr`` does not parse.

    Column names are unknown until data arrives, so only syntax is checked here:
    DuckDB's parser runs, its binder (which resolves columns) does not.
    """
    try:
        duckdb.extract_statements(f"SELECT ({expr})")
    except duckdb.ParserException as exc:
        first = str(exc).splitlines()[0]
        raise ValueError(f"invalid SQL expression {expr!r}: {first}") from None
    if ";" in expr:
        raise ValueError(f"SQL expression {expr!r} must not contain ';'")
    return expr


def check_boolean(expr: str) -> str:
    """``check_expression``, plus: an expression over ``id`` and ``text`` alone must be a
    boolean. Others name columns known only at run time (``require_boolean`` then)."""
    check_expression(expr)
    probe = "SELECT ''::VARCHAR AS id, ''::VARCHAR AS text"
    try:
        kind = str(connect().sql(f"SELECT ({expr}) FROM ({probe})").types[0])
    except duckdb.Error:
        return expr
    if kind not in ("BOOLEAN", '"NULL"', "NULL"):
        raise ValueError(f"SQL expression {expr!r} must be a boolean, not {kind}")
    return expr


def require_boolean(values: pa.ChunkedArray | pa.Array, expr: str) -> None:
    """Fail in one line when an expression evaluated to something other than a boolean."""
    if not (pa.types.is_boolean(values.type) or pa.types.is_null(values.type)):
        raise WinnowError(f"SQL expression {expr!r} must be a boolean, not {values.type}")


def connect() -> duckdb.DuckDBPyConnection:
    """A single-threaded in-memory connection (workers are already processes)."""
    con = duckdb.connect(":memory:")
    con.execute("SET threads = 1")
    return con


def evaluate(con: duckdb.DuckDBPyConnection, table: pa.Table, exprs: dict[str, str]) -> pa.Table:
    """Evaluate named SQL expressions row by row; the result keeps the row order."""
    select = ", ".join(f"({e}) AS {_quote(name)}" for name, e in exprs.items())
    con.register("__winnow_batch", table)
    try:
        return con.sql(
            f"SELECT {select} FROM (SELECT *, row_number() OVER () AS __winnow_row "
            f"FROM __winnow_batch) ORDER BY __winnow_row"
        ).to_arrow_table()
    except duckdb.Error as exc:
        columns = ", ".join(table.column_names)
        first = str(exc).splitlines()[0]
        raise WinnowError(
            f"cannot evaluate {list(exprs.values())}: {first} (columns: {columns})"
        ) from None
    finally:
        con.unregister("__winnow_batch")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
