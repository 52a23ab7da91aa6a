"""The tiktoken conversion: ids equal to Hugging Face ``tokenizers`` (the oracle) on real
and adversarial text, and refusals with reasons (the stage's engines are tested in
tests/test_tokenize_engines.py)."""

from __future__ import annotations

import json
import random

import pytest
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing

from winnow.demo import build_corpus, train_demo_tokenizer
from winnow.fast_bpe import CL100K_PATTERN, byte_to_char, encode_batch, to_tiktoken
from winnow.sample_text import real_documents
from winnow.tokenize_engines import ADVERSARIAL, random_strings

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    extra = [f"special {EOT} in the middle {EOT}{EOT} and partial <|endoftext| <|endof", EOT]
    extra.append("hello winnow-added world<sep>again")
    return [d["text"] for d in real_documents(400)] + [*ADVERSARIAL, *extra] + random_strings(400)


def train_bpe(texts: list[str], pre_tokenizer, vocab: int = 3000, **model) -> Tokenizer:
    tok = Tokenizer(models.BPE(**model))
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOT, "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


@pytest.fixture(scope="module")
def gpt2_style(texts) -> Tokenizer:
    return train_bpe(texts, pre_tokenizers.ByteLevel(add_prefix_space=False))


@pytest.fixture(scope="module")
def llama3_style(texts) -> Tokenizer:
    split = pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    pre = pre_tokenizers.Sequence([split, byte_level])
    return train_bpe(texts, pre, ignore_merges=True)


@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory):
    """The demo's own tokenizer, built the way ``winnow demo`` builds it."""
    out = tmp_path_factory.mktemp("demo")
    build_corpus(out, docs=300)
    return out, train_demo_tokenizer(out)


def copy_with(tok: Tokenizer, change) -> Tokenizer:
    """A tokenizer from ``tok``'s JSON after ``change(spec)``."""
    spec = json.loads(tok.to_str())
    change(spec)
    return Tokenizer.from_str(json.dumps(spec))


def hf_ids(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [tok.encode(t, add_special_tokens=False).ids for t in texts]


def tiktoken_ids(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    conversion = to_tiktoken(tok)
    assert conversion.encoding is not None, conversion.reason
    flat, lengths = encode_batch(conversion.encoding, texts)
    ends = lengths.cumsum()
    return [flat[e - n : e].tolist() for e, n in zip(ends, lengths, strict=True)]


def test_gpt2_style_matches_hf(gpt2_style, texts):
    assert tiktoken_ids(gpt2_style, texts) == hf_ids(gpt2_style, texts)
    assert tiktoken_ids(gpt2_style, [EOT])[0] == [gpt2_style.token_to_id(EOT)]


def test_llama3_style_split_matches_hf(llama3_style, texts):
    assert tiktoken_ids(llama3_style, texts) == hf_ids(llama3_style, texts)


def test_ignore_merges_flag_does_not_change_ids(gpt2_style, texts):
    flagged = copy_with(gpt2_style, lambda s: s["model"].update(ignore_merges=True))
    assert hf_ids(flagged, texts) == hf_ids(gpt2_style, texts)
    assert tiktoken_ids(flagged, texts) == hf_ids(flagged, texts)


def test_demo_tokenizer_matches_hf(demo_tokenizer, texts):
    tok = Tokenizer.from_file(str(demo_tokenizer[1]))
    assert tiktoken_ids(tok, texts) == hf_ids(tok, texts)


def test_added_tokens_special_and_not(gpt2_style, texts):
    tok = Tokenizer.from_str(gpt2_style.to_str())
    tok.add_tokens(["winnow-added", "<sep>"])  # normal (non-special) added tokens
    tok.add_special_tokens(["<|im_start|>"])
    more = texts + ["<|im_start|>user<sep>winnow-added" + EOT, "winnow-addedwinnow-added"]
    ids = hf_ids(tok, more)
    assert tok.token_to_id("<sep>") in ids[-2] and tok.token_to_id("<|im_start|>") in ids[-2]
    assert tiktoken_ids(tok, more) == ids


def test_large_vocabulary(texts):
    tok = train_bpe(texts * 3, pre_tokenizers.ByteLevel(add_prefix_space=False), 20000)
    assert tok.get_vocab_size() > 10000
    assert tiktoken_ids(tok, texts) == hf_ids(tok, texts)


def refusal(tok: Tokenizer, **kwargs) -> str:
    conversion = to_tiktoken(tok, **kwargs)
    assert conversion.encoding is None
    return conversion.reason


def test_refuses_other_models():
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    assert "WordPiece, not BPE" in refusal(wordpiece)
    unigram = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], 0))
    assert "Unigram, not BPE" in refusal(unigram)


def test_refuses_normalizer_and_byte_fallback(gpt2_style):
    tok = Tokenizer.from_str(gpt2_style.to_str())
    tok.normalizer = normalizers.Lowercase()
    assert "Lowercase normalizer" in refusal(tok)
    fallback = copy_with(gpt2_style, lambda s: s["model"].update(byte_fallback=True))
    assert "byte_fallback" in refusal(fallback)
    prefix = copy_with(gpt2_style, lambda s: s["pre_tokenizer"].update(add_prefix_space=True))
    assert "add_prefix_space" in refusal(prefix)


def test_refuses_merge_order_that_differs_from_id_order(gpt2_style, texts):
    """Swapping two merges changes HF's ids, so ranks by id would be wrong."""

    def swap(spec):
        merges = spec["model"]["merges"]
        merges[5], merges[300] = merges[300], merges[5]

    shuffled = copy_with(gpt2_style, swap)
    assert hf_ids(shuffled, texts) != hf_ids(gpt2_style, texts)
    assert "merge order and id order differ" in refusal(shuffled)


def test_refuses_entry_that_merges_do_not_rebuild():
    """Ids rise along the merges, yet HF turns "abc" into [a, bc] (b+c comes first)
    while tiktoken, merging any split in the vocabulary, would give [abc]."""
    vocab = {c: b for b, c in byte_to_char().items()} | {"bc": 256, "ab": 257, "abc": 258}
    tok = Tokenizer(models.BPE(vocab, [("b", "c"), ("a", "b"), ("ab", "c")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert tok.encode("abc").ids == [ord("a"), 256]
    assert "'abc' (id 258) into [97, 256], not itself" in refusal(tok)


def test_refuses_splits_and_added_tokens_it_cannot_mirror(gpt2_style):
    letters = Tokenizer.from_str(gpt2_style.to_str())
    split = pre_tokenizers.Split(Regex(r"\p{L}+"), behavior="isolated")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    letters.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    assert "not a known covering pattern" in refusal(letters)
    tok = Tokenizer.from_str(gpt2_style.to_str())
    tok.add_tokens(["<sep>", "<sep>x"])
    assert "is a prefix of" in refusal(tok)

    def lstrip(spec):
        spec["added_tokens"][0]["lstrip"] = True

    assert "has lstrip" in refusal(copy_with(gpt2_style, lstrip))


def test_post_processor_that_adds_tokens_falls_back(gpt2_style):
    tok = Tokenizer.from_str(gpt2_style.to_str())
    tok.post_processor = TemplateProcessing(single=f"{EOT} $A", special_tokens=[(EOT, 0)])
    assert to_tiktoken(tok).encoding is not None  # add_special_tokens off: unused
    assert "post-processor adds tokens" in refusal(tok, add_special_tokens=True)


def random_merge_tokenizer(rng: random.Random, letters: str) -> Tokenizer:
    """A byte-level BPE whose merges are random pairs of earlier tokens (not trained)."""
    vocab = {c: b for b, c in byte_to_char().items()}
    merges, tokens = [], list(letters)
    for _ in range(rng.randint(3, 25)):
        a, b = rng.choice(tokens), rng.choice(tokens)
        if a + b not in vocab and len(a + b) <= 8:
            vocab[a + b] = len(vocab)
            merges.append((a, b))
            tokens.append(a + b)
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=rng.random() < 0.5))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tok


def test_random_merge_lists_are_exact_or_refused():
    """Arbitrary merge lists break tiktoken's merge-any-split rule often; every one the
    checks accept must still match HF on every string tried."""
    rng = random.Random(0)
    accepted = 0
    for _ in range(300):
        letters = rng.choice(["ab", "abc"])
        tok = random_merge_tokenizer(rng, letters)
        if to_tiktoken(tok).encoding is None:
            continue
        accepted += 1
        texts = ["".join(rng.choices(letters, k=rng.randint(0, 16))) for _ in range(300)]
        assert tiktoken_ids(tok, texts) == hf_ids(tok, texts)
    assert 50 < accepted < 250
