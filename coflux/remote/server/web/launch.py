"""A launch form generated from a workflow's signature: one typed field per parameter.

A parameter annotated ``int``, ``float``, ``bool`` or ``str`` gets an input of
that kind; anything else a JSON text box. A default that is a plain literal
fills the field (and a field left at it is not sent, so the run shows the
default); a default that isn't (``datetime.now()``) is left to the workflow.
"""

from __future__ import annotations

import json
from typing import Any

from .values import default_value

KINDS = {"int": "int", "float": "float", "bool": "bool", "str": "str"}


def fields(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in parameters:
        if p.get("kind") == "var_positional":
            out.append(
                {
                    "name": f"*{p['name']}",
                    "kind": "json",
                    "required": False,
                    "value": "",
                    "default": None,
                    "default_repr": None,
                    "annotation": "more arguments, as a JSON list",
                    "variadic": True,
                }
            )
            continue
        kind = KINDS.get((p.get("annotation") or "").strip(), "json")
        known, default = default_value(p.get("default"))
        if known and kind == "int" and not isinstance(default, int):
            kind = "json"
        value = ""
        if known:
            value = default if kind == "str" else json.dumps(default)
        out.append(
            {
                "name": p["name"],
                "kind": kind,
                "annotation": p.get("annotation"),
                "required": p.get("default") is None,
                "value": value,
                "checked": bool(default) if kind == "bool" and known else False,
                "default": json.dumps(default) if known else None,
                "default_repr": p.get("default"),
                "variadic": False,
            }
        )
    return out
