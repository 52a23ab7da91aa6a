"""Locate and load fastText models by local path or Hugging Face Hub id.

A model spec is one of:

- a local file path (``models/dclm.bin``, ``~/lid.176.bin``);
- ``hf://OWNER/REPO/PATH/IN/REPO.bin`` or ``OWNER/REPO/PATH/IN/REPO.bin``;
- ``OWNER/REPO``: the file ``model.bin`` of that hub repository (the layout of
  ``facebook/fasttext-language-identification`` and ``cis-lmu/glotlid``).

Hub files are fetched once with ``huggingface_hub.hf_hub_download`` (cached by it);
loaded models are cached per process, so each worker loads a model once.
"""

from __future__ import annotations

import threading
from pathlib import Path

from winnow.errors import WinnowError

_LOADED: dict[str, object] = {}
_LOCK = threading.Lock()


def resolve_model_path(spec: str, default_filename: str = "model.bin") -> Path:
    """A local path for a model spec, downloading from the hub when needed."""
    local = Path(spec).expanduser()
    if local.is_file():
        return local
    name = spec.removeprefix("hf://")
    parts = [p for p in name.split("/") if p]
    if spec.startswith(("/", ".", "~")) or len(parts) < 2:
        raise WinnowError(f"model {spec!r}: no such file (and not a hub id OWNER/REPO[/FILE])")
    repo_id = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or default_filename
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WinnowError(
            f"model {spec!r} is not a local file; install huggingface_hub to fetch it"
        ) from None
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:  # network errors, missing repo or file
        raise WinnowError(
            f"model {spec!r}: cannot download {filename} from {repo_id} ({exc})"
        ) from None


def load_fasttext(spec: str):
    """The fastText model for ``spec``, loaded once per process (again if the file changes)."""
    try:
        from fasttext.FastText import _FastText
    except ImportError:
        raise WinnowError("fastText is not installed: pip install 'winnow[quality]'") from None
    path = resolve_model_path(spec)
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_mtime_ns}:{stat.st_size}"
    with _LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = _FastText(model_path=str(path))
            except ValueError as exc:
                raise WinnowError(f"model {spec!r}: not a fastText model ({exc})") from None
        return _LOADED[key]
