r"""Exact ``tiktoken`` encoding for byte-level BPE tokenizers from Hugging Face ``tokenizers``.

``to_tiktoken(tokenizer)`` returns a ``tiktoken.Encoding`` that gives the same ids as
``tokenizer.encode(text, add_special_tokens=False)``, or ``None`` and the reason it
cannot promise that. tiktoken is several times faster per core. The two encoders
agree under these conditions, all checked from ``tokenizer.to_str()``:

* Splitting. HF cuts the text at added tokens (longest match), then splits it with a
  regex; tiktoken does the same with ``special_tokens`` (first match) and ``pat_str``.
  Required: no normalizer; the GPT-2 ``ByteLevel`` regex, or ``Split(Isolated)`` with a
  regex known to match every character (tiktoken drops text its regex skips, HF keeps
  it); added tokens without ``lstrip``/``rstrip``/``single_word``, none a prefix of
  another; no truncation, padding or ``encode_special_tokens``.
* Merging. Both repeatedly merge the leftmost best adjacent pair of a piece: HF the
  pair listed earliest in ``merges``, tiktoken any pair whose concatenation has the
  lowest id. Required: (a) merge results have strictly increasing ids along the merge
  list (so each token has one "own" merge and the two orders agree on own merges),
  and (b) HF's merges turn the bytes of every vocabulary entry into that entry.

Why (a) and (b) suffice: while both have made the same merges, they pick the same
pair (or both stop) unless tiktoken's best pair ``(u, v)`` is not the own merge of
``t = u + v``. Then ``u`` and ``v`` exactly cover an occurrence of ``t``; no earlier
merge crossed its edges, so each merge inside it was the lowest pair inside it at
the time, i.e. the merges were the first ones HF makes on ``t`` alone. HF on ``t``
alone would thus reach ``[u, v]`` and stop (``(u, v)`` is not a merge), contradicting
(b). tiktoken also returns a piece that is itself in the vocabulary as one token,
which by (b) is what HF's merges give too (with or without ``ignore_merges``).

Not proven, only tested: that HF's regex engine (Oniguruma) and tiktoken's
(fancy-regex) split the same pattern identically, including their Unicode tables
for ``\p{L}``, ``\p{N}`` and ``\s``. tests/test_fast_bpe.py compares both encoders on
real, adversarial and random-code-point text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import tiktoken
    from tokenizers import Tokenizer

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""The regex of ``pre_tokenizers.ByteLevel(use_regex=True)`` (and of GPT-2)."""

CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""Llama-3's (and cl100k's) split regex."""

COVERING_PATTERNS = frozenset(
    {GPT2_PATTERN, CL100K_PATTERN, CL100K_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")}
)
"""Split regexes accepted from a tokenizer.json: each has alternatives for letters,
numbers, whitespace and everything else, so every character falls in some match."""


@dataclass(frozen=True)
class Conversion:
    """The result of ``to_tiktoken``: an encoding, or ``None`` and why not."""

    encoding: tiktoken.Encoding | None
    reason: str = ""


class NotConvertible(Exception):
    """Raised internally with the reason a tokenizer cannot be converted."""


@lru_cache(maxsize=1)
def byte_to_char() -> dict[int, str]:
    """GPT-2's reversible map from each byte to a printable character.

    Printable Latin-1 bytes map to themselves; the other 68 bytes (controls, space,
    soft hyphen, ...) map in order to U+0100, U+0101, ...
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = (b for b in range(256) if b not in table)
    table.update((b, chr(0x100 + i)) for i, b in enumerate(extra))
    return table


def to_tiktoken(tokenizer: Tokenizer, *, add_special_tokens: bool = False) -> Conversion:
    """An exact tiktoken ``Encoding`` for ``tokenizer``, or ``None`` and the reason.

    ``add_special_tokens`` is the caller's setting for HF's post-processor; if that
    would add tokens (BOS, a template), tiktoken cannot reproduce it.
    """
    try:
        import tiktoken
    except ImportError:
        return Conversion(None, "tiktoken is not installed (pip install 'winnow[tokenize]')")
    try:
        spec = json.loads(tokenizer.to_str())
        _check_pipeline(tokenizer, spec, add_special_tokens)
        pattern = _split_pattern(spec.get("pre_tokenizer"))
        specials = _added_tokens(spec)
        ranks, merged = _mergeable_ranks(spec["model"], specials)
        _check_entries_encode_to_themselves(spec, merged)
    except NotConvertible as exc:
        return Conversion(None, str(exc))
    encoding = tiktoken.Encoding(
        "winnow-hf-byte-bpe", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials
    )
    return Conversion(encoding)


def _check_pipeline(tokenizer: Tokenizer, spec: dict, add_special_tokens: bool) -> None:
    """Everything around the model: normalizer, post-processor, truncation, padding."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise NotConvertible(f"model is {model.get('type')}, not BPE")
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise NotConvertible(f"BPE {key} is set ({model[key]!r})")
    if model.get("byte_fallback"):
        raise NotConvertible("BPE byte_fallback is set (not a byte-level vocabulary)")
    normalizer = spec.get("normalizer")
    if normalizer and not (
        normalizer.get("type") == "Sequence" and not normalizer.get("normalizers")
    ):
        raise NotConvertible(f"has a {normalizer.get('type')} normalizer")
    if spec.get("truncation") or spec.get("padding"):
        raise NotConvertible("truncation or padding is enabled")
    if getattr(tokenizer, "encode_special_tokens", False):
        raise NotConvertible("encode_special_tokens is set")
    if add_special_tokens and tokenizer.num_special_tokens_to_add(is_pair=False):
        raise NotConvertible("add_special_tokens: the post-processor adds tokens")


def _split_pattern(pre: dict | None) -> str:
    """tiktoken's ``pat_str`` for a byte-level pre-tokenizer."""
    if not pre:
        raise NotConvertible("no pre-tokenizer (not byte-level)")
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    if len(steps) == 1 and steps[0].get("type") == "ByteLevel":
        byte_level, pattern = steps[0], GPT2_PATTERN
        if not byte_level.get("use_regex", True):
            raise NotConvertible("ByteLevel pre-tokenizer without a regex")
    elif (
        len(steps) == 2
        and steps[0].get("type") == "Split"
        and steps[1].get("type") == "ByteLevel"
        and not steps[1].get("use_regex", True)
    ):
        split, byte_level = steps
        pattern = (split.get("pattern") or {}).get("Regex")
        if split.get("behavior") != "Isolated" or split.get("invert") or pattern is None:
            raise NotConvertible("Split pre-tokenizer is not an Isolated regex split")
        if pattern not in COVERING_PATTERNS:
            raise NotConvertible(f"Split regex {pattern!r} is not a known covering pattern")
    else:
        kinds = "+".join(str(s.get("type")) for s in steps)
        raise NotConvertible(f"pre-tokenizer {kinds} is not ByteLevel or Split+ByteLevel")
    if byte_level.get("add_prefix_space"):
        raise NotConvertible("ByteLevel add_prefix_space is set")
    return pattern


def _added_tokens(spec: dict) -> dict[str, int]:
    """Added tokens as tiktoken special tokens: HF splits all of them out before BPE."""
    entries = spec.get("added_tokens") or []
    for entry in entries:
        for flag in ("lstrip", "rstrip", "single_word"):
            if entry.get(flag):
                raise NotConvertible(f"added token {entry['content']!r} has {flag}")
        if not entry["content"]:
            raise NotConvertible("an added token is empty")
    tokens = {e["content"]: e["id"] for e in entries}
    # HF takes the longest match at the leftmost position, tiktoken the first listed:
    # the same unless one token starts with another.
    contents = sorted(tokens)
    for a, b in zip(contents, contents[1:], strict=False):
        if b.startswith(a):
            raise NotConvertible(f"added token {a!r} is a prefix of {b!r}")
    # HF matches non-normalized tokens in a first pass and normalized ones in a
    # second; tiktoken in one pass. Only overlapping occurrences could tell them apart.
    groups = [[e["content"] for e in entries if bool(e.get("normalized")) == n] for n in (0, 1)]
    if any(_overlap(a, b) or _overlap(b, a) for a in groups[0] for b in groups[1]):
        raise NotConvertible("normalized and non-normalized added tokens overlap")
    return tokens


def _overlap(a: str, b: str) -> bool:
    """Whether ``b`` lies inside ``a`` or starts with a suffix of ``a``."""
    return b in a or any(b.startswith(a[i:]) for i in range(1, len(a)))


@lru_cache(maxsize=1)
def _unmap_table() -> dict[int, int | str]:
    """``str.translate`` table from byte-level characters to the bytes they stand for
    (as code points < 256); every other code point < 256 maps to U+FFFF, so that
    ``.encode("latin-1")`` fails exactly on entries that are not byte-level."""
    table: dict[int, int | str] = {ord(c): b for b, c in byte_to_char().items()}
    table.update((o, "\uffff") for o in range(256) if o not in table)
    return table


def token_bytes(token: str) -> bytes | None:
    """The bytes a byte-level vocabulary entry stands for; ``None`` if not byte-level."""
    try:
        return token.translate(_unmap_table()).encode("latin-1")
    except UnicodeEncodeError:
        return None


def _mergeable_ranks(
    model: dict, specials: dict[str, int]
) -> tuple[dict[bytes, int], list[tuple[str, int]]]:
    """tiktoken's ranks (token bytes -> id), and the multi-byte entries with their ids.

    Checks that every multi-byte entry is made by exactly one merge, in id order.
    Entries that are only added tokens (``<|endoftext|>`` in a trained vocabulary)
    are left to ``special_tokens``: HF splits their text out before BPE.
    """
    added = {token_id: content for content, token_id in specials.items()}
    vocab: dict[str, int] = model["vocab"]
    missing = sum(c not in vocab for c in byte_to_char().values())
    if missing:
        raise NotConvertible(f"{missing} of the 256 byte tokens are missing from the vocabulary")

    made = set()
    last = -1
    for i, merge in enumerate(model.get("merges") or []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        result = vocab.get(left + right)
        if result is None or left not in vocab or right not in vocab:
            raise NotConvertible(f"merge {i} ({left!r}, {right!r}) is not in the vocabulary")
        if result <= last:
            raise NotConvertible(
                f"merge {i} ({left!r}, {right!r}) makes id {result}, not above the "
                f"previous merge's {last}: merge order and id order differ"
            )
        made.add(left + right)
        last = result

    ranks, merged = {}, []
    for token, token_id in vocab.items():
        raw = token_bytes(token)
        if raw is not None and (len(raw) == 1 or token in made):
            ranks[raw] = token_id
            if len(raw) > 1:
                merged.append((token, token_id))
            continue
        # Not byte-level, or never made by a merge: HF can only emit it as an added
        # token, whose text it splits out before BPE; tiktoken's special_tokens do too.
        text = token if raw is None else raw.decode("utf-8", errors="replace")
        if added.get(token_id) != text:
            raise NotConvertible(f"vocabulary entry {token!r} is not the result of any merge")
    return ranks, merged


def _check_entries_encode_to_themselves(spec: dict, merged: list[tuple[str, int]]) -> None:
    """HF's merges must turn each entry's bytes back into that entry.

    Runs HF's own BPE (the model alone, ``ignore_merges`` off: no pre-tokenizer, no
    added tokens) over every multi-byte entry, one pre-tokenized word each.
    """
    from tokenizers import Tokenizer

    bare = {**spec, "model": {**spec["model"], "ignore_merges": False}}
    bare.update(normalizer=None, pre_tokenizer=None, post_processor=None, decoder=None)
    bare.update(added_tokens=[], truncation=None, padding=None)
    model_only = Tokenizer.from_str(json.dumps(bare))
    words = [token for token, _ in merged]
    got = model_only.encode(words, is_pretokenized=True, add_special_tokens=False).ids
    if got == [token_id for _, token_id in merged]:
        return
    for token, token_id in merged:
        ids = model_only.encode([token], is_pretokenized=True, add_special_tokens=False).ids
        if ids != [token_id]:
            raise NotConvertible(
                f"HF's merges turn vocabulary entry {token!r} (id {token_id}) into "
                f"{ids}, not itself"
            )


def encode_batch(encoding: tiktoken.Encoding, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``texts`` as one flat ``uint32`` array and per-text lengths.

    Added tokens in the text become their ids, as in HF's ``encode``. Per-text
    ``encode_to_numpy`` beat ``encode_batch(num_threads=1)`` and plain ``encode``
    per CPU-second in benchmarks/tokenization.py.
    """
    allowed = encoding.special_tokens_set
    arrays = [
        encoding.encode_to_numpy(text, allowed_special=allowed, disallowed_special=())
        for text in texts
    ]
    lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.uint32)
    return flat.astype(np.uint32, copy=False), lengths
