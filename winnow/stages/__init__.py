"""Stage registry.

Built-in stages are found by scanning the modules of this package for ``Stage``
subclasses with a ``name``. Stage modules import optional heavy dependencies
(models, torch) lazily, inside ``setup``, so scanning stays cheap. Users may also
name any class by import path (``package.module:Class``) or any datatrove step as
``datatrove:ClassName``.
"""

from __future__ import annotations

from functools import cache

from winnow.errors import ConfigError
from winnow.registry import import_class, scan
from winnow.stages.base import GlobalStage, MapStage, Stage

__all__ = ["GlobalStage", "MapStage", "Stage", "builtin_stages", "resolve"]


@cache
def builtin_stages() -> dict[str, type[Stage]]:
    """Registry name -> stage class for every built-in stage."""
    import winnow.stages as package

    return scan(package, Stage)


def resolve(use: str, where: str) -> type[Stage]:
    """Find the stage class for a YAML ``use:`` value; ``where`` is the YAML path."""
    if use.startswith("datatrove:"):
        from winnow.stages.datatrove_adapter import datatrove_stage

        return datatrove_stage(use.removeprefix("datatrove:"), where)
    if ":" in use:
        try:
            return import_class(use, (MapStage, GlobalStage), "stage (MapStage or GlobalStage)")
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    stages = builtin_stages()
    if use not in stages:
        allowed = ", ".join(sorted(stages))
        raise ConfigError(f"{where}: unknown stage {use!r}; registered stages: {allowed}")
    return stages[use]
