"""Turn finished jobs into the stage's ``Output`` for each mode.

- ``append``: every input row is kept; each job adds one row right after its parent
  (``created``); a failed job's row (its raw answer as text) is rejected with the
  reason, so the ledger still reconciles: rows in + created = kept + rejected.
- ``column``: the answer goes to ``<column>`` (null on failure, with
  ``<column>_reason``); nothing is dropped.
- ``replace``: the answer replaces the text; a failed job rejects its row.

Generated rows carry the provenance columns (``PROVENANCE``); their other columns
(scores of the parent, say) are null, except ``source``, set to ``rephrase:<style>``
when the input has one, so mixing by source can weigh synthetic text apart.
"""

from __future__ import annotations

import pyarrow as pa

from winnow.stages.base import Output
from winnow.table import ID, mark_rejected, set_column, split_by_mask

PROVENANCE = {
    "parent_id": pa.string(),
    "rephrase_style": pa.string(),
    "rephrase_rollout": pa.int32(),
    "rephrase_template_hash": pa.string(),
    "rephrase_model": pa.string(),
    "rephrase_backend": pa.string(),
    "rephrase_chat_template_hash": pa.string(),
    "rephrase_sampling": pa.string(),
    "rephrase_seed": pa.int64(),
    "rephrase_request_keys": pa.string(),
    "rephrase_segments": pa.int32(),
    "rephrase_finish_reason": pa.string(),
    "rephrase_prompt_tokens": pa.int64(),
    "rephrase_completion_tokens": pa.int64(),
    "rephrase_attempts": pa.int32(),
}


def _provenance(job, parent_id: str, shared: dict, template_hash: str) -> dict:
    results = job.results
    return {
        "parent_id": parent_id,
        "rephrase_style": job.style,
        "rephrase_rollout": job.rollout,
        "rephrase_template_hash": template_hash,
        **shared,
        "rephrase_seed": job.requests[0].seed if job.requests[0] else None,
        "rephrase_request_keys": ",".join(job.keys),
        "rephrase_segments": len(job.pieces),
        "rephrase_finish_reason": "length"
        if any(r.finish_reason == "length" for r in results)
        else ("error" if any(r.error for r in results) else "stop"),
        "rephrase_prompt_tokens": sum(r.prompt_tokens for r in results),
        "rephrase_completion_tokens": sum(r.completion_tokens for r in results),
        "rephrase_attempts": max(r.attempts for r in results),
    }


def _columns(records: list[dict]) -> dict[str, pa.Array]:
    return {
        name: pa.array([r[name] for r in records], type=kind) for name, kind in PROVENANCE.items()
    }


def _with_provenance(table: pa.Table, records: list[dict | None]) -> pa.Table:
    empty = dict.fromkeys(PROVENANCE)
    for name, values in _columns([r or empty for r in records]).items():
        table = set_column(table, name, values)
    return table


def assemble(table: pa.Table, jobs, params, shared: dict, templates) -> Output:
    ids = table.column(ID).to_pylist()
    text_col = params.text_column
    records = [_provenance(j, ids[j.row], shared, templates[j.style].hash) for j in jobs]
    if params.mode == "append":
        return _append(table, jobs, records, text_col)
    by_row = {j.row: (j, rec) for j, rec in zip(jobs, records, strict=True)}
    row_records = [by_row[i][1] if i in by_row else None for i in range(table.num_rows)]
    if params.mode == "column":
        answers = [by_row[i][0].text if i in by_row else None for i in range(table.num_rows)]
        reasons = [by_row[i][0].reason if i in by_row else None for i in range(table.num_rows)]
        out = set_column(table, params.column, pa.array(answers, pa.string()))
        out = set_column(out, f"{params.column}_reason", pa.array(reasons, pa.string()))
        return Output(_with_provenance(out, row_records))
    # replace
    texts = table.column(text_col).to_pylist()
    reasons: list[str | None] = [None] * table.num_rows
    for i, (job, _) in by_row.items():
        if job.text is None:
            reasons[i] = job.reason
        else:
            texts[i] = job.text
    out = set_column(table, text_col, pa.array(texts, table.schema.field(text_col).type))
    out = _with_provenance(out, row_records)
    kept, dropped = split_by_mask(out, pa.array([r is None for r in reasons]))
    rejected = mark_rejected(dropped, pa.array([r for r in reasons if r], pa.string()))
    return Output(kept, rejected)


def _append(table: pa.Table, jobs, records: list[dict], text_col: str) -> Output:
    n = len(jobs)
    generated = {
        ID: pa.array(
            [f"{r['parent_id']}~{j.style}~{j.rollout}" for j, r in zip(jobs, records, strict=True)],
            pa.string(),
        ),
        text_col: pa.array([j.text if j.text is not None else _raw(j) for j in jobs], pa.string()),
    }
    if "source" in table.column_names:
        generated["source"] = pa.array([f"rephrase:{j.style}" for j in jobs], pa.string())
    generated.update(_columns(records))
    parents = _with_provenance(table, [None] * table.num_rows)
    fields = {f.name: f.type for f in parents.schema}
    new = pa.table(
        {
            name: generated[name].cast(kind) if name in generated else pa.nulls(n, kind)
            for name, kind in fields.items()
        }
    )
    both = pa.concat_tables([parents, new])
    ok = [j.text is not None for j in jobs]
    order = []
    children: dict[int, list[int]] = {}
    for k, job in enumerate(jobs):
        if ok[k]:
            children.setdefault(job.row, []).append(table.num_rows + k)
    for row in range(table.num_rows):
        order.append(row)
        order.extend(children.get(row, []))
    kept = both.take(pa.array(order, pa.int64()))
    failed = [k for k in range(n) if not ok[k]]
    rejected = mark_rejected(
        new.take(pa.array(failed, pa.int64())),
        pa.array([jobs[k].reason for k in failed], pa.string()),
    )
    return Output(kept, rejected if failed else None, created=n)


def _raw(job) -> str:
    """A failed job's answers, joined, kept in ``rejected/`` for inspection."""
    return "\n\n".join(r.text or r.detail for r in job.results)
