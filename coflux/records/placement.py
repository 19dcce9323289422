"""Placement tags: what an agent ``provides`` and what a target ``requires``.

A tag has a name and one or more values. A target's ``requires={"gpu": True,
"region": ["eu", "us"]}`` is satisfied by an agent that, for every required
name, provides at least one of the values listed for it (``True``/``False``
are the values ``"true"``/``"false"``). An agent provides several values for a
name with ``--provides region=eu,us`` (or the flag repeated), in
``COFLUX_PROVIDES="gpu=a100,region=eu,region=us"`` (the name repeated: there
commas separate tags), or as a list in ``.coflux.toml``.

Tags are stored and shown as a string when they have one value and as a
sorted list when they have several, so single-valued tags keep the shape
they always had.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInput

#: A tag's values as stored: one string, or a sorted list of several.
TagValue = str | list[str]
Tags = dict[str, TagValue]


def _value(item: Any, key: str, what: str) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if not isinstance(item, str) or not item or item != item.strip() or "," in item:
        raise InvalidInput(
            f"{what}: tag {key!r} needs a non-empty string value without ',' or "
            f"surrounding spaces (or True/False, or a list of them), not {item!r}"
        )
    return item


def _stored(values: list[str]) -> TagValue:
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else distinct


def values_of(value: TagValue) -> list[str]:
    """A stored tag's values as a list."""
    return [value] if isinstance(value, str) else list(value)


def validate_tags(tags: Any, what: str) -> Tags:
    """Check and normalise placement tags: a dict of names to a value or a list of
    values. Names hold no ``=``, ``,`` nor surrounding spaces; values no ``,``, so
    every tag can be written as ``--provides key=value,value``."""
    if not isinstance(tags, dict):
        raise InvalidInput(f"{what} must be a dict of tag names to strings, not {tags!r}")
    out: Tags = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key or key != key.strip() or any(c in key for c in "=,"):
            raise InvalidInput(
                f"{what}: invalid tag name {key!r}: use a non-empty string without '=', ',' "
                "or surrounding spaces"
            )
        items = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not items:
            raise InvalidInput(f"{what}: tag {key!r} needs at least one value")
        out[key] = _stored([_value(item, key, what) for item in items])
    return out


def parse_tags(texts: list[str], what: str) -> Tags:
    """Tags written as ``key=value`` flags: ``key=a,b`` gives ``key`` two values,
    and so does ``key=a`` then ``key=b``. Coflux 0.6's ``key:value`` is read as
    ``key=value`` when the flag holds no ``=``."""
    values: dict[str, list[str]] = {}
    for text in texts:
        key, equals, value = text.partition("=" if "=" in text or ":" not in text else ":")
        if not equals or not key.strip():
            raise InvalidInput(f"{what}: expected key=value (e.g. gpu=a100), not {text!r}")
        values.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    return validate_tags(values, what)


def parse_tag_list(text: str, what: str) -> Tags:
    """``COFLUX_PROVIDES="gpu=a100,region=eu,region=us"``: tags separated by commas,
    a name repeated for several values."""
    values: dict[str, list[str]] = {}
    for item in (t for t in text.split(",") if t.strip()):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InvalidInput(f"{what}: expected key=value (e.g. gpu=a100), not {item!r}")
        values.setdefault(key.strip(), []).append(value.strip())
    return validate_tags(values, what)


def satisfies(provides: Tags, requires: Tags) -> bool:
    """Whether an agent providing these tags may run a target requiring those:
    for every required name, the agent provides at least one of its values."""
    return all(
        key in provides and set(values_of(provides[key])) & set(values_of(value))
        for key, value in requires.items()
    )


def describe(tags: Tags) -> str:
    """``gpu=a100, region=eu|us`` for people."""
    return ", ".join(f"{k}={'|'.join(values_of(v))}" for k, v in sorted(tags.items()))
