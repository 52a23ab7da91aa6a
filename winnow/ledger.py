"""Row accounting: every input row ends in the output or in ``rejected/``.

Per stage the ledger holds rows in, kept, rejected (per reason class) and
created. A reason's class is the text before its first ``:`` so that
``exact_duplicate_of:doc-17`` counts under ``exact_duplicate_of``.
The run fails if any of these do not hold:

- per stage: in + created = kept + rejected;
- per stage: in = the sum of its parents' kept rows;
- the rows in each pass's files and in ``rejected/<stage>`` match the counts;
- the final data holds exactly the sinks' kept rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from winnow.errors import LedgerError


def reason_class(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def count_reasons(reasons: pa.Array | pa.ChunkedArray) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for value in pc.value_counts(reasons).to_pylist():
        counts[reason_class(value["values"] or "unspecified")] += value["counts"]
    return dict(counts)


@dataclass
class StageCount:
    rows_in: int = 0
    kept: int = 0
    created: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def add(self, other: StageCount) -> None:
        self.rows_in += other.rows_in
        self.kept += other.kept
        self.created += other.created
        for k, v in other.rejected.items():
            self.rejected[k] = self.rejected.get(k, 0) + v
        for k, v in other.stats.items():
            self.stats[k] = self.stats.get(k, 0) + v

    def to_json(self) -> dict:
        return {
            "in": self.rows_in,
            "kept": self.kept,
            "created": self.created,
            "rejected": dict(sorted(self.rejected.items())),
            "stats": dict(sorted(self.stats.items())),
        }

    @classmethod
    def from_json(cls, d: dict) -> StageCount:
        return cls(d["in"], d["kept"], d["created"], dict(d["rejected"]), dict(d["stats"]))

    def check(self, stage_id: str, where: str = "") -> None:
        if self.rows_in + self.created != self.kept + self.rejected_total:
            raise LedgerError(
                f"stage {stage_id!r}{where}: {self.rows_in} in + {self.created} created != "
                f"{self.kept} kept + {self.rejected_total} rejected; rows were lost or invented"
            )


@dataclass
class Ledger:
    """Counts per stage in execution order, plus the parents of each stage."""

    stages: dict[str, StageCount]
    parents: dict[str, list[str]]
    input_rows: int = 0
    output_rows: int = 0
    outputs: dict[str, int] = field(default_factory=dict)  # sink stage -> rows written

    def reconcile(self) -> None:
        for sid, count in self.stages.items():
            count.check(sid)
            parents = self.parents.get(sid, [])
            if parents:
                expected = sum(self.stages[p].kept for p in parents)
                if count.rows_in != expected:
                    raise LedgerError(
                        f"stage {sid!r} received {count.rows_in} rows but its parents "
                        f"{parents} kept {expected}"
                    )
        sinks = [s for s in self.stages if not any(s in p for p in self.parents.values())]
        kept = sum(self.stages[s].kept for s in sinks)
        if kept != self.output_rows:
            raise LedgerError(f"output holds {self.output_rows} rows but the sinks kept {kept}")

    def to_json(self) -> dict:
        return {
            "input_rows": self.input_rows,
            "output_rows": self.output_rows,
            "outputs": self.outputs,
            "rejected_rows": sum(c.rejected_total for c in self.stages.values()),
            "created_rows": sum(c.created for c in self.stages.values()),
            "stages": {sid: c.to_json() for sid, c in self.stages.items()},
            "parents": self.parents,
        }

    @classmethod
    def from_json(cls, d: dict) -> Ledger:
        stages = {sid: StageCount.from_json(c) for sid, c in d["stages"].items()}
        return cls(stages, d["parents"], d["input_rows"], d["output_rows"], d.get("outputs", {}))

    def render(self):
        """A rich table: one row per stage and reason."""
        from rich.table import Table

        table = Table(title="ledger")
        for col in ("stage", "in", "kept", "created", "rejected", "reason"):
            table.add_column(col, justify="left" if col in ("stage", "reason") else "right")
        for sid, c in self.stages.items():
            reasons = sorted(c.rejected.items(), key=lambda kv: (-kv[1], kv[0])) or [("", 0)]
            for i, (reason, n) in enumerate(reasons):
                head = (sid, str(c.rows_in), str(c.kept), str(c.created)) if i == 0 else ("",) * 4
                table.add_row(*head, str(n) if reason else "0", reason)
        sinks = ""
        if len(self.outputs) > 1:
            sinks = " (" + ", ".join(f"{k}: {v}" for k, v in self.outputs.items()) + ")"
        table.caption = (
            f"input rows {self.input_rows} -> output rows {self.output_rows}{sinks}; "
            f"rejected {sum(c.rejected_total for c in self.stages.values())}; "
            f"created {sum(c.created for c in self.stages.values())}"
        )
        return table
