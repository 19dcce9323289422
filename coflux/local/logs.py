"""Log messages as people read them: the template filled from its values."""

from __future__ import annotations

import json
import string
from typing import Any


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) >= {"$type", "repr"}:
        return str(value["repr"])
    return json.dumps(value, ensure_ascii=False)


def format_message(message: dict[str, Any]) -> str:
    """``template`` with ``{name}`` filled from ``values``; unknown names stay as written."""
    template = message.get("template") or ""
    values = message.get("values") or {}
    if not values:
        return template
    try:
        filled = string.Formatter().vformat(
            template, (), _Values({k: _show(v) for k, v in values.items()})
        )
    except (ValueError, IndexError, AttributeError, KeyError):
        filled = template
    extra = [f"{k}={_show(v)}" for k, v in values.items() if "{" + k not in template]
    return " ".join([filled, *extra]) if extra else filled
