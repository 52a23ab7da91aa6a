"""Encoders that give exactly the ids of Hugging Face ``tokenizers``, and how to pick one.

Every engine turns a list of texts into one flat ``uint32`` id array and per-text
lengths, equal to ``Tokenizer.encode(text, add_special_tokens=...)`` for each text:

* ``hf``: ``tokenizers`` itself (``encode_batch_fast``): the oracle, always exact.
* ``tiktoken``: the conversion of ``winnow.fast_bpe``, *proven* exact for the
  byte-level BPEs it accepts (no normalizer, known split regexes; see its docstring).
* ``fastokens`` and ``tokie``: native re-implementations of ``tokenizer.json``
  (Rust), 20-100x faster than HF per core. Neither comes with a proof, and each
  supports only part of the format (fastokens refuses NFKC and BERT normalizers;
  tokie loads more but differs from HF on some inputs), so winnow *checks* them:
  ``check_exact`` encodes ``probe_texts`` (adversarial strings, random code points,
  every added token in context and random runs of the tokenizer's own vocabulary)
  with the engine and with HF, and the engine is used only if every id agrees.

``choose`` gives the engine a ``tokenize`` stage uses: the one requested (an error,
with the reason, if it is not exact for this tokenizer), or for ``auto`` the fastest
one that is proven or checked exact: fastokens, tokie, tiktoken, then HF. A probe
check is evidence, not proof; tests/test_tokenize_engines.py compares every engine
with HF on real, adversarial and random text for GPT-2, Llama-3, GPT-NeoX (NFC),
byte-fallback, WordPiece and Unigram tokenizers.
"""

from __future__ import annotations

import itertools
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

EngineName = Literal["hf", "tiktoken", "fastokens", "tokie"]
AUTO_ORDER: tuple[EngineName, ...] = ("fastokens", "tokie", "tiktoken")
"""Engines ``auto`` tries, fastest first (benchmarks/tokenization.py); HF is the fallback."""

Encode = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]

ADVERSARIAL = (
    "",
    " ",
    "a",
    "\r\n",
    "line one\r\nline two\r\n\r\n",
    " " * 1000 + "x" + "\t" * 300 + "\n" * 50,
    "trailing spaces   ",
    "    leading",
    "naïve café, résumé; Ångström; ﬁ ligature; straße; Ǆ ǅ ǆ; ① ⑴ ㎏ ℌ",
    "e\u0301 a\u0308\u0304 combining marks: \u0915\u094d\u0937\u093f",  # Devanagari cluster
    "Å vs A\u030a, ñ vs n\u0303, 한 vs \u1112\u1161\u11ab (NFC composes, NFKC folds)",
    "日本語のテキストと中文文本，한국어 텍스트。ｆｕｌｌｗｉｄｔｈ ｶﾀｶﾅ",
    "emoji 🙂🙂🙂 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 skin 👍🏽",
    "العربية مع أرقام ١٢٣ and עברית",
    "ภาษาไทยไม่มีช่องว่าง",
    "digits 1234567890 3.14159 1,000,000 ²³ ½ Ⅻ ٣٤٥ ๑๒๓",
    "I'm can't WE'LL they've she'd it's O'Neil 'quoted' I'M DON'T",
    "tabs\tand\vvertical\fform feed\x00nul\x1bescape\x7fdel",
    "unicode spaces:\u00a0nbsp\u2009thin\u3000ideographic\u2028line\u2029para\u0085nel",
    "zero width:\u200b\u200c\u200d\ufeff and mongolian\u180esep",
    "a" * 5000,
    "ab" * 2000,
    "🙂" * 300,
    "\U0001f600\U0010fffd\U000e0001 private and tag characters \ue000",
    "code: def f(x):\n    return {'k': [1, 2, 3]}  # comment\n",
    "    indented\n\n\n\tmixed \t \n whitespace \u00a0\n",
    "<|endoftext|> <s></s> [CLS] [SEP] <unk> <0x41> ▁word ##piece Ġspace",
)
"""Strings that stress pre-tokenizers, normalizers and byte handling."""


def random_strings(n: int, seed: int = 0) -> list[str]:
    """Random code points from many blocks (no surrogates), deterministic."""
    return list(_random_strings(n, seed))


@lru_cache(maxsize=8)
def _random_strings(n: int, seed: int) -> tuple[str, ...]:
    rng = random.Random(seed)
    blocks = [(0x20, 0x7F), (0xA0, 0x250), (0x300, 0x370), (0x400, 0x500), (0x900, 0x980)]
    blocks += [(0x3000, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0x1F300, 0x1F700)]
    blocks += [(0x2000, 0x2070), (0x9, 0xE), (0xFF00, 0xFFF0), (0x1100, 0x1200)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 60)):
            lo, hi = rng.choice(blocks)
            chars.append(chr(rng.randrange(lo, hi)))
        out.append("".join(chars))
    return tuple(out)


def probe_texts(tokenizer: Tokenizer, n_random: int = 300, seed: int = 0) -> list[str]:
    """The exactness probe for ``tokenizer``: fixed adversarial strings, random code
    points, each added token (up to 200) glued to text and to itself, and random runs
    of the tokenizer's decoded vocabulary entries (which exercise its merges)."""
    rng = random.Random(seed)
    texts = [*ADVERSARIAL, *random_strings(n_random, seed)]
    added = sorted(tokenizer.get_added_tokens_decoder().items())[:200]
    for _, token in added:
        t = token.content
        texts += [f"x{t}y {t}{t} {t}", f"{t[:-1]} {t[1:]} a{t}\n"]
    size = tokenizer.get_vocab_size(with_added_tokens=False)
    for _ in range(n_random):
        ids = [rng.randrange(size) for _ in range(rng.randint(1, 12))]
        sep = rng.choice(["", " ", "\n", ""])
        texts.append(sep.join(tokenizer.decode([i]) for i in ids))
    return texts


class NotExact(Exception):
    """An engine cannot (or did not) reproduce HF's ids for a tokenizer; says why."""


def hf_encoder(tokenizer: Tokenizer, add_special_tokens: bool) -> Encode:
    """``tokenizers`` itself: the oracle."""
    encode_fast = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)

    def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [e.ids for e in encode_fast(texts, add_special_tokens=add_special_tokens)]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.uint32, int(lengths.sum()))
        return flat, lengths

    return encode


def tiktoken_encoder(tokenizer: Tokenizer, add_special_tokens: bool) -> Encode:
    """The proven tiktoken conversion of ``winnow.fast_bpe``."""
    from winnow.fast_bpe import encode_batch, to_tiktoken

    conversion = to_tiktoken(tokenizer, add_special_tokens=add_special_tokens)
    if conversion.encoding is None:
        raise NotExact(conversion.reason)
    return lambda texts: encode_batch(conversion.encoding, texts)


def fastokens_encoder(tokenizer: Tokenizer, add_special_tokens: bool) -> Encode:
    """fastokens' flat batch encode (ids as one little-endian uint32 buffer)."""
    try:
        import fastokens
    except ImportError:
        raise NotExact("fastokens is not installed (pip install 'winnow[tokenize]')") from None
    try:
        native = fastokens.Tokenizer.from_json_str(tokenizer.to_str())
    except Exception as exc:  # fastokens raises ValueError for unsupported parts
        raise NotExact(f"fastokens cannot load it: {exc}") from None

    def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, offsets = native.encode_batch_flat(texts, add_special_tokens=add_special_tokens)
        lengths = np.diff(np.frombuffer(offsets, np.uint64)).astype(np.int64)
        return np.frombuffer(ids, np.uint32), lengths

    return encode


def tokie_encoder(tokenizer: Tokenizer, add_special_tokens: bool) -> Encode:
    """tokie's batch encode (it loads ``tokenizer.json`` from a file only)."""
    try:
        import tokie
    except ImportError:
        raise NotExact("tokie is not installed (pip install 'winnow[tokenize]')") from None
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tokenizer.to_str())
        native = tokie.Tokenizer.from_json(path)
    except Exception as exc:  # tokie raises TokieError / ValueError
        raise NotExact(f"tokie cannot load it: {exc}") from None
    finally:
        os.unlink(path)

    def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [e.ids for e in native.encode_batch(texts, add_special_tokens=add_special_tokens)]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.concatenate([np.asarray(i, np.uint32) for i in ids]) if ids else np.zeros(0)
        return flat.astype(np.uint32, copy=False), lengths

    return encode


ENCODERS: dict[EngineName, Callable[[Tokenizer, bool], Encode]] = {
    "hf": hf_encoder,
    "tiktoken": tiktoken_encoder,
    "fastokens": fastokens_encoder,
    "tokie": tokie_encoder,
}


def split(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """Per-text id lists from an engine's flat output."""
    ends = np.cumsum(lengths)
    return [flat[e - n : e].tolist() for e, n in zip(ends, lengths, strict=True)]


def check_exact(
    encode: Encode, tokenizer: Tokenizer, add_special_tokens: bool, texts: list[str]
) -> None:
    """Raise ``NotExact`` naming the first text whose ids differ from HF's."""
    want = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)]
    got = split(*encode(texts))
    for text, a, b in zip(texts, got, want, strict=True):
        if a != b:
            raise NotExact(f"its ids differ from HF's on the probe text {text[:40]!r}")


@dataclass(frozen=True)
class Choice:
    """The engine a stage uses, its encoder, and how its exactness is known."""

    engine: EngineName
    encode: Encode
    reason: str


def open_engine(name: EngineName, tokenizer: Tokenizer, add_special_tokens: bool = False) -> Choice:
    """``name``'s encoder for ``tokenizer`` once it is known exact; else ``NotExact``."""
    encode = ENCODERS[name](tokenizer, add_special_tokens)
    if name == "hf":
        return Choice(name, encode, "the reference")
    if name == "tiktoken":
        return Choice(name, encode, "proven exact by winnow.fast_bpe")
    check_exact(encode, tokenizer, add_special_tokens, probe_texts(tokenizer))
    return Choice(name, encode, "checked exact on the probe texts")


def choose(
    requested: EngineName | Literal["auto"], tokenizer: Tokenizer, add_special_tokens: bool = False
) -> tuple[Choice, dict[str, str]]:
    """The engine to use and, for ``auto``, why each faster one was passed over."""
    if requested != "auto":
        return open_engine(requested, tokenizer, add_special_tokens), {}
    skipped = {}
    for name in AUTO_ORDER:
        try:
            return open_engine(name, tokenizer, add_special_tokens), skipped
        except NotExact as exc:
            skipped[name] = str(exc)
    return open_engine("hf", tokenizer, add_special_tokens), skipped
