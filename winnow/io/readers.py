"""Read one input chunk (planned by ``winnow.io.discovery.plan_chunks``).

``read_chunk`` turns one range of one file into the document schema (``id``,
``text``, then metadata) plus a table of quarantined rows. The format readers live
in ``winnow.io.jsonl`` and ``winnow.io.tabular``; what they share (the chunk, the
result, quarantine) in ``winnow.io.chunks``. A metadata field literally named ``id``
or ``text`` that is not the id/text field is renamed ``orig_id`` / ``orig_text``.
"""

from __future__ import annotations

from winnow.config import InputSpec
from winnow.io.chunks import Chunk, ReadResult
from winnow.io.jsonl import read_jsonl
from winnow.io.tabular import read_tabular


def read_chunk(chunk: Chunk, spec: InputSpec) -> ReadResult:
    """Read one chunk into ``id``, ``text`` and metadata, quarantining bad rows."""
    if chunk.fmt == "jsonl":
        return read_jsonl(chunk, spec)
    return read_tabular(chunk, spec)
