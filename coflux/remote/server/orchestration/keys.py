"""Pure functions over steps' options and serialised arguments: keys, positions, references."""

from __future__ import annotations

from typing import Any

from ....assets.manifest import PREFIX
from ....cache.keys import arguments_key
from ....records.targets import TargetSpec


def result_message(
    state: str, value: dict[str, Any] | None, error: dict[str, Any] | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"state": state}
    if value is not None:
        message["value"] = value
    if error is not None:
        message["error"] = error
    return message


def positions(spec: TargetSpec, names: Any) -> list[int]:
    """Positions of the parameters an option selects: all, or those named."""
    if names is None or names is True:
        return list(range(len(spec.parameters)))
    if not names:
        return []
    positions = [p.name for p in spec.parameters]
    return [positions.index(name) for name in names if name in positions]


def cache_key(
    repository: str,
    spec: TargetSpec,
    arguments: list[dict[str, Any]],
    code_hash: str | None = None,
) -> str | None:
    """The key a cached call is reused by.

    Unless the target pins ``cache_version`` or shares a ``cache_namespace``
    (then the user's contract decides), the key includes the code hash, so a
    result made by different code is never reused (in a branch, from its base).
    """
    cache = spec.options.cache
    if cache is None:
        return None
    selected = [arguments[i] for i in positions(spec, cache.params) if i < len(arguments)]
    namespace = cache.namespace or f"{repository}:{spec.name}"
    pinned = cache.version is not None or cache.namespace is not None
    code = None if pinned else code_hash
    return arguments_key(["cache", namespace, cache.version, *([code] if code else [])], selected)


def memo_key(repository: str, spec: TargetSpec, arguments: list[dict[str, Any]]) -> str | None:
    memo = spec.options.memo
    if not memo:
        return None
    selected = [arguments[i] for i in positions(spec, memo) if i < len(arguments)]
    return arguments_key(["memo", f"{repository}:{spec.name}"], selected)


def defer_key(repository: str, spec: TargetSpec, arguments: list[dict[str, Any]]) -> str | None:
    defer = spec.options.defer
    if not defer:
        return None
    selected = [arguments[i] for i in positions(spec, defer) if i < len(arguments)]
    return arguments_key(["defer", f"{repository}:{spec.name}"], selected)


def reuse_key(
    repository: str, spec: TargetSpec, code_hash: str | None, arguments: list[dict[str, Any]]
) -> str | None:
    """Same target, same code, same arguments: the key an incremental re-run reuses by."""
    if code_hash is None:
        return None
    return arguments_key(["reuse", f"{repository}:{spec.name}", code_hash], arguments)


def wait_indexes(spec: TargetSpec) -> list[int]:
    """The positions of the arguments a step waits for before it starts."""
    wait = spec.options.wait
    if wait is True:
        return list(range(len(spec.parameters)))
    if not wait:
        return []
    names = [p.name for p in spec.parameters]
    return [names.index(name) for name in wait if name in names]


def references(arguments: list[dict[str, Any]]) -> list[str]:
    """The execution references inside serialised arguments (not the assets')."""
    refs: list[str] = []
    for argument in arguments:
        refs.extend(r for r in argument.get("references") or () if not r.startswith(PREFIX))
    return refs
