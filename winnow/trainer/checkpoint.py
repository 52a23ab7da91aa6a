"""Checkpoints of a training run: what defines a run's trajectory, saving, and resuming."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from winnow.errors import ConfigError
from winnow.files import atomic_file, atomic_write
from winnow.trainer.config import TrainConfig


def config_hash(cfg: TrainConfig) -> str:
    """Hash of the fields that define the training trajectory (not logging, eval,
    checkpoint cadence or compile settings)."""
    d = cfg.model_dump()
    d.pop("out")
    d.pop("eval")
    for key in (
        "resume",
        "log_every",
        "eval_every",
        "eval_batches",
        "ckpt_every",
        "compile",
        "compile_backend",
        "threads",
        "peak_flops",
        "device",
    ):
        d["train"].pop(key)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(path: Path, state: dict) -> None:
    """``torch.save`` ``state`` to ``path`` atomically and durably."""
    with atomic_file(path) as f:
        torch.save(state, f)


def load_checkpoint(path: Path, cfg: TrainConfig, data_hash: str, device) -> dict:
    """The checkpoint's state, refused with a one-line error when it was made with another
    trajectory config or other data."""
    state = torch.load(path, map_location=device, weights_only=False)
    if state["config_hash"] != config_hash(cfg):
        old, new = state["config"], cfg.model_dump()
        diff = [
            f"{s}.{k}"
            for s in new
            if isinstance(new[s], dict)
            for k in new[s]
            if old.get(s, {}).get(k) != new[s][k]
        ]
        raise ConfigError(
            f"{path}: made with a different config (changed: "
            f"{', '.join(diff) or 'unknown'}); use a new out dir or train.resume=false"
        )
    if state["data_hash"] != data_hash:
        raise ConfigError(f"{path}: the data in {cfg.data.path} changed since this checkpoint")
    return state


def trim_log(log: Path, step: int) -> None:
    """Drop log lines written after the checkpoint at ``step``."""
    if log.is_file():
        keep = [
            ln
            for ln in log.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= step
        ]
        atomic_write(log, "".join(ln + "\n" for ln in keep).encode())
