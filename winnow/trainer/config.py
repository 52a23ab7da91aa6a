"""Train and ablation configs: YAML validated by pydantic, errors naming the key.

Every section rejects unknown keys, so a typo (``optim.lr_max``) fails before any
data is read, with the YAML path of the offending key in the message.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from winnow.config import format_validation_error, read_yaml, set_dotted
from winnow.errors import ConfigError
from winnow.trainer.curricula import CURRICULA
from winnow.trainer.mixture import MixtureConfig
from winnow.trainer.model import PRESETS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(Strict):
    """Which tokens to train on and how to batch them."""

    path: str  # a bucket directory (len_<N>/, concat/, manifest.json)
    mode: Literal["bucket", "concat"] = "bucket"
    curriculum: str = "grow_p2"
    cycles: int = Field(default=8, ge=1)
    min_len: int | None = Field(default=None, gt=0)
    max_len: int | None = Field(default=None, gt=0)
    concat_len: int | None = Field(default=None, gt=0)  # default: the longest bucket used
    concat_from: Literal["pieces", "shards"] = "pieces"
    val_fraction: float = Field(default=0.01, ge=0, lt=1)
    min_val_docs_per_source: int = Field(default=1, ge=0)
    mixture: MixtureConfig | None = None  # rows drawn by source per step (bucket mode)

    @field_validator("curriculum")
    @classmethod
    def _known_curriculum(cls, v: str) -> str:
        key = v.lower().replace("-", "_")
        if key not in CURRICULA:
            raise ValueError(f"must be one of {sorted(CURRICULA)}")
        return key


class ModelConfig(Strict):
    """A preset; any other field set here overrides it."""

    preset: str = "tiny"
    n_layer: int | None = Field(default=None, gt=0)
    n_head: int | None = Field(default=None, gt=0)
    n_embd: int | None = Field(default=None, gt=0)
    mlp: Literal["swiglu", "relu2"] | None = None
    rope_base: float | None = Field(default=None, gt=0)
    qk_norm: bool | None = None
    tie_embeddings: bool | None = None

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"must be one of {sorted(PRESETS)}")
        return v


class OptimConfig(Strict):
    lr: float = Field(default=3e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = Field(default=10, ge=0)
    decay_fraction: float = Field(default=0.2, gt=0, le=1)  # WSD: share of steps decaying
    weight_decay: float = Field(default=0.1, ge=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    grad_clip: float = Field(default=1.0, ge=0)  # 0 disables clipping
    z_loss: float = Field(default=0.0, ge=0)


class TrainLoopConfig(Strict):
    steps: int = Field(default=100, gt=0)
    tokens_per_step: int = Field(default=4096, gt=0)
    micro_batch_tokens: int | None = Field(default=None, gt=0)  # default: the whole step
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False
    compile_backend: str = "inductor"
    threads: int | None = Field(default=None, gt=0)  # CPU threads for torch
    log_every: int = Field(default=1, gt=0)
    eval_every: int = Field(default=0, ge=0)  # periodic held-out loss; 0 = only at the end
    eval_batches: int = Field(default=4, gt=0)  # windows batches per periodic eval
    ckpt_every: int = Field(default=500, ge=0)  # 0 = only at the end
    resume: bool = True
    peak_flops: float | None = Field(default=None, gt=0)  # for MFU; default from device name


class EvalConfig(Strict):
    max_docs_per_source: int | None = Field(default=64, gt=0)
    eval_len: int | None = Field(default=None, gt=0)  # window; default: longest training length
    batch_tokens: int = Field(default=16384, gt=0)
    token_bytes: str = "auto"  # auto | bytes | path to a .npy of byte lengths per token id
    tokenizer: str = "auto"  # for tasks: auto | bytes | path to a tokenizer.json
    tasks: list[str] = Field(default_factory=list)  # JSONL multiple-choice files
    late_from: int = Field(default=128, gt=0)  # `late` loss: predictions with >= this context


class TrainConfig(Strict):
    out: str
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainLoopConfig = Field(default_factory=TrainLoopConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


class VariantConfig(Strict):
    path: str
    mode: Literal["bucket", "concat"] | None = None  # default: the ablation's data.mode


class ScaleConfig(Strict):
    """One model scale of a multi-scale ablation: dotted overrides of ``base``."""

    name: str
    set: dict[str, Any] = Field(default_factory=dict)  # e.g. {model.preset: p10m}
    seeds: list[int] | None = Field(default=None, min_length=1)  # default: the ablation's


class AblationConfig(Strict):
    """Same model on several dataset variants x seeds; ``base`` is a train config
    without ``out`` and ``data.path`` (each run fills them in)."""

    name: str = "ablation"
    out: str
    variants: dict[str, str | VariantConfig]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    eval_on: list[str] | None = None  # variants whose held-out documents every run is scored on
    # bucket directories no run trains on, scored whole by every run (a target domain's
    # documents, general held-out text); eval_on may name them beside variants
    eval_sets: dict[str, str] = Field(default_factory=dict)
    primary: str | None = None  # metric to rank by; default: loss on the first eval set
    baseline: str | None = None  # variant the differences are taken against; default: first
    base: dict[str, Any] = Field(default_factory=dict)
    # two or more scales: run every variant x seed at each, then report how well the
    # first (smallest) scale's ranking predicts the last one's
    scales: list[ScaleConfig] | None = Field(default=None, min_length=2)

    @field_validator("variants")
    @classmethod
    def _non_empty(cls, v: dict) -> dict:
        if not v:
            raise ValueError("needs at least one variant")
        return {k: VariantConfig(path=x) if isinstance(x, str) else x for k, x in v.items()}


def validate_model(model: type[BaseModel], data: Any, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def apply_overrides(data: dict, overrides: list[str] | dict | None) -> dict:
    """Set dotted keys (``train.steps=50`` strings or a mapping); values parse as YAML."""
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            items.append((key.strip(), yaml.safe_load(value)))
    return set_dotted(data, dict(items))


def parse_train_config(data: Any, source: str = "<train config>") -> TrainConfig:
    return validate_model(TrainConfig, data, source)


def parse_ablation_config(data: Any, source: str = "<ablation config>") -> AblationConfig:
    cfg = validate_model(AblationConfig, data, source)
    probe = apply_overrides(copy.deepcopy(cfg.base), {"out": "-", "data.path": "-"})
    validate_model(TrainConfig, probe, f"{source}: base")
    for i, scale in enumerate(cfg.scales or []):
        scaled = apply_overrides(copy.deepcopy(probe), scale.set)
        validate_model(TrainConfig, scaled, f"{source}: scales.{i}.set")
    if cfg.scales and len({s.name for s in cfg.scales}) != len(cfg.scales):
        raise ConfigError(f"{source}: scales: names must be unique")
    for name in cfg.eval_sets:
        if name in cfg.variants:
            raise ConfigError(f"{source}: eval_sets: {name!r} is also a variant")
    for name in cfg.eval_on or []:
        if name not in cfg.variants and name not in cfg.eval_sets:
            raise ConfigError(f"{source}: eval_on: unknown variant {name!r}")
    if cfg.baseline is not None and cfg.baseline not in cfg.variants:
        raise ConfigError(f"{source}: baseline: unknown variant {cfg.baseline!r}")
    return cfg


def load_train_config(path: str | Path, overrides: list[str] | dict | None = None) -> TrainConfig:
    data = read_yaml(path)
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return parse_train_config(data, str(path))


def load_ablation_config(
    path: str | Path, overrides: list[str] | dict | None = None
) -> AblationConfig:
    data = read_yaml(path)
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
    return parse_ablation_config(data, str(path))


def add_config_args(parser, what: str, example: str) -> None:
    """The shared CLI shape of ``winnow train`` and ``winnow ablate``."""
    parser.add_argument("config", help=f"{what} config YAML")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example}",
    )
    parser.add_argument("--out", help="output directory (overrides `out`)")


def cli_overrides(args) -> list[str]:
    """``--set`` values plus ``--out`` as an override."""
    overrides = list(args.overrides or [])
    if getattr(args, "out", None):
        overrides.append(f"out={args.out}")
    return overrides
