"""The training loop: schedules, learning, resume, configs, manifests, compile."""

import argparse
import json
import math
import os
import socket

import numpy as np
import pytest
import torch
from trainer_fixtures import real_docs, write_bucket_dir

from winnow.errors import ConfigError
from winnow.trainer.config import OptimConfig, load_train_config, parse_train_config
from winnow.trainer.optim import lr_at
from winnow.trainer.train import Trainer, add_train_args, cli_train, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bucket_dir(tmp_path_factory):
    return write_bucket_dir(
        tmp_path_factory.mktemp("b") / "buckets", real_docs(), (32, 64, 128, 256)
    )


def config(bucket_dir, out, **sections):
    data = {
        "out": str(out),
        "data": {"path": str(bucket_dir), "val_fraction": 0.1},
        "train": {"steps": 12, "tokens_per_step": 1024, "threads": 1},
        "eval": {"max_docs_per_source": 4},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return parse_train_config(data)


def read_log(out):
    return [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]


def test_lr_schedules():
    cos = OptimConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, schedule="cosine")
    assert lr_at(0, 100, cos) == pytest.approx(0.1) and lr_at(9, 100, cos) == 1.0
    assert lr_at(10, 100, cos) == 1.0 and lr_at(100, 100, cos) == pytest.approx(0.1)
    assert lr_at(55, 100, cos) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway down the cosine
    wsd = OptimConfig(lr=1.0, min_lr_ratio=0.0, warmup_steps=0, schedule="wsd", decay_fraction=0.2)
    assert [lr_at(s, 100, wsd) for s in (0, 50, 80)] == [1.0, 1.0, 1.0]
    assert lr_at(90, 100, wsd) == pytest.approx(0.5) and lr_at(100, 100, wsd) == 0.0


def test_training_learns_and_logs(bucket_dir, tmp_path):
    cfg = config(
        bucket_dir,
        tmp_path / "run",
        train={"steps": 30, "eval_every": 15},
        optim={"warmup_steps": 5},
    )
    res = train(cfg)
    log = read_log(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(1, 31))
    assert all(r["bucket"] * r["batch_size"] == 1024 for r in log)  # constant tokens per step
    assert len({r["bucket"] for r in log}) > 1 and log[-1]["tokens"] == 30 * 1024
    assert math.log(257) - 0.3 < log[0]["loss"]  # starts near uniform ...
    assert np.mean([r["loss"] for r in log[-5:]]) < log[0]["loss"] - 1.5  # ... and learns
    assert "val_loss" in log[14] and "val_loss" in log[29] and "val_loss" not in log[0]
    held = res["eval"]["heldout"]
    assert held["all"]["loss"] < math.log(257) - 1.5
    assert set(held["by_source"]) == {"docstring", "package"}
    assert held["all"]["bpb"] == pytest.approx(
        held["all"]["loss"] * held["all"]["tokens"] / held["all"]["bytes"] / math.log(2)
    )
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["config"]["train"]["steps"] == 30 and man["data"]["fingerprint"] == res["data_hash"]
    assert man["versions"]["torch"] == torch.__version__ and man["precision"] == "fp32"
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 30


def test_resume_reproduces_the_uninterrupted_curve(bucket_dir, tmp_path):
    sections = {
        "train": {"steps": 14, "ckpt_every": 5},
        "optim": {"z_loss": 1e-4, "warmup_steps": 3},
    }
    train(config(bucket_dir, tmp_path / "full", **sections))
    interrupted = config(bucket_dir, tmp_path / "cut", **sections)
    assert train(interrupted, halt_after=7) is None  # checkpoint at 5, log runs on to 7
    assert len(read_log(tmp_path / "cut")) == 7
    (tmp_path / "cut" / ".ckpt.pt.tmp-999").write_bytes(b"half-written")  # a crash mid-save
    train(interrupted)
    full, resumed = read_log(tmp_path / "full"), read_log(tmp_path / "cut")
    assert [r["step"] for r in resumed] == list(range(1, 15))
    for a, b in zip(full, resumed, strict=True):
        assert a["bucket"] == b["bucket"]
        assert abs(a["loss"] - b["loss"]) < 1e-4
    man = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert man["resumed_at_step"] == 5
    # running a finished run again returns its results without training or rescoring
    before = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert train(interrupted) == before and len(read_log(tmp_path / "cut")) == 14
    # a changed config refuses to resume, naming what changed
    changed = config(
        bucket_dir, tmp_path / "cut", train={"steps": 14, "ckpt_every": 5}, optim={"lr": 1e-3}
    )
    with pytest.raises(ConfigError, match="optim.lr"):
        train(changed)


def test_concat_mode_and_micro_batches(bucket_dir, tmp_path):
    cfg = config(
        bucket_dir,
        tmp_path / "concat",
        data={"mode": "concat", "concat_len": 128},
        train={"steps": 4, "micro_batch_tokens": 256},
    )
    train(cfg)
    log = read_log(tmp_path / "concat")
    assert {r["bucket"] for r in log} == {128} and {r["batch_size"] for r in log} == {8}
    # gradient accumulation over micro-batches gives the same step as one big batch
    whole = Trainer(config(bucket_dir, tmp_path / "a", train={"steps": 1}))
    split = Trainer(
        config(bucket_dir, tmp_path / "b", train={"steps": 1, "micro_batch_tokens": 128})
    )
    batch = whole.loader.next()
    la = whole._forward_backward(batch.tokens, batch.global_batch)
    lb = split._forward_backward(batch.tokens, batch.global_batch)
    assert float(la) == pytest.approx(float(lb), rel=1e-5)
    for pa, pb in zip(whole.model.parameters(), split.model.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-6)


def test_config_errors_name_the_key(bucket_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"optim\.lr_max: unknown key"):
        parse_train_config({"out": "x", "data": {"path": "p"}, "optim": {"lr_max": 1}})
    with pytest.raises(ConfigError, match=r"data\.curriculum: .*grow_p2"):
        parse_train_config({"out": "x", "data": {"path": "p", "curriculum": "grow"}})
    with pytest.raises(ConfigError, match=r"model\.preset"):
        parse_train_config({"out": "x", "data": {"path": "p"}, "model": {"preset": "big"}})
    with pytest.raises(ConfigError, match=r"train\.tokens_per_step"):
        Trainer(config(bucket_dir, tmp_path / "x", train={"tokens_per_step": 128}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("out: x\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml:3: invalid YAML"):
        load_train_config(bad)


def test_cli_train_with_overrides(bucket_dir, tmp_path, capsys):
    path = tmp_path / "train.yaml"
    path.write_text(
        f"out: {tmp_path / 'ignored'}\ndata:\n  path: {bucket_dir}\n"
        "  val_fraction: 0.1\ntrain:\n  steps: 50\n  tokens_per_step: 512\n"
        "eval:\n  max_docs_per_source: 2\n"
    )
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    args = parser.parse_args(
        [
            str(path),
            "--set",
            "train.steps=3",
            "--set",
            "data.max_len=128",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert cli_train(args) == 0
    assert len(read_log(tmp_path / "cli")) == 3 and "held-out loss" in capsys.readouterr().out
    assert {r["bucket"] for r in read_log(tmp_path / "cli")} <= {32, 64, 128}


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compile_one_graph_per_bucket_no_recompiles(bucket_dir, tmp_path, backend):
    """aot_eager traces the same graphs as inductor without a C++ build (seconds on
    CPU); inductor, the GPU default, builds C++ kernels here (about a minute)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = config(
        bucket_dir,
        tmp_path / "compiled",
        data={"max_len": 64},
        train={"steps": 6, "compile": True, "compile_backend": backend},
    )
    trainer = Trainer(cfg)
    trainer.warmup_compile()
    assert counters["stats"]["unique_graphs"] == len(trainer.sources) == 2
    res = trainer.run()
    assert res["recompiles_after_warmup"] == 0
    eager = config(bucket_dir, tmp_path / "eager", data={"max_len": 64}, train={"steps": 6})
    train(eager)
    for a, b in zip(read_log(tmp_path / "compiled"), read_log(tmp_path / "eager"), strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4
    torch._dynamo.reset()


def _ddp_worker(rank, cfg, port):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    train(parse_train_config(cfg))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_rank_ddp_matches_one_process(bucket_dir, tmp_path):
    """Two CPU ranks (gloo) split every batch; the loss curve equals one process's."""
    single = config(bucket_dir, tmp_path / "one", train={"steps": 5})
    train(single)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = single.model_dump()
    cfg["out"] = str(tmp_path / "two")
    torch.multiprocessing.spawn(_ddp_worker, args=(cfg, port), nprocs=2)
    one, two = read_log(tmp_path / "one"), read_log(tmp_path / "two")
    assert len(two) == 5
    for a, b in zip(one, two, strict=True):
        assert a["bucket"] == b["bucket"] and a["batch_size"] == b["batch_size"]
        assert abs(a["loss"] - b["loss"]) < 1e-4
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["world_size"] == 2


@pytest.mark.gpu
def test_gpu_bf16_compiled_run(bucket_dir, tmp_path):
    cfg = config(
        bucket_dir,
        tmp_path / "gpu",
        train={"steps": 20, "device": "cuda", "compile": True, "tokens_per_step": 4096},
    )
    res = train(cfg)
    log = read_log(tmp_path / "gpu")
    assert res["recompiles_after_warmup"] == 0
    assert log[-1]["loss"] < log[0]["loss"] - 1.0
    man = json.loads((tmp_path / "gpu" / "manifest.json").read_text())
    assert man["precision"] == "bf16"
