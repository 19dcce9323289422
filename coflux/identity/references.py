"""What a function's code refers to, read from its bytecode: names, attribute chains, imports.

The code hash (:mod:`coflux.identity.hashing`) follows what a target can reach. This
module answers, for one code object and the code nested in it, which global
names it reads and which attribute chains it reads through them
(``pkg.sub.f`` is the chain ``("pkg", "sub", "f")``), which modules it imports
inside its body, and whether it looks names up in ways no static reading can
follow (``globals()``, ``eval``, ``importlib.import_module``...), so the hasher
can be conservative there. It also gives a code object's digest: its
instructions, constants and names, without line numbers, so comments and
formatting change nothing.
"""

from __future__ import annotations

import dis
import importlib.util
import types
from dataclasses import dataclass, field

from ..cache.keys import hash_bytes

_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTRIBUTE_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})

#: Builtins that read a module's namespace by computed name: the hasher covers
#: the whole module of a function that calls one.
NAMESPACE_READERS = frozenset({"globals", "vars", "eval", "exec", "locals", "dir"})
#: Names whose call imports a module by computed name: the hasher covers every
#: module of the repository that is loaded.
DYNAMIC_IMPORTERS = frozenset({"__import__", "import_module", "modules"})


@dataclass
class References:
    """What one function's code (and the code nested in it) reads."""

    chains: set[tuple[str, ...]] = field(default_factory=set)
    #: Absolute names of modules imported in the body, and names imported from them.
    imports: set[tuple[str, str | None]] = field(default_factory=set)
    reads_namespace: bool = False
    imports_dynamically: bool = False


def references(code: types.CodeType, package: str | None) -> References:
    """The global names, attribute chains and imports of ``code`` and its nested code."""
    found = References()
    for each in _all_code(code):
        _scan(each, package, found)
    return found


def code_digest(code: types.CodeType) -> str:
    """A digest of what a code object does: instructions, constants, names; not line numbers."""
    parts = [
        code.co_name,
        code.co_code.hex(),
        repr(code.co_names),
        repr(code.co_varnames),
        repr(code.co_freevars),
        repr(code.co_cellvars),
        repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)),
        repr(code.co_flags),
        code.co_exceptiontable.hex() if hasattr(code, "co_exceptiontable") else "",
        *(_constant(c) for c in code.co_consts),
    ]
    return hash_bytes("\0".join(parts).encode())


def _constant(value: object) -> str:
    if isinstance(value, types.CodeType):
        return f"code:{code_digest(value)}"
    if isinstance(value, frozenset):
        # A set's order depends on the process's string hash seed: sort it.
        return "frozenset(" + ",".join(sorted(_constant(v) for v in value)) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(_constant(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"


def _all_code(code: types.CodeType) -> list[types.CodeType]:
    found = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.extend(_all_code(const))
    return found


def _scan(code: types.CodeType, package: str | None, found: References) -> None:
    instructions = list(dis.get_instructions(code))
    chain: list[str] = []
    constants: list[object] = []  # the last constants loaded, for an import's level
    last_import = ""
    for instruction in instructions:
        op, value = instruction.opname, instruction.argval
        if op in _ATTRIBUTE_LOADS and chain:
            chain.append(value)
            continue
        if chain:
            _add_chain(tuple(chain), found)
            chain = []
        if op in _GLOBAL_LOADS:
            chain = [value]
        elif op == "LOAD_CONST":
            constants = [*constants[-1:], value]
        elif op == "IMPORT_NAME":
            level = constants[0] if len(constants) == 2 and isinstance(constants[0], int) else 0
            last_import = _absolute(value or "", level, package)
            found.imports.add((last_import, None))
        elif op == "IMPORT_FROM" and last_import:
            # `from m import a` reads `a` of `m`, not the whole of `m`.
            found.imports.discard((last_import, None))
            found.imports.add((last_import, value))
        if op in _ATTRIBUTE_LOADS and value in DYNAMIC_IMPORTERS:
            found.imports_dynamically = True
    if chain:
        _add_chain(tuple(chain), found)


def _add_chain(chain: tuple[str, ...], found: References) -> None:
    found.chains.add(chain)
    if chain[0] in NAMESPACE_READERS:
        found.reads_namespace = True
    if any(name in DYNAMIC_IMPORTERS for name in chain):
        found.imports_dynamically = True


def _absolute(name: str, level: int, package: str | None) -> str:
    if not level:
        return name
    try:
        return importlib.util.resolve_name("." * level + name, package)
    except (ImportError, ValueError):
        return name
