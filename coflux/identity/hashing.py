"""Code identity: a hash of a target's code and of everything of the repository it can reach.

A change that can change a target's result changes its hash; comments and
formatting never do. The hasher walks from the target's function through
*definitions* (functions, classes, modules) and *values*:

- a function counts by its code (bytecode, constants and names: see
  :mod:`coflux.identity.references`, so a wrapper's own body counts, not only what it
  wraps), its defaults, its closure, its attributes (``__wrapped__``) and the
  values of the global names and attribute chains it reads
  (``SCALE``, ``helpers.TABLE``, ``pkg.sub.f``), to any depth;
- a class by its bases, metaclass and every attribute of its body;
- a value inline: constants by value, containers by their items, instances
  of the repository's classes by their class and state, ``functools.partial``
  and ``lru_cache`` wrappers by what they wrap, bound methods by function and
  instance;
- a module reached as a value (passed around, or read with ``getattr``),
  imported inside a function, or whose functions read their namespace
  (``globals()``, ``eval``) counts whole: its source and everything in it.
  A computed import (``importlib.import_module``) counts every module of the
  repository that is loaded.

"The repository" is the git repository holding the target's module (the
whole of it, not only the project's folder), or without git the folder its
top-level package was imported from; installed packages (``site-packages``)
are not walked, but the version of each installed distribution reached is
part of the hash (:mod:`coflux.identity.distributions`; ``COFLUX_HASH_PACKAGES=0``
leaves versions out).
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

from ..cache.keys import hash_bytes
from .distributions import version_of
from .references import code_digest, references

_INSTALLED = ("site-packages", "dist-packages")
_PRIMITIVES = (int, float, complex, str, bytes, bool, type(None), type(...), range, slice)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: Module attributes that describe the module rather than hold its code.
_MODULE_META = frozenset(
    {
        "__builtins__",
        "__loader__",
        "__spec__",
        "__file__",
        "__cached__",
        "__path__",
        "__name__",
        "__package__",
    }
)
_CLASS_META = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__"})
#: How deep the state of an installed class's instance is walked (it is not the repository's).
_FOREIGN_DEPTH = 2
#: A bound on inline values, so a huge or deeply nested constant can't stall hashing.
_MAX_DEPTH = 64


def git_root(path: Path) -> Path | None:
    """The top folder of the git repository holding ``path``, if any."""
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return None


def repository_root(module: types.ModuleType) -> Path | None:
    """The folder whose code counts as the repository's: the git repository holding
    the module, or else the folder its top-level package was imported from."""
    top = sys.modules.get(module.__name__.partition(".")[0], module)
    file = getattr(top, "__file__", None) or getattr(module, "__file__", None)
    if file is None:
        return None
    path = Path(file).resolve()
    found = git_root(path.parent)
    if found is not None:
        return found
    # A package's __file__ is its __init__.py: the root is the package's parent.
    return path.parent.parent if path.name == "__init__.py" else path.parent


class CodeHasher:
    """Hashes targets of one repository, sharing the work for what they have in common."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._nodes: dict[int, tuple[Any, str, list[Any]]] = {}
        self._local_files: dict[str, bool] = {}
        #: Stands for every Python file of the repository (for computed imports).
        self._sources = _RepositorySources()

    def hash(self, fn: Any) -> str:
        """The code hash of a function (or target): its own node and every one it reaches."""
        start = _target_function(fn)
        entries: set[str] = set()
        seen: set[int] = set()
        stack = [start]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            text, children = self._node(obj)
            entries.add(text)
            stack.extend(children)
        own = self._node(start)[0]
        entries.discard(own)
        version = f"python {sys.version_info[0]}.{sys.version_info[1]}"
        return hash_bytes("\n".join([version, own, *sorted(entries)]).encode())

    # --- definitions ----------------------------------------------------------------

    def _node(self, obj: Any) -> tuple[str, list[Any]]:
        known = self._nodes.get(id(obj))
        if known is None:
            children: list[Any] = []
            text = self._describe(obj, children)
            # The object is kept with its entry so its id can't be reused meanwhile.
            known = self._nodes[id(obj)] = (obj, text, children)
        return known[1], known[2]

    def _describe(self, obj: Any, children: list[Any]) -> str:
        if isinstance(obj, types.FunctionType):
            return self._function(obj, children)
        if isinstance(obj, type):
            return self._class(obj, children)
        if isinstance(obj, types.ModuleType):
            return self._module(obj, children)
        if obj is self._sources:
            return f"sources {self._repository_digest()}"
        return f"value {self._value(obj, children)}"

    def _function(self, fn: types.FunctionType, children: list[Any]) -> str:
        name = _name(fn)
        if not self._is_local_function(fn):
            return f"ext {name} {version_of(fn.__module__ or '')}"
        namespace = fn.__globals__
        found = references(fn.__code__, namespace.get("__package__"))
        parts = [f"fn {name} code={code_digest(fn.__code__)}"]
        for chain in sorted(found.chains):
            value = _resolve(chain, namespace)
            if value is not _MISSING:
                parts.append(f"{'.'.join(chain)}={self._value(value, children)}")
        for module_name, attribute in sorted(found.imports, key=repr):
            value = self._imported(module_name, attribute)
            parts.append(f"import {module_name}:{attribute}={self._value(value, children)}")
        module = sys.modules.get(fn.__module__ or "")
        if found.reads_namespace and module is not None:
            children.append(module)
        if found.imports_dynamically:
            # A module named at run time may not even be loaded yet: every file counts.
            children.extend(self._loaded_local_modules())
            children.append(self._sources)
        parts.append(f"defaults={self._value(fn.__defaults__, children)}")
        parts.append(f"kwdefaults={self._value(fn.__kwdefaults__, children)}")
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(self._value(cell.cell_contents, children))
            except ValueError:  # an empty cell (a name assigned later)
                cells.append("<empty>")
        parts.append(f"closure=[{','.join(cells)}]")
        parts.append(f"attributes={self._value(dict(vars(fn)), children)}")
        return " ".join(parts)

    def _class(self, cls: type, children: list[Any]) -> str:
        name = _name(cls)
        if not self._is_local_module_name(cls.__module__):
            return f"ext {name} {version_of(cls.__module__)}"
        members = {k: v for k, v in vars(cls).items() if k not in _CLASS_META}
        bases = ",".join(self._value(b, children) for b in cls.__bases__)
        meta = self._value(type(cls), children)
        return f"cls {name} meta={meta} bases=({bases}) members={self._value(members, children)}"

    def _module(self, module: types.ModuleType, children: list[Any]) -> str:
        if not self._is_local_module(module):
            return f"ext module {module.__name__} {version_of(module.__name__)}"
        members = {k: v for k, v in vars(module).items() if k not in _MODULE_META}
        return (
            f"module {module.__name__} source={_source_digest(module)} "
            f"members={self._value(members, children)}"
        )

    def _imported(self, module_name: str, attribute: str | None) -> Any:
        """What an import in a function's body gives. A module of the repository that
        isn't loaded yet (a lazy import) is imported, as the function would; an
        installed one isn't (it may be heavy): its version counts."""
        module = sys.modules.get(module_name)
        if module is None:
            top = module_name.partition(".")[0]
            if not self._is_local_file(_origin(top)):
                return f"unloaded:{module_name}:{version_of(module_name)}"
            try:
                module = importlib.import_module(module_name)
            except Exception:  # it fails when the function runs, too: its name counts
                return f"unimportable:{module_name}"
        return _attribute_of(module, module_name, attribute)

    def _repository_digest(self) -> str:
        if self.root is None:
            return ""
        digests = []
        for folder, dirs, files in os.walk(self.root):
            # Pruned, not filtered: a virtual environment inside would be thousands of files.
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
            for name in sorted(f for f in files if f.endswith(".py")):
                path = Path(folder, name)
                digests.append(f"{path.relative_to(self.root)}:{_file_digest(path)}")
        return hash_bytes("\n".join(digests).encode())

    def _loaded_local_modules(self) -> list[types.ModuleType]:
        return [
            m
            for _, m in sorted(sys.modules.items())
            if isinstance(m, types.ModuleType) and self._is_local_module(m)
        ]

    # --- values ---------------------------------------------------------------------

    def _value(self, value: Any, children: list[Any], depth: int = 0) -> str:
        """A value written out inline; the definitions it holds go to ``children``."""
        if depth > _MAX_DEPTH:
            return "<deep>"
        inner = functools.partial(self._inline, children=children, depth=depth + 1)
        if isinstance(value, str):
            return f"str:{self._placed(value)!r}"
        if isinstance(value, _PRIMITIVES):
            return f"{type(value).__name__}:{value!r}"
        definition = _target_function(value)
        if isinstance(definition, types.FunctionType):
            children.append(definition)
            local = self._is_local_function(definition)
            digest = code_digest(definition.__code__) if local else ""
            return f"fn:{_name(definition)}:{digest}"
        if isinstance(value, type | types.ModuleType):
            children.append(value)
            return f"{'cls' if isinstance(value, type) else 'module'}:{_name(value)}"
        if isinstance(value, list | tuple):
            return f"{type(value).__name__}[{','.join(inner(v) for v in value)}]"
        if isinstance(value, dict):
            items = sorted(f"{inner(k)}:{inner(v)}" for k, v in value.items())
            return f"{type(value).__name__}{{{','.join(items)}}}"
        if isinstance(value, set | frozenset):
            return f"{type(value).__name__}{{{','.join(sorted(inner(v) for v in value))}}}"
        if isinstance(value, functools.partial):
            return f"partial({inner(value.func)},{inner(value.args)},{inner(value.keywords)})"
        if isinstance(value, staticmethod | classmethod):
            return f"{type(value).__name__}({inner(value.__func__)})"
        if isinstance(value, property):
            return f"property({inner(value.fget)},{inner(value.fset)},{inner(value.fdel)})"
        if isinstance(value, types.MethodType):
            return f"method({inner(value.__func__)},{inner(value.__self__)})"
        wrapped = _attribute(value, "__wrapped__") if not isinstance(value, type) else None
        if wrapped is not None:  # lru_cache, cache, and other wrappers made in C
            return f"wrapper:{_name(type(value))}({inner(wrapped)})"
        return self._instance(value, children, depth)

    def _inline(self, value: Any, children: list[Any], depth: int) -> str:
        return self._value(value, children, depth)

    def _instance(self, value: Any, children: list[Any], depth: int) -> str:
        cls = type(value)
        cls_ref = self._value(cls, children, depth + 1)
        local = self._is_local_module_name(cls.__module__)
        shown = "" if local else self._placed(_shown(value))
        state: dict[str, Any] = {}
        # An installed class's instance with a repr of its own (a Path, a pattern, a
        # date) is that repr; one with the default `<... object>` also by its state.
        if local or (shown.startswith("<") and depth < _FOREIGN_DEPTH):
            state = dict(getattr(value, "__dict__", None) or {})
            for slot in _slots(cls):
                found = _attribute(value, slot)
                if found is not None:
                    state[slot] = found
        digest = f"<{hash_bytes(shown.encode())}>" if shown else ""
        return f"obj:{cls_ref}{digest}{self._value(state, children, depth + 1)}"

    def _placed(self, text: str) -> str:
        """Text without the repository's location (``Path(__file__).parent`` differs
        between checkouts, not between codes)."""
        if self.root is None:
            return text
        return text.replace(str(self.root), "<repository>")

    # --- what is the repository's ---------------------------------------------------

    def _is_local_file(self, file: str | None) -> bool:
        if self.root is None or not file or file.startswith("<"):
            return False
        if file not in self._local_files:
            local = not any(part in file for part in _INSTALLED)
            self._local_files[file] = local and Path(file).resolve().is_relative_to(self.root)
        return self._local_files[file]

    def _is_local_function(self, fn: types.FunctionType) -> bool:
        file = fn.__code__.co_filename
        if file.startswith("<"):
            # Made at run time (a dataclass's __init__, exec): it is the module's that made it.
            return self._is_local_module_name(fn.__module__ or "")
        return self._is_local_file(file)

    def _is_local_module(self, module: types.ModuleType) -> bool:
        return self._is_local_file(getattr(module, "__file__", None))

    def _is_local_module_name(self, name: str) -> bool:
        module = sys.modules.get(name)
        return module is not None and self._is_local_module(module)


_MISSING = object()
_SKIPPED_DIRS = frozenset(
    {"__pycache__", "venv", "env", "node_modules", "build", "dist", *_INSTALLED}
)


class _RepositorySources:
    """A node for the repository's Python files as a whole."""


def _target_function(value: Any) -> Any:
    """A Target stands for its function."""
    if isinstance(value, type) or type(value).__name__ != "Target":
        return value
    fn = _attribute(value, "fn")
    return fn if isinstance(fn, types.FunctionType) else value


def _attribute(value: Any, name: str) -> Any:
    """An attribute, or None; an object's own ``__getattr__`` may raise anything."""
    try:
        return getattr(value, name, None)
    except Exception:
        return None


def _resolve(chain: tuple[str, ...], namespace: dict[str, Any]) -> Any:
    """The value an attribute chain reads: through modules, to the first value that isn't one."""
    head = chain[0]
    if head in namespace:
        value = namespace[head]
    else:
        return _MISSING  # a builtin, or a name not defined yet
    for attribute in chain[1:]:
        if not isinstance(value, types.ModuleType):
            break  # a class or an instance: it counts whole
        following = getattr(value, attribute, _MISSING)
        if following is _MISSING:
            following = sys.modules.get(f"{value.__name__}.{attribute}", _MISSING)
        if following is _MISSING:
            break  # not there yet: the module counts whole
        value = following
    return value


def _origin(name: str) -> str | None:
    """Where a top-level module would be imported from, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return getattr(spec, "origin", None)


def _attribute_of(module: types.ModuleType, module_name: str, attribute: str | None) -> Any:
    if attribute is None:
        return module
    value = getattr(module, attribute, _MISSING)
    if value is _MISSING:
        value = sys.modules.get(f"{module_name}.{attribute}", module)
    return value


def _slots(cls: type) -> list[str]:
    found: list[str] = []
    for klass in cls.__mro__:
        slots = vars(klass).get("__slots__", ())
        found.extend([slots] if isinstance(slots, str) else slots)
    return [s for s in found if s not in ("__dict__", "__weakref__")]


def _shown(value: Any) -> str:
    """An installed class's instance by its repr, without the addresses that vary by process."""
    try:
        return _ADDRESS.sub("", repr(value))[:100_000]
    except Exception:
        return ""


def _source_digest(module: types.ModuleType) -> str:
    file = getattr(module, "__file__", None)
    return _file_digest(Path(file)) if file else ""


def _file_digest(path: Path) -> str:
    """A Python file as a syntax tree: comments and formatting don't count."""
    try:
        stat = path.stat()
    except OSError:
        return "unreadable"
    return _parsed_digest(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4096)
def _parsed_digest(path: str, mtime_ns: int, size: int) -> str:
    # Keyed by modification time and size too, so an edited file is parsed again.
    try:
        source = Path(path).read_text(encoding="utf-8")
        return hash_bytes(ast.dump(ast.parse(source), annotate_fields=False).encode())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return "unreadable"


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', None) or obj.__name__}"
