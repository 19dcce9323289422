"""Finding a user's repositories: a module named by dotted name or by ``.py`` path.

Both the agent (to build manifests) and each execution process (to run
targets) load repositories the same way, so a path and a dotted name give the
same repository name: the module's ``__name__``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from ..decorators import Target
from ..errors import RepositoryError
from ..identity.hashing import CodeHasher, repository_root


def repository_name(spec: str) -> str:
    """The repository a MODULE argument names, without importing it."""
    if spec.endswith(".py") or os.sep in spec:
        return Path(spec).stem
    return spec


def import_repository(spec: str) -> ModuleType:
    """Import a module given as a dotted name or a path to a ``.py`` file."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise RepositoryError(
                f"no such file: {spec}; give a path to a .py file or a module name"
            )
        directory, name = str(path.parent), path.stem
    else:
        directory, name = os.getcwd(), spec
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise RepositoryError(
                f"can't find module {name!r} (looked in {directory} and the Python path); "
                "give a dotted module name or a path to a .py file"
            ) from None
        raise RepositoryError(f"importing {name} failed: {_describe(e)}") from None
    except SyntaxError as e:
        raise RepositoryError(
            f"importing {name} failed: SyntaxError: {e.msg} ({e.filename}, line {e.lineno})"
        ) from None
    except Exception as e:
        raise RepositoryError(f"importing {name} failed: {_describe(e)}") from None


def _describe(e: BaseException) -> str:
    frames = [f for f in _traceback_frames(e) if "importlib" not in f.filename]
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


def _traceback_frames(e: BaseException) -> list[Any]:
    import traceback

    return list(traceback.extract_tb(e.__traceback__))


def targets_of(module: ModuleType) -> dict[str, Target[Any, Any]]:
    """The targets a module defines (not those it imports from elsewhere)."""
    return {
        value.name: value
        for value in vars(module).values()
        if isinstance(value, Target) and value.repository == module.__name__
    }


def load_targets(specs: list[str]) -> dict[tuple[str, str], Target[Any, Any]]:
    found: dict[tuple[str, str], Target[Any, Any]] = {}
    for spec in specs:
        module = import_repository(spec)
        for name, target in targets_of(module).items():
            found[(module.__name__, name)] = target
    return found


def manifests(specs: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The manifests of repositories, by repository name."""
    found = {}
    for spec in specs:
        module = import_repository(spec)
        found[module.__name__] = manifest(module)
    return found


def manifest(module: ModuleType) -> list[dict[str, Any]]:
    """The manifest of a repository: its targets' specs with code hashes."""
    targets = targets_of(module)
    if not targets:
        raise RepositoryError(
            f"module {module.__name__} defines no workflows or tasks; "
            "decorate functions with @cf.workflow() or @cf.task()"
        )
    hasher = CodeHasher(repository_root(module))
    return [
        {**target.spec.to_dict(), "code_hash": hasher.hash(target.fn)}
        for _, target in sorted(targets.items())
    ]
