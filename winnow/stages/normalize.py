"""``normalize``: Unicode and whitespace clean-up, columnar over the text column."""

from __future__ import annotations

from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from winnow.stages.base import MapStage, Output, Params
from winnow.table import TEXT, set_column

# C0/C1 controls except tab and newline, plus zero-width and BOM characters.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}]"
# Unicode space separators other than the plain space.
_EXOTIC_SPACE = r"[\x{00a0}\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}]"


class NormalizeParams(Params):
    form: Literal["NFC", "NFKC", "none"] = "NFC"
    """Unicode normal form applied to the text (``none``: leave it)."""
    fix_text: bool = False
    """Repair mojibake with ftfy (slow: about 1 ms per KB); off by default."""
    strip_control: bool = True
    """Remove C0/C1 control characters (except tab and newline), zero-width
    characters and BOMs."""
    spaces: bool = True
    """Map exotic spaces (NBSP, thin space, ideographic space) to ' ', drop trailing
    spaces per line, and turn CRLF/CR into LF."""
    collapse_spaces: bool = False
    """Also collapse runs of spaces inside lines (off: it would flatten code indentation)."""
    max_blank_lines: int | None = 1
    """At most this many blank lines in a row (longer runs are shortened); null: keep all."""
    strip: bool = True
    """Trim leading and trailing whitespace of the whole text."""


class Normalize(MapStage):
    """Unicode normal form, control-character and whitespace clean-up. Never drops rows;
    a doc that becomes empty is left for a ``filter`` stage to reject with a reason."""

    name = "normalize"
    Params = NormalizeParams

    def setup(self) -> None:
        self._fix = None
        if self.params.fix_text:
            import ftfy

            self._fix = ftfy.fix_text

    def process(self, table):
        p = self.params
        original = table.column(TEXT).combine_chunks()  # replace_with_mask wants arrays
        text = original
        if self._fix is not None:
            fixed = [None if t is None else self._fix(t) for t in text.to_pylist()]
            text = pa.array(fixed, pa.string())
        if p.form != "none":
            text = pc.utf8_normalize(text, p.form)
        # One cheap scan finds the rows needing regex clean-up; only those are rewritten.
        dirty = pc.fill_null(pc.match_substring_regex(text, self._dirty), False)
        if pc.any(dirty).as_py():
            text = pc.replace_with_mask(text, dirty, self._clean(text.filter(dirty)))
        changed = pc.sum(pc.not_equal(text, original)).as_py() or 0
        return Output(set_column(table, TEXT, text), stats={"changed_docs": changed})

    def _clean(self, text):
        p = self.params
        if p.strip_control:
            text = pc.replace_substring_regex(text, _CONTROL, "")
        if p.spaces:
            text = pc.replace_substring_regex(text, r"\r\n?", "\n")
            text = pc.replace_substring_regex(text, _EXOTIC_SPACE, " ")
            text = pc.replace_substring_regex(text, r"(?m)[ \t]+$", "")
        if p.collapse_spaces:
            text = pc.replace_substring_regex(text, r"[ \t]{2,}", " ")
        if p.max_blank_lines is not None:
            limit = p.max_blank_lines + 1
            text = pc.replace_substring_regex(text, rf"\n{{{limit + 1},}}", "\n" * limit)
        if p.strip:
            text = pc.utf8_trim_whitespace(text)
        return text

    @property
    def _dirty(self) -> str:
        """A regex matching any text that ``_clean`` would change."""
        p = self.params
        parts = []
        if p.strip_control:
            parts.append(_CONTROL)
        if p.spaces:
            parts += [r"\r", _EXOTIC_SPACE, r"[ \t]\n", r"[ \t]$"]
        if p.collapse_spaces:
            parts.append(r"[ \t]{2}")
        if p.max_blank_lines is not None:
            parts.append(rf"\n{{{p.max_blank_lines + 2}}}")
        if p.strip:
            parts += [r"^\s", r"\s$"]
        return "|".join(parts) or "$^"
