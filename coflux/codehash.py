"""Code identity: a hash of a target's code and of the repository code it uses.

A target's code hash covers its own source and, transitively, the sources of
the functions and classes of the same repository that it refers to (by global
name, through a module attribute such as ``helpers.clean``, or through a
closure). Editing a helper therefore changes the hash of every target that
uses it, while code elsewhere, and comments anywhere, change nothing: sources
are compared as syntax trees, not as text.

"The same repository" is code loaded from files under the directory the
target's top-level module or package was imported from, excluding installed
packages (``site-packages``), so a project's own helpers count and its
dependencies don't.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

from .cache.keys import hash_bytes

_INSTALLED = ("site-packages", "dist-packages")


def repository_root(module: types.ModuleType) -> Path | None:
    """The directory a module's top-level package was imported from."""
    top = sys.modules.get(module.__name__.partition(".")[0], module)
    file = getattr(top, "__file__", None)
    if file is None:
        return None
    path = Path(file).resolve()
    # A package's __file__ is its __init__.py: the root is the package's parent.
    return path.parent.parent if path.name == "__init__.py" else path.parent


class CodeHasher:
    """Hashes targets of one repository, sharing the work for helpers they have in common."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._sources: dict[int, str] = {}
        self._references: dict[int, list[Any]] = {}

    def hash(self, fn: Any) -> str:
        """The code hash of a function: its source and every local definition it reaches."""
        seen: dict[int, str] = {}
        stack = [fn]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen[id(obj)] = f"{_qualified_name(obj)}\0{self._source_hash(obj)}"
            stack.extend(self._local_references(obj))
        own = seen.pop(id(fn))
        return hash_bytes("\n".join([own, *sorted(seen.values())]).encode())

    # --- what a definition is -----------------------------------------------------

    def _source_hash(self, obj: Any) -> str:
        if id(obj) not in self._sources:
            try:
                tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
                normalised = ast.dump(tree, annotate_fields=False)
            except (OSError, TypeError, SyntaxError):
                code = getattr(obj, "__code__", None)
                normalised = code.co_code.hex() if code is not None else repr(obj)
            self._sources[id(obj)] = hash_bytes(normalised.encode())
        return self._sources[id(obj)]

    def _is_local(self, obj: Any) -> bool:
        if self.root is None:
            return False
        try:
            file = inspect.getsourcefile(obj)
        except TypeError:
            return False
        if file is None or any(part in file for part in _INSTALLED):
            return False
        return Path(file).resolve().is_relative_to(self.root)

    # --- what a definition uses ---------------------------------------------------

    def _local_references(self, obj: Any) -> list[Any]:
        if id(obj) not in self._references:
            found = [
                candidate
                for candidate in self._references_of(obj)
                if _definition(candidate) is not None and self._is_local(_definition(candidate))
            ]
            self._references[id(obj)] = [_definition(c) for c in found]
        return self._references[id(obj)]

    def _references_of(self, obj: Any) -> list[Any]:
        if isinstance(obj, type):
            found: list[Any] = list(obj.__bases__)
            for member in vars(obj).values():
                function = _function_of(member)
                if function is not None:
                    found.extend(_names_used(function.__code__, function.__globals__))
            found.extend(_nested_definitions(obj))
            return found
        found = _names_used(obj.__code__, obj.__globals__)
        for cell in obj.__closure__ or ():
            with contextlib.suppress(ValueError):  # an empty cell has no contents
                found.append(cell.cell_contents)
        return found


def _definition(obj: Any) -> Any:
    """The function or class behind a value, or None (a Target stands for its function)."""
    fn = getattr(obj, "fn", None)
    if fn is not None and hasattr(obj, "spec") and isinstance(fn, types.FunctionType):
        return fn
    if isinstance(obj, types.FunctionType | type):
        return obj
    return None


def _function_of(member: Any) -> types.FunctionType | None:
    if isinstance(member, staticmethod | classmethod):
        member = member.__func__
    if isinstance(member, property):
        member = member.fget
    return member if isinstance(member, types.FunctionType) else None


def _all_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _all_names(const)
    return names


def _names_used(code: types.CodeType, namespace: dict[str, Any]) -> list[Any]:
    """Values of the global names a code object uses, and of attributes it reads on modules."""
    names = _all_names(code)
    found: list[Any] = []
    for name in names:
        if name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            # `helpers.clean(x)` names both `helpers` and `clean`.
            found.extend(getattr(value, attr) for attr in names if hasattr(value, attr))
        else:
            found.append(value)
    return found


def _nested_definitions(cls: type) -> list[Any]:
    """Classes and targets defined or bound in a class body."""
    found = []
    for value in vars(cls).values():
        definition = _definition(value)
        if definition is not None and definition is not cls:
            found.append(definition)
    return found


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
