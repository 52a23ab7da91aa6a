"""The training loop: ``winnow train CONFIG.yaml``.

One optimizer step = ``tokens_per_step`` tokens from one bucket (bucket mode) or from
the concat-and-chunk stream, split into micro-batches of ``micro_batch_tokens``.
AdamW (fused on GPU), warmup then cosine or WSD decay, gradient clipping, optional
z-loss, bf16 autocast on GPU and fp32 on CPU. With ``compile`` each bucket length
gets exactly one static graph, compiled by a warm-up pass (forward and backward, no
update) before the first timed step; the run records the graphs compiled after
warm-up, which should be zero.

A run directory holds ``manifest.json`` (config, data fingerprint, versions),
``log.jsonl`` (one line per step), ``ckpt.pt`` (atomic) and, when done,
``results.json``. A rerun resumes from the checkpoint and reproduces the loss curve
of an uninterrupted run. Under ``torchrun`` each rank takes its slice of every batch
(DDP); the bucket schedule needs no communication.

This file is the loop only (one concept, the ``Trainer``): the optimizer and schedule
are in ``optim``, checkpoints in ``checkpoint``, the data in ``data``, ``loader`` and
``curricula``, the evaluation in ``eval``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from winnow.errors import ConfigError
from winnow.files import atomic_write
from winnow.trainer.checkpoint import config_hash, load_checkpoint, save_checkpoint, trim_log
from winnow.trainer.config import TrainConfig, add_config_args, cli_overrides, load_train_config
from winnow.trainer.curricula import Schedule, get_curriculum
from winnow.trainer.data import BucketDataset
from winnow.trainer.eval import evaluate, score_documents
from winnow.trainer.loader import Loader
from winnow.trainer.mixture import for_buckets
from winnow.trainer.model import GPT, preset
from winnow.trainer.optim import lr_at, make_optimizer
from winnow.versions import git_revision, package_versions

# bf16 dense peak FLOP/s by device name, for MFU (override with train.peak_flops)
PEAK_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "B200": 2250e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 125e12,
}


# --------------------------------------------------------------------------- pieces


def _device(cfg) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: cuda requested but no CUDA device is available")
    return torch.device(cfg.device)


def _peak_flops(cfg, device: torch.device) -> float | None:
    if cfg.peak_flops:
        return cfg.peak_flops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# --------------------------------------------------------------------------- the run


class Trainer:
    """State of one training run; ``run()`` trains to the end (or ``halt_after``)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        t = cfg.train
        self.out = Path(cfg.out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = _device(t)
        if self.world > 1:
            self._init_distributed()
        if t.threads and self.device.type == "cpu":
            torch.set_num_threads(t.threads)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves fp32
        use_bf16 = t.dtype == "bf16" or (t.dtype == "auto" and self.device.type == "cuda")
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
        )
        self.amp_dtype = "bf16" if use_bf16 else "fp32"

        d = cfg.data
        self.dataset = BucketDataset(
            d.path, d.val_fraction, d.min_val_docs_per_source, d.min_len, d.max_len
        )
        if d.mode == "bucket":
            sources = self.dataset.bucket_sources()
            curriculum = get_curriculum(d.curriculum)
        else:
            length = d.concat_len or max(self.dataset.lengths)
            sources = {
                length: self.dataset.concat_source(length, t.seed, d.concat_from == "shards")
            }
            curriculum = get_curriculum("natural")
        if not sources:
            raise ConfigError(f"data.path: {d.path} has no training sequences")
        too_long = [n for n in sources if n > t.tokens_per_step]
        if too_long:
            raise ConfigError(
                f"train.tokens_per_step: {t.tokens_per_step} is shorter than "
                f"sequence length(s) {too_long}; raise it or set data.max_len"
            )
        self.micro_tokens = t.micro_batch_tokens or t.tokens_per_step
        for n in sources:
            local = t.tokens_per_step // n // self.world
            micro = max(1, self.micro_tokens // n)
            if t.tokens_per_step % (n * self.world) or local % min(micro, local):
                raise ConfigError(
                    f"train.tokens_per_step: {t.tokens_per_step} tokens at length {n} must split"
                    f" evenly over {self.world} rank(s) and micro-batches of "
                    f"{self.micro_tokens} tokens"
                )
        self.sources = sources
        self.schedule = Schedule(
            curriculum,
            list(sources),
            [s.num_tokens for s in sources.values()],
            t.steps,
            d.cycles,
            t.seed,
        )
        self.mixture, groups = None, None
        if d.mixture is not None:
            if d.mode != "bucket":
                raise ConfigError("data.mixture: needs data.mode: bucket")
            names = self.dataset.sources
            if d.mixture.group == "group":
                names = self.dataset.groups
                if "group_column" not in self.dataset.manifest:
                    raise ConfigError(
                        f"data.mixture.group: {d.path} has no group column (decompose it "
                        "with group_column)"
                    )
            try:
                self.mixture, groups = for_buckets(d.mixture, names, sources, t.seed)
            except ValueError as exc:
                raise ConfigError(f"data.{exc}") from None
        self.loader = Loader(
            sources, self.schedule, t.tokens_per_step, t.seed, self.rank, self.world,
            self.mixture, groups,
        )  # fmt: skip
        self.max_len = max(sources)
        self.eval_len = cfg.eval.eval_len or self.max_len

        m = cfg.model
        torch.manual_seed(t.seed)
        self.model_cfg = preset(
            m.preset,
            vocab_size=int(self.dataset.vocab_size),
            max_seq_len=self.max_len,
            n_layer=m.n_layer,
            n_head=m.n_head,
            n_embd=m.n_embd,
            mlp=m.mlp,
            rope_base=m.rope_base,
            qk_norm=m.qk_norm,
            tie_embeddings=m.tie_embeddings,
        )
        self.model = GPT(self.model_cfg).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.optim, self.device.type == "cuda")
        self.train_model = self.model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids)
        if t.compile:
            torch._dynamo.config.recompile_limit = max(8, 2 * len(sources))
            self.train_model = torch.compile(
                self.train_model, dynamic=False, backend=t.compile_backend
            )
        self.peak = _peak_flops(t, self.device)
        self.step = 0
        self.tokens_seen = 0
        self.config_hash = config_hash(cfg)
        self.data_hash = self.dataset.fingerprint()
        self._val_windows: list[np.ndarray] | None = None

    def _init_distributed(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---------------------------------------------------------------- checkpoints

    @property
    def ckpt_path(self) -> Path:
        return self.out / "ckpt.pt"

    def save(self) -> None:
        if not self.is_main:
            return
        save_checkpoint(
            self.ckpt_path,
            {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "loader": self.loader.state_dict(),
                "config_hash": self.config_hash,
                "data_hash": self.data_hash,
                "config": self.cfg.model_dump(),
            },
        )

    def try_resume(self) -> bool:
        if not (self.cfg.train.resume and self.ckpt_path.is_file()):
            return False
        state = load_checkpoint(self.ckpt_path, self.cfg, self.data_hash, self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loader.load_state_dict(state["loader"])
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        if self.is_main:
            trim_log(self.out / "log.jsonl", self.step)
        return True

    # ---------------------------------------------------------------- stepping

    def _micro_batches(self, tokens: np.ndarray):
        x = torch.from_numpy(tokens.astype(np.int64))
        y = torch.roll(x, -1, dims=1)
        y[:, -1] = -1  # the last position has no target inside the sequence
        rows = max(1, self.micro_tokens // x.size(1))
        for i in range(0, x.size(0), rows):
            yield (
                x[i : i + rows].to(self.device, non_blocking=True),
                y[i : i + rows].to(self.device, non_blocking=True),
            )

    def _forward_backward(self, tokens: np.ndarray, global_rows: int) -> torch.Tensor:
        """Accumulate gradients for one step; returns this rank's share of the mean loss."""
        n_targets = global_rows * (tokens.shape[1] - 1)
        scale = self.world / n_targets  # DDP averages over ranks
        z = self.cfg.optim.z_loss
        micro = list(self._micro_batches(tokens))
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(micro):
            sync = i == len(micro) - 1 or self.world == 1
            no_sync = getattr(self.train_model, "no_sync", None)
            with nullcontext() if sync or no_sync is None else no_sync(), self.autocast:
                ce, log_z = self.train_model(x, y)
                loss = ce.sum() * scale
                if z:
                    loss = loss + z * log_z.square().sum() * scale
            loss.backward()
            total += ce.detach().sum() / n_targets
        return total

    def warmup_compile(self) -> None:
        """Compile every bucket's graph (forward and backward) without updating weights."""
        for n in sorted(self.sources):
            local = self.cfg.train.tokens_per_step // n // self.world
            rows = min(max(1, self.micro_tokens // n), local)
            tokens = np.zeros((rows, n), np.int64)
            self._forward_backward(tokens, rows * self.world)
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def heldout_loss(self) -> float:
        """Loss on a fixed small set of held-out windows (for curves during training)."""
        if self._val_windows is None:
            docs = self.dataset.val_documents(self.cfg.eval.max_docs_per_source)
            spans = [s for d in docs for s in d.spans if len(s) > 1]
            wins = [
                s[i : i + self.eval_len] for s in spans for i in range(0, len(s) - 1, self.eval_len)
            ]
            budget = self.cfg.train.eval_batches * self.cfg.eval.batch_tokens
            keep, used = [], 0
            for w in wins:
                if used + len(w) > budget:
                    break
                keep.append(w)
                used += len(w)
            self._val_windows = keep
        if not self._val_windows:
            return float("nan")
        docs = [_AsDoc(w) for w in self._val_windows]
        res = score_documents(
            self.model,
            docs,
            self.eval_len,
            self.device,
            self.autocast,
            None,
            self.cfg.eval.batch_tokens,
        )
        self.model.train()
        return res["all"]["loss"]

    def source_losses(self, docs_per_source: int, groups: list[str] | None = None) -> np.ndarray:
        """Held-out loss of each group in ``groups`` (default: the mixture's groups), by
        source or by the shards' group column as ``data.mixture.group`` says; a group
        without held-out documents gets the mean of the others."""
        by = self.cfg.data.mixture.group if self.cfg.data.mixture else "source"
        docs = self.dataset.val_documents(docs_per_source, by)
        if by == "group":
            docs = [replace(doc, source=doc.group) for doc in docs]
        res = score_documents(
            self.model, docs, self.eval_len, self.device, self.autocast, None,
            self.cfg.eval.batch_tokens,
        )  # fmt: skip
        self.model.train()
        groups = self.mixture.groups if groups is None else groups
        losses = [res["by_source"].get(g, {}).get("loss") for g in groups]
        known = [x for x in losses if x is not None]
        fill = float(np.mean(known)) if known else 0.0
        return np.array([fill if x is None else x for x in losses])

    def _aioli_probe(self) -> None:
        """Before a step at an Aioli probe boundary: measure the per-group loss."""
        mix = self.cfg.data.mixture
        if mix is not None and mix.kind == "aioli" and self.mixture.eval_due(self.step):
            self.mixture.observe(self.step, self.source_losses(mix.eval_docs))

    def run(self, halt_after: int | None = None) -> dict | None:
        t = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self.try_resume()
        done = self.out / "results.json"
        if self.step >= t.steps and done.is_file():  # finished before: keep its results
            previous = json.loads(done.read_text())
            if (previous.get("config_hash"), previous.get("data_hash")) == (
                self.config_hash,
                self.data_hash,
            ):
                return previous
        if self.is_main:
            self._write_manifest(resumed)
        graphs_before = None
        if t.compile:
            self.warmup_compile()
            graphs_before = _graph_count()
        self.model.train()
        log = open(self.out / "log.jsonl", "a") if self.is_main else None
        timings = []
        try:
            while self.step < t.steps:
                self._aioli_probe()
                t0 = time.perf_counter()
                batch = self.loader.next()
                lr = lr_at(self.step, t.steps, self.cfg.optim)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = self._forward_backward(batch.tokens, batch.global_batch)
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(
                        self.model.parameters(), self.cfg.optim.grad_clip
                    )
                    if self.cfg.optim.grad_clip
                    else None
                )
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.tokens_seen += t.tokens_per_step
                mix = self.cfg.data.mixture
                if mix is not None and mix.kind == "skillit" and self.step % mix.every == 0:
                    self.mixture.update(self.source_losses(mix.eval_docs))
                if self.step % t.log_every == 0 or self.step == t.steps:
                    record = self._record(batch, loss, lr, grad_norm, t0, timings)
                    if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
                        record["val_loss"] = self.heldout_loss()
                    if log:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                if (t.ckpt_every and self.step % t.ckpt_every == 0) or self.step == t.steps:
                    self.save()
                if halt_after is not None and self.step >= halt_after:
                    return None
        finally:
            if log:
                log.close()
        recompiles = _graph_count() - graphs_before if graphs_before is not None else None
        return self._finish(timings, recompiles)

    def _record(self, batch, loss, lr, grad_norm, t0, timings) -> dict:
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(loss)
        loss_value = float(loss)  # synchronises the device
        dt = time.perf_counter() - t0
        tps = self.cfg.train.tokens_per_step / dt
        mfu = (
            self.model.flops_per_token(batch.length) * tps / (self.peak * self.world)
            if self.peak
            else None
        )
        timings.append((batch.length, dt))
        return {
            "step": self.step,
            "loss": loss_value,
            "lr": lr,
            "bucket": batch.length,
            "batch_size": batch.global_batch,
            "tokens": self.tokens_seen,
            "tokens_per_s": tps,
            "mfu": mfu,
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
        }

    def _write_manifest(self, resumed: bool) -> None:
        ds = self.dataset
        manifest = {
            "config": self.cfg.model_dump(),
            "config_hash": self.config_hash,
            "data": {
                "path": str(ds.root),
                "fingerprint": self.data_hash,
                "token_dtype": ds.token_dtype,
                "vocab_size": ds.vocab_size,
                "eos_id": ds.eos_id,
                "train_tokens": {str(n): s.num_tokens for n, s in self.sources.items()},
                "heldout_docs": len(ds.val_keys),
                "heldout_copy_tokens": sum(n * c for n, c in ds.val_copy_rows.items()),
                "tokenizer_sha256": ds.manifest.get("tokenizer_sha256"),
            },
            "model": {
                **self.model_cfg.to_dict(),
                "params": self.model.num_params(),
                "non_embedding_params": self.model.num_params(True),
            },
            "versions": {
                **package_versions(("torch", "numpy", "pyarrow")),
                "cuda": torch.version.cuda,
                "git": git_revision(),
            },
            "device": self._device_name(),
            "world_size": self.world,
            "precision": self.amp_dtype,
            "resumed_at_step": self.step if resumed else None,
            "argv": sys.argv,
        }
        atomic_write(self.out / "manifest.json", json.dumps(manifest, indent=2).encode())

    def _device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({torch.get_num_threads()} threads)"

    def _finish(self, timings, recompiles) -> dict:
        lines = (
            [
                json.loads(ln)
                for ln in (self.out / "log.jsonl").read_text().splitlines()
                if ln.strip()
            ]
            if self.is_main
            else []
        )
        losses = [r["loss"] for r in lines]
        tail = losses[-max(1, len(losses) // 10) :] if losses else [float("nan")]
        steady = timings[1:] or timings
        tokens_per_s = (
            (len(steady) * self.cfg.train.tokens_per_step / sum(dt for _, dt in steady))
            if steady
            else None
        )
        mfus = [r["mfu"] for r in lines[1:] if r.get("mfu") is not None]
        results = {
            "steps": self.step,
            "tokens": self.tokens_seen,
            "final_train_loss": float(np.mean(tail)),
            "tokens_per_s": tokens_per_s,
            "mfu": float(np.mean(mfus)) if mfus else None,
            "recompiles_after_warmup": recompiles,
            "config_hash": self.config_hash,
            "data_hash": self.data_hash,
        }
        results["eval"] = evaluate(
            self.model, self.dataset, self.cfg.eval, self.eval_len, self.device, self.autocast
        )
        if self.is_main:
            atomic_write(self.out / "results.json", json.dumps(results, indent=2).encode())
        return results


class _AsDoc:
    """A window wrapped as a one-span document, for ``score_documents``."""

    def __init__(self, tokens: np.ndarray):
        self.source, self.spans = "heldout", [tokens]


def train(cfg: TrainConfig, halt_after: int | None = None) -> dict | None:
    """Train (or resume) the run ``cfg`` describes; returns its results (None when
    stopped early by ``halt_after``, as a stand-in for a crash in tests)."""
    return Trainer(cfg).run(halt_after)


# --------------------------------------------------------------------------- CLI


def add_train_args(parser) -> None:
    add_config_args(parser, "train", "train.steps=50")


def cli_train(args) -> int:
    cfg = load_train_config(args.config, cli_overrides(args))
    results = train(cfg)
    if results is None:
        return 1
    held = results["eval"]["heldout"]["all"]
    scores = f"held-out loss {held['loss']:.3f}" if held["loss"] is not None else "no held-out docs"
    if held["bpb"] is not None:
        scores += f", bpb {held['bpb']:.3f}"
    print(
        f"{cfg.out}: {results['steps']} steps, {results['tokens']:,} tokens, final train loss "
        f"{results['final_train_loss']:.3f}, {scores}"
    )
    return 0
