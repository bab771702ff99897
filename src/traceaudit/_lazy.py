"""Lazy package attributes (PEP 562): a name is imported the first time it is used.

Each package ``__init__`` lists its public names and where they live; importing the package
imports none of them. That keeps ``import traceaudit`` (and ``traceaudit --version``) light,
and keeps packages that use each other (the analysis builds a Report; the Report's faces
read analysis constants) free of import cycles through their ``__init__`` files.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, names: dict[str, str | tuple[str, str | None]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    ``names`` maps a public name to the module that defines it (the attribute of the same
    name), or to ``(module, attribute)``, where an attribute of None means the module itself.
    """

    def __getattr__(name: str) -> Any:
        where = names.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, attribute = (where, name) if isinstance(where, str) else where
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        vars(importlib.import_module(package))[name] = value  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(names))

    return __getattr__, __dir__
