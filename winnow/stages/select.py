"""``select``: keep the top rows, or the top tokens, by a SQL score expression.

Exactly one budget is given: ``fraction`` or ``n`` (rows), ``token_fraction`` or
``tokens``. With ``stratify`` each stratum gets its share of the budget (its
fraction of rows or tokens in the input), so selection does not shift the mix of
domains or sources. Rows are ranked by score descending (``ascending: true``
flips it), NULL scores last, ties broken by id: the result is deterministic and
independent of sharding.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from winnow.sql import check_expression, connect, evaluate
from winnow.stages.base import GlobalStage, Output, Params
from winnow.table import ID, TEXT, mark_rejected, split_by_mask

APPROX_TOKENS = f"ceil(strlen({TEXT}) / 4.0)"
BUDGETS = ("fraction", "n", "token_fraction", "tokens")


class SelectParams(Params):
    by: str
    """SQL expression for the score (higher is better unless ``ascending``)."""
    fraction: float | None = Field(default=None, gt=0, le=1)
    """Budget: keep this fraction of the rows (of each stratum), rounded to nearest."""
    n: int | None = Field(default=None, ge=0)
    """Budget: keep this many rows (split over strata by their share of rows)."""
    token_fraction: float | None = Field(default=None, gt=0, le=1)
    """Budget: keep top rows while their tokens stay within this fraction of the
    input's (each stratum's) tokens."""
    tokens: int | None = Field(default=None, ge=0)
    """Budget: keep top rows while their tokens stay within this many (split over
    strata by their share of tokens)."""
    token_count: str | None = None
    """SQL for a row's token count; default ``n_tokens`` when that column exists,
    else ``ceil(strlen(text) / 4)`` (about 4 UTF-8 bytes per BPE token in English)."""
    stratify: str | None = None
    """SQL expression (usually a column such as ``source``) defining strata."""
    ascending: bool = False
    """Rank by score ascending (lower is better) instead of descending."""

    _check = field_validator("by", "token_count", "stratify")(
        lambda v: v if v is None else check_expression(v)
    )

    @model_validator(mode="after")
    def _one_budget(self):
        given = [k for k in BUDGETS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of fraction, n, token_fraction, tokens")
        return self


class Select(GlobalStage):
    """Top-k / top-fraction / top-tokens selection by score, optionally stratified."""

    name = "select"
    spark_backend = "winnow.spark.backends.select:run"
    Params = SelectParams

    def _keys(self, data) -> pa.Table:
        """Score, token count and stratum of every row, with its (file, row) position."""
        p = self.params
        tokens = p.token_count or ("n_tokens" if "n_tokens" in data.schema.names else APPROX_TOKENS)
        score = f"CAST(({p.by}) AS DOUBLE)"  # any numeric type, e.g. hash(id) (UBIGINT)
        exprs = {"score": score, "tokens": tokens, "stratum": p.stratify or "NULL"}
        con = connect()
        parts = []
        for file_idx, table in enumerate(data.tables()):
            keys = evaluate(con, table, exprs)
            n = table.num_rows
            parts.append(
                pa.table(
                    {
                        "id": table.column(ID),
                        "score": keys.column("score").cast(pa.float64()),
                        "tokens": keys.column("tokens").cast(pa.float64()),
                        "stratum": keys.column("stratum").cast(pa.string()),
                        "file_idx": pa.array(np.full(n, file_idx, dtype=np.int64)),
                        "row_idx": pa.array(np.arange(n, dtype=np.int64)),
                    }
                )
            )
        return pa.concat_tables(parts) if parts else None

    def keep_rule(self) -> str:
        p = self.params
        share = "cnt::DOUBLE / total_cnt" if p.stratify else "1.0"
        tshare = "stratum_tokens / total_tokens" if p.stratify else "1.0"
        if p.fraction is not None:
            return f"rn <= floor({p.fraction} * cnt + 0.5)"
        if p.n is not None:
            return f"rn <= floor({p.n} * {share} + 0.5)"
        if p.token_fraction is not None:
            return f"cum_tokens <= {p.token_fraction} * stratum_tokens + 1e-9"
        return f"cum_tokens <= {p.tokens} * {tshare} + 1e-9"

    def run(self, data, workdir):
        keys = self._keys(data)
        if keys is None or keys.num_rows == 0:
            return
        order = "ASC" if self.params.ascending else "DESC"
        con = duckdb.connect(":memory:")
        con.register("keys", keys)
        decided = con.sql(
            f"""
            SELECT file_idx, row_idx, coalesce({self.keep_rule()}, false) AS keep
            FROM (
              SELECT *,
                row_number() OVER w AS rn,
                sum(coalesce(tokens, 0)) OVER w AS cum_tokens,
                count(*) OVER (PARTITION BY stratum) AS cnt,
                sum(coalesce(tokens, 0)) OVER (PARTITION BY stratum) AS stratum_tokens,
                count(*) OVER () AS total_cnt,
                sum(coalesce(tokens, 0)) OVER () AS total_tokens
              FROM keys
              WINDOW w AS (PARTITION BY stratum ORDER BY score {order} NULLS LAST, id ASC
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            )
            ORDER BY file_idx, row_idx
            """
        ).to_arrow_table()
        keep = decided.column("keep").to_numpy(zero_copy_only=False)
        file_idx = decided.column("file_idx").to_numpy()
        bounds = np.searchsorted(file_idx, np.arange(len(data.files) + 1))
        reason = f"not_selected: below the {self.budget()} by {self.params.by}"
        for i, table in enumerate(data.tables()):
            mask = pa.array(keep[bounds[i] : bounds[i + 1]])
            kept, dropped = split_by_mask(table, mask)
            yield Output(kept, mark_rejected(dropped, reason))

    def budget(self) -> str:
        key = next(k for k in BUDGETS if getattr(self.params, k) is not None)
        return f"top {key}={getattr(self.params, key)}"
