"""Read a reference set (the target domain) with the normal readers.

The texts come back sorted, so the order of the reference files or rows never
changes what is built from them; ``texts_digest`` names their content.
"""

from __future__ import annotations

import xxhash

from winnow.errors import InputError


def read_reference(path: str | list[str], text_field: str = "text") -> list[str]:
    """Every text of the reference set, sorted; InputError when it is empty."""
    from winnow.config import InputSpec
    from winnow.io.discovery import plan_chunks
    from winnow.io.readers import read_chunk

    spec = InputSpec(path=path, text_field=text_field, id_field=None, on_error="fail")
    texts: list[str] = []
    for chunk in plan_chunks(spec, chunk_rows=100_000):
        texts += read_chunk(chunk, spec).table.column("text").to_pylist()
    if not texts:
        raise InputError(f"reference {path!r}: no documents")
    return sorted(texts)


def texts_digest(texts: list[str]) -> str:
    """xxh3-128 of the texts, each length-prefixed (so boundaries count)."""
    h = xxhash.xxh3_128()
    for text in texts:
        data = text.encode()
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()
