"""The tokenize engines against Hugging Face ``tokenizers`` (the oracle).

Every engine that ``open_engine`` accepts for a tokenizer must give HF's ids on real
documents, adversarial strings and random code points that are not in its probe
(another seed); the probe must refuse engines that differ; and the stage writes
identical bytes whatever engine it runs.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from test_fast_bpe import train_bpe
from test_runner import pipeline, tree_bytes
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from tokenizers.processors import TemplateProcessing

from winnow.demo import build_corpus, train_demo_tokenizer
from winnow.errors import ConfigError
from winnow.fast_bpe import CL100K_PATTERN
from winnow.pipeline import parse_pipeline
from winnow.runners.local import run_pipeline
from winnow.sample_text import real_documents
from winnow.stages.tokenize import Tokenize
from winnow.tokenize_engines import (
    ADVERSARIAL,
    NotExact,
    check_exact,
    choose,
    hf_encoder,
    open_engine,
    probe_texts,
    random_strings,
    split,
)

EOT = "<|endoftext|>"
ENGINES = ("fastokens", "tokie", "tiktoken")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    extra = [f"special {EOT} in the middle {EOT}{EOT} and partial <|endoftext| <|endof", EOT]
    extra += ["<|im_start|>user<sep>winnow-added" + EOT, "winnow-addedwinnow-added<sep>"]
    real = [d["text"] for d in real_documents(400)]
    return real + [*ADVERSARIAL, *extra] + random_strings(400, seed=1)


def bpe(texts, pre_tokenizer, normalizer=None, **model) -> Tokenizer:
    tok = train_bpe(texts[:800], pre_tokenizer, **model)
    if normalizer is not None:
        tok.normalizer = normalizer
    return tok


def byte_level(**kw):
    return pre_tokenizers.ByteLevel(add_prefix_space=False, **kw)


def build(kind: str, texts: list[str]) -> Tokenizer:
    """Offline stand-ins for real tokenizer families, trained on the test texts."""
    if kind == "gpt2":
        return bpe(texts, byte_level())
    if kind == "llama3":
        split_re = pre_tokenizers.Split(Regex(CL100K_PATTERN), behavior="isolated")
        pre = pre_tokenizers.Sequence([split_re, byte_level(use_regex=False)])
        return bpe(texts, pre, ignore_merges=True)
    if kind == "neox_nfc":  # GPT-NeoX / Pythia: byte-level BPE behind an NFC normalizer
        return bpe(texts, byte_level(), normalizers.NFC())
    if kind == "nfkc":
        return bpe(texts, byte_level(), normalizers.NFKC())
    if kind == "byte_fallback":  # Llama-2 / Mistral style: sentencepiece-like BPE
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        specials = ["<unk>", "<s>", "</s>", *(f"<0x{i:02X}>" for i in range(256))]
        trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=specials, show_progress=False)
        tok.train_from_iterator(texts[:800], trainer)
        return tok
    if kind == "wordpiece":  # BERT
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer()
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        specials = ["[UNK]", "[CLS]", "[SEP]"]
        trainer = trainers.WordPieceTrainer(
            vocab_size=3000, special_tokens=specials, show_progress=False
        )
        tok.train_from_iterator(texts[:800], trainer)
        return tok
    if kind == "unigram":  # T5 / sentencepiece unigram
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=3000,
            special_tokens=["<unk>", "</s>"],
            unk_token="<unk>",
            show_progress=False,
        )
        tok.train_from_iterator(texts[:400], trainer)  # real text: Unigram needs every char
        return tok
    raise AssertionError(kind)


KINDS = ("gpt2", "llama3", "neox_nfc", "nfkc", "byte_fallback", "wordpiece", "unigram")


@pytest.fixture(scope="module")
def tokenizers(texts) -> dict[str, Tokenizer]:
    return {kind: build(kind, texts) for kind in KINDS}


def hf_ids(tok: Tokenizer, texts: list[str], special: bool = False) -> list[list[int]]:
    return [tok.encode(t, add_special_tokens=special).ids for t in texts]


def accepted(tok: Tokenizer, special: bool = False) -> dict[str, object]:
    out = {}
    for name in ENGINES:
        try:
            out[name] = open_engine(name, tok, special).encode
        except NotExact:
            pass
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_accepted_engines_match_hf(tokenizers, texts, kind):
    tok = tokenizers[kind]
    want = hf_ids(tok, texts)
    engines = accepted(tok)
    for name, encode in engines.items():
        assert split(*encode(texts)) == want, f"{name} accepted for {kind} but differs"
    choice, _ = choose("auto", tok)
    assert split(*choice.encode(texts)) == want
    # The fast path is there for the families where fastokens supports the format.
    if kind in ("gpt2", "llama3", "neox_nfc", "byte_fallback"):
        assert "fastokens" in engines and choice.engine == "fastokens"


def test_added_and_special_tokens(tokenizers, texts):
    tok = Tokenizer.from_str(tokenizers["neox_nfc"].to_str())
    tok.add_tokens(["winnow-added", "<sep>"])
    tok.add_special_tokens(["<|im_start|>"])
    want = hf_ids(tok, texts)
    chat = want[texts.index("<|im_start|>user<sep>winnow-added" + EOT)]
    assert tok.token_to_id("<|im_start|>") in chat and tok.token_to_id("<sep>") in chat
    engines = accepted(tok)
    assert "fastokens" in engines
    for encode in engines.values():
        assert split(*encode(texts)) == want


def test_post_processor_with_add_special_tokens(tokenizers, texts):
    tok = Tokenizer.from_str(tokenizers["gpt2"].to_str())
    tok.post_processor = TemplateProcessing(single=f"{EOT} $A", special_tokens=[(EOT, 0)])
    want = hf_ids(tok, texts, special=True)
    assert all(ids[0] == 0 for ids in want)
    engines = accepted(tok, special=True)
    assert "tiktoken" not in engines  # the conversion cannot add the template
    for encode in engines.values():
        assert split(*encode(texts)) == want


def test_probe_refuses_an_encoder_that_differs(tokenizers):
    """NFKC where the tokenizer has NFC: they agree on plain text, the probe tells them apart."""
    nfc = tokenizers["neox_nfc"]
    spec = json.loads(nfc.to_str())
    spec["normalizer"] = {"type": "NFKC"}
    nfkc_encode = hf_encoder(Tokenizer.from_str(json.dumps(spec)), False)
    plain = ["plain ascii text, nothing to fold", "more of it"]
    check_exact(nfkc_encode, nfc, False, plain)  # agrees here
    with pytest.raises(NotExact, match="differ from HF's on the probe text"):
        check_exact(nfkc_encode, nfc, False, probe_texts(nfc))


def test_probe_covers_added_tokens_and_vocabulary(tokenizers):
    tok = tokenizers["gpt2"]
    probe = probe_texts(tok)
    assert any(EOT in t and t != EOT for t in probe)
    assert len(probe) == len(set(probe)) or len(probe) > 600
    assert probe == probe_texts(tok)  # deterministic


def test_unloadable_engine_gives_reason(tokenizers):
    with pytest.raises(NotExact, match="fastokens cannot load it"):
        open_engine("fastokens", tokenizers["nfkc"])
    with pytest.raises(NotExact, match="not BPE"):
        open_engine("tiktoken", tokenizers["wordpiece"])
    _, skipped = choose("auto", tokenizers["wordpiece"])
    assert set(skipped) >= {"fastokens", "tiktoken"}


# -- the stage -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_tokenizer(tmp_path_factory):
    """The demo's own tokenizer, built the way ``winnow demo`` builds it."""
    out = tmp_path_factory.mktemp("demo")
    build_corpus(out, docs=300)
    return out, train_demo_tokenizer(out)


def run_tokenize(root, out: str, tokenizer: str, workers: int = 1, **params):
    stages = [{"id": "tok", "use": "tokenize", "params": {"tokenizer": tokenizer, **params}}]
    spec = pipeline(root, out=out, stages=stages, input={"path": str(root / "input")})
    return run_pipeline(parse_pipeline(spec), workers=workers, progress=False)


def test_stage_engines_write_identical_bytes(demo_tokenizer):
    root, tok_path = demo_tokenizer
    names = ("hf", "tiktoken", "fastokens", "tokie")
    ledgers = {e: run_tokenize(root, e, str(tok_path), engine=e) for e in names}
    ledgers["auto"] = run_tokenize(root, "auto", str(tok_path), workers=2)  # setup in workers
    hf = tree_bytes(root / "hf", "data")
    assert hf
    for name in (*names, "auto"):
        assert tree_bytes(root / name, "data") == hf, name
    kept = ledgers["hf"].stages["tok"].kept
    for name in names:
        assert ledgers[name].stages["tok"].stats[f"docs_{name}"] == kept
    assert ledgers["auto"].stages["tok"].stats["docs_fastokens"] == kept


def test_stage_engine_not_exact_is_a_clear_error(tokenizers, tmp_path):
    tokenizers["nfkc"].save(str(tmp_path / "nfkc.json"))
    for engine in ("tiktoken", "fastokens"):
        params = Tokenize.Params(tokenizer=str(tmp_path / "nfkc.json"), engine=engine)
        with pytest.raises(ConfigError, match=rf"tok\.params\.engine: {engine} cannot encode"):
            Tokenize(params, stage_id="tok", seed=0).setup()
    auto = Tokenize(Tokenize.Params(tokenizer=str(tmp_path / "nfkc.json")), stage_id="t", seed=0)
    auto.setup()
    table = pa.table({"id": ["a"], "text": ["Ｈｅｌｌｏ ① World"]})
    expected = tokenizers["nfkc"].encode("Ｈｅｌｌｏ ① World").ids + [0]
    assert auto.process(table).kept.column("tokens").to_pylist() == [expected]
