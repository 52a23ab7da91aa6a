"""A model's tokenizer and chat template, read from its folder (``tokenizer.json`` plus
``chat_template.jinja`` or ``tokenizer_config.json``), without loading the model.

Every backend renders prompts the same way (the template rendered with Jinja like
Hugging Face does), the stage counts tokens with it for segmentation and the
pre-flight context check, and its hash is part of every request's cache key.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

from winnow.errors import ConfigError


class ChatFormat:
    """Tokenizer + chat template of one model folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        tok_file = self.folder / "tokenizer.json"
        if not tok_file.exists():
            raise ConfigError(f"{self.folder}: no tokenizer.json (needed to count tokens)")
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tok_file))
        config_file = self.folder / "tokenizer_config.json"
        self.config = json.loads(config_file.read_text()) if config_file.exists() else {}
        jinja_file = self.folder / "chat_template.jinja"
        template = jinja_file.read_text() if jinja_file.exists() else None
        self.template = template or self.config.get("chat_template")
        if not self.template:
            raise ConfigError(f"{self.folder}: the tokenizer has no chat template")

    @cached_property
    def template_hash(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()

    @cached_property
    def _compiled(self):
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

        def raise_exception(message):
            raise ValueError(f"chat template: {message}")

        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.template)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text, ending with the assistant turn's opening."""
        special = {k: self.config.get(k) for k in ("bos_token", "eos_token")}
        return self._compiled.render(messages=messages, add_generation_prompt=True, **special)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text``."""
        return self.tokenizer.encode(text, add_special_tokens=False).offsets

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)
