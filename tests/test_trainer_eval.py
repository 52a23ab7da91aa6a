"""Evaluation against brute-force references: sliding windows, document loss, bits per
byte, position buckets and multiple-choice cloze scoring."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from trainer_fixtures import cloze_task, real_docs, write_bucket_dir

from winnow.errors import InputError
from winnow.trainer.config import EvalConfig, parse_train_config
from winnow.trainer.data import BucketDataset, Document
from winnow.trainer.eval import (
    ByteTokenizer,
    choice_logprobs,
    evaluate,
    load_task,
    position_bin,
    score_documents,
    score_task,
    token_byte_table,
    windows,
)
from winnow.trainer.model import GPT, preset
from winnow.trainer.train import Trainer

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(preset("tiny", vocab_size=257, max_seq_len=64)).eval()


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = write_bucket_dir(tmp_path_factory.mktemp("b") / "buckets", real_docs(), (32, 64))
    return BucketDataset(root, val_fraction=0.1)


def test_windows_score_each_target_once_with_context():
    for width in (4, 7, 16):
        for n in range(1, 60):
            seen = []
            for start, end, first in windows(n, width):
                assert end - start <= width
                targets = list(range(start + first + 1, end))
                if start > 0:  # a later window gives every prediction >= width/2 context
                    assert first >= width // 2 - 1
                seen += targets
            assert seen == list(range(1, n))


def brute_force_losses(model, span, width):
    """Loss of each target t, computed alone: run the model on exactly the context the
    window rule gives t and take the last position's cross-entropy."""
    out = {}
    for start, end, first in windows(len(span), width):
        for t in range(start + first + 1, end):
            x = torch.as_tensor(span[start:t].astype(np.int64))[None]
            with torch.no_grad():
                logits = model(x)[0, -1]
            out[t] = float(F.cross_entropy(logits[None], torch.tensor([int(span[t])])))
    return out


def test_document_loss_bpb_and_positions_match_brute_force(model):
    rng = np.random.default_rng(0)
    docs = [
        Document(1, "a", [rng.integers(0, 257, 40).astype(np.uint16)]),
        Document(
            2,
            "b",
            [rng.integers(0, 256, 23).astype(np.uint16), rng.integers(0, 256, 9).astype(np.uint16)],
        ),
    ]
    table = np.r_[np.ones(256, np.int64), 0]  # bytes; EOS (256) has none
    res = score_documents(model, docs, eval_len=16, device=CPU, token_bytes=table)
    per_source, by_pos = {}, {}
    for doc in docs:
        for span in doc.spans:
            for t, loss in brute_force_losses(model, span, 16).items():
                start = max(s for s, e, f in windows(len(span), 16) if s + f + 1 <= t < e)
                nats, toks, nbytes = per_source.get(doc.source, (0.0, 0, 0))
                per_source[doc.source] = (nats + loss, toks + 1, nbytes + int(span[t] < 256))
                b = int(position_bin(np.array([t - 1 - start]))[0])
                by_pos.setdefault(b, []).append(loss)
    for source, (nats, toks, nbytes) in per_source.items():
        got = res["by_source"][source]
        assert got["tokens"] == toks and got["bytes"] == nbytes
        assert got["loss"] == pytest.approx(nats / toks, rel=1e-5)
        assert got["bpb"] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-5)
    assert res["all"]["tokens"] == 39 + 22 + 8 and res["all"]["docs"] == 2
    assert list(res["by_position"]) == ["0-63"]
    assert res["by_position"]["0-63"] == pytest.approx(np.mean(by_pos[0]), rel=1e-5)


def test_late_loss_counts_predictions_with_long_context(model):
    span = np.random.default_rng(1).integers(0, 256, 40).astype(np.uint16)
    res = score_documents(model, [Document(1, "a", [span])], 16, CPU, late_from=6)
    late = []
    for t, loss in brute_force_losses(model, span, 16).items():
        start = max(s for s, e, f in windows(len(span), 16) if s + f + 1 <= t < e)
        if t - 1 - start >= 6:  # the window position that predicts t
            late.append(loss)
    assert res["late"]["tokens"] == len(late) and res["late"]["from"] == 6
    assert res["late"]["loss"] == pytest.approx(np.mean(late), rel=1e-5)
    short = score_documents(model, [Document(1, "a", [span[:5]])], 16, CPU, late_from=6)
    assert short["late"] == {"from": 6, "loss": None, "tokens": 0}


def test_position_bins():
    assert list(position_bin(np.array([0, 63, 64, 127, 128, 255, 256, 8191]))) == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        7,
    ]


def test_token_byte_tables(ds, tmp_path):
    table = token_byte_table("auto", ds)  # vocab 257 with EOS 256: the byte convention
    assert table[:256].tolist() == [1] * 256 and table[256] == 0
    custom = np.arange(257)
    np.save(ds.root / "token_bytes.npy", custom)
    try:
        assert token_byte_table("auto", ds).tolist() == custom.tolist()
    finally:
        (ds.root / "token_bytes.npy").unlink()
    with pytest.raises(InputError, match="token byte table not found"):
        token_byte_table(str(tmp_path / "none.npy"), ds)


def test_byte_level_bpe_byte_table_is_exact(ds, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    docs = [d["text"] for d in real_docs()]
    tok.train_from_iterator(docs, trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    table = token_byte_table(str(path), ds)
    assert table[tok.token_to_id("<|endoftext|>")] == 0
    for text in docs[:50] + ["naïve café — ünïcode ✓"]:
        ids = tok.encode(text).ids
        assert table[ids].sum() == len(text.encode("utf-8"))
    # auto: the tokenizer the manifest names
    manifest = json.loads((ds.root / "manifest.json").read_text())
    ds.manifest = {**manifest, "tokenizer": str(path)}
    try:
        assert token_byte_table("auto", ds).tolist() == table.tolist()
    finally:
        ds.manifest = manifest


def test_choice_logprobs_match_brute_force(model, tmp_path):
    item = {
        "prompt": "The cat sat on the",
        "choices": ["mat", "idea", "x"],
        "gold": 0,
        "delimiter": " ",
    }
    got = choice_logprobs(model, ByteTokenizer(), item, max_len=64, device=CPU)
    for choice, lp in zip(item["choices"], got, strict=True):
        ids = list(("The cat sat on the " + choice).encode())
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids]))[0], -1)
        n = len(choice.encode()) + 1  # the delimiter belongs to the continuation
        ref = sum(float(logp[i - 1, ids[i]]) for i in range(len(ids) - n, len(ids)))
        assert lp == pytest.approx(ref, rel=1e-4, abs=1e-4)
    # the prompt is cut from the left to fit the window
    short = choice_logprobs(model, ByteTokenizer(), item, max_len=8, device=CPU)
    assert all(np.isfinite(short))


def test_task_files_and_accuracy(model, tmp_path):
    path = cloze_task(tmp_path / "cloze.jsonl", real_docs(), n=6)
    items = load_task(path)
    assert len(items) == 6 and all(len(i["choices"]) == 3 for i in items)
    res = score_task(model, ByteTokenizer(), items, 64, CPU)
    expected = np.mean(
        [np.argmax(choice_logprobs(model, ByteTokenizer(), i, 64, CPU)) == i["gold"] for i in items]
    )
    assert res["acc"] == expected and res["n"] == 6
    # continuous scores: per-byte log-probability of the gold choice, and its softmax
    # share among the choices' per-byte scores
    lpb, prob = [], []
    for i in items:
        lp = choice_logprobs(model, ByteTokenizer(), i, 64, CPU)
        per_byte = np.array([v / len(c.encode()) for v, c in zip(lp, i["choices"], strict=True)])
        lpb.append(per_byte[i["gold"]])
        prob.append(np.exp(per_byte[i["gold"]]) / np.exp(per_byte).sum())
    assert res["gold_lpb"] == pytest.approx(np.mean(lpb), rel=1e-6)
    assert res["gold_prob"] == pytest.approx(np.mean(prob), rel=1e-6)
    assert 0 < res["gold_prob"] < 1
    alt = tmp_path / "alt.jsonl"
    alt.write_text(json.dumps({"context": "a", "endings": ["b", "c"], "label": 1}) + "\n")
    assert load_task(alt)[0]["gold"] == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "choices": ["a"], "gold": 0}\n{"query": "q"}\n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        load_task(bad)


def test_trained_model_prefers_real_text(ds, tmp_path):
    task = cloze_task(tmp_path / "cloze.jsonl", real_docs()[40:], n=24, seed=1)
    cfg = parse_train_config(
        {
            "out": str(tmp_path / "run"),
            "data": {"path": str(ds.root), "val_fraction": 0.1},
            "train": {"steps": 40, "tokens_per_step": 1024, "threads": 1},
            "optim": {"warmup_steps": 4},
            "eval": {"tasks": [str(task)], "max_docs_per_source": 4},
        }
    )
    res = Trainer(cfg).run()
    assert res["eval"]["tasks"]["cloze"]["acc"] >= 0.75  # chance is 1/3
    again = evaluate(
        GPT(preset("tiny", vocab_size=257, max_seq_len=64)),
        ds,
        EvalConfig(tasks=[str(task)], max_docs_per_source=4),
        64,
        CPU,
    )
    assert again["heldout"]["all"]["loss"] > res["eval"]["heldout"]["all"]["loss"] + 1.0
