"""Plug-in lookup shared by stages and scorers: scan a package for named classes, or
import a class from ``package.module:Class``."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def scan(package: ModuleType, base: type) -> dict[str, type]:
    """Registry name -> class for every ``base`` subclass with a non-empty ``name``
    defined in the modules of ``package``."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, base) and getattr(obj, "name", ""):
                found[obj.name] = obj
    return found


def missing_requirement(requires: dict[str, str], who: str) -> str | None:
    """The message for the first module in ``requires`` (module -> pip extra) that is not
    installed, or None when all are."""
    import importlib.util

    for module, extra in requires.items():
        if importlib.util.find_spec(module) is None:
            return f"{who} needs {module!r}, which is not installed: pip install 'winnow[{extra}]'"
    return None


def import_object(use: str, kind: str):
    """The object named by ``package.module:name``; ValueError naming the problem."""
    module_name, _, attr = use.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"cannot import {kind} {use!r} ({exc})") from None


def import_class(use: str, base: type | tuple[type, ...], kind: str) -> type:
    """The class named by ``package.module:Class``; ValueError naming the problem."""
    cls = import_object(use, kind)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{use!r} is not a {kind} class")
    return cls
