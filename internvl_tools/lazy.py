"""Lazy public surfaces: a package's names come from its modules' ``__all__`` (written once, in each module) and are
imported on first use (PEP 562), the way transformers' model packages do it.

A package ``__init__`` says which of its modules are public and nothing else; ``import internvl_tools.documents``
then costs nothing until a name is used, so a worker process that needs one module does not pay for its siblings.

>>> "parse_pages" in module_all("internvl_tools.documents.sources")
True
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["lazy_exports", "module_all"]

_ROOT = Path(__file__).parent
_ALL_LITERAL = re.compile(r"^__all__\s*=\s*(\[.*?\])", re.M | re.S)


def module_all(module: str) -> list[str]:
    """A module's ``__all__`` read from its source (one literal list), so listing an API imports nothing."""
    path = _ROOT.joinpath(*module.split(".")[1:])
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text(encoding="utf-8")
    match = _ALL_LITERAL.search(source)
    if match is None:
        raise RuntimeError(f"{module} has no literal __all__ list; the package API is derived from it.")
    return list(ast.literal_eval(match.group(1)))


def lazy_exports(
    package: str, modules: Sequence[str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names are those of ``modules``' ``__all__``.

    >>> names, getattr_, _ = lazy_exports("internvl_tools.prompts", ["templates"])
    >>> "get_template" in names, getattr_("get_template").__module__
    (True, 'internvl_tools.prompts.templates')
    """
    package = package.removesuffix(".__init__")  # the package's own __init__ imported by its file name
    home: dict[str, str] = {}
    for module in modules:
        for name in module_all(f"{package}.{module}"):
            home.setdefault(name, f"{package}.{module}")
    submodules = {module: f"{package}.{module}" for module in modules}

    def __getattr__(name: str) -> Any:
        if name in home:
            return getattr(importlib.import_module(home[name]), name)
        if name in submodules:
            return importlib.import_module(submodules[name])
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(home) | set(submodules))

    return list(home), __getattr__, __dir__
