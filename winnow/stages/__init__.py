"""Stage registry.

Built-in stages are found by scanning the modules of this package for ``Stage``
subclasses with a ``name``. Stage modules import optional heavy dependencies
(models, torch) lazily, inside ``setup``, so scanning stays cheap. Users may also
name any class by import path (``package.module:Class``) or any datatrove step as
``datatrove:ClassName``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from winnow.errors import ConfigError
from winnow.stages.base import GlobalStage, MapStage, Stage

__all__ = ["GlobalStage", "MapStage", "Stage", "builtin_stages", "resolve"]


@cache
def builtin_stages() -> dict[str, type[Stage]]:
    """Registry name -> stage class for every built-in stage."""
    found: dict[str, type[Stage]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Stage) and obj.name:
                found[obj.name] = obj
    return found


def resolve(use: str, where: str) -> type[Stage]:
    """Find the stage class for a YAML ``use:`` value; ``where`` is the YAML path."""
    if use.startswith("datatrove:"):
        from winnow.stages.datatrove_adapter import datatrove_stage

        return datatrove_stage(use.removeprefix("datatrove:"), where)
    if ":" in use:
        module_name, _, attr = use.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}: cannot import stage {use!r} ({exc})") from None
        if not (isinstance(cls, type) and issubclass(cls, (MapStage, GlobalStage))):
            raise ConfigError(f"{where}: {use!r} is not a MapStage or GlobalStage subclass")
        return cls
    stages = builtin_stages()
    if use not in stages:
        allowed = ", ".join(sorted(stages))
        raise ConfigError(f"{where}: unknown stage {use!r}; registered stages: {allowed}")
    return stages[use]
