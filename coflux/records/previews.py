"""Typed values' previews as text for people: one line for trees, a block for pages.

A preview is the plain JSON a typed serialiser computed where the value was
stored (see :mod:`coflux.serializers`), so this module needs no pandas,
pydantic or user code, and the server, the CLI and the pages share it.
Shapes (the ``preview`` key of a value in ``runs show --json`` and the API):

- DataFrame or Series: ``{"kind": "dataframe" | "series", "shape": [rows, columns],
  "columns": [{"name", "dtype"}], "index": {"name", "dtype"}, "head": {"index": [...],
  "rows": [[...], ...]}}`` (at most 5 rows and 50 columns; ``more_columns`` counts
  the rest).
- pydantic model: ``{"kind": "model", "model": "Order", "json": {...}}``.
- numpy array: ``{"kind": "array", "shape": [...], "dtype": "float64", "first": [...]}``.
"""

from __future__ import annotations

import json
from typing import Any


def _shape(shape: list[int]) -> str:
    return " × ".join(str(n) for n in shape)


def summary(preview: dict[str, Any]) -> str:
    """One line: ``DataFrame 3 × 4: city category, when datetime64[ns], ...``."""
    kind = preview.get("kind")
    if kind in ("dataframe", "series"):
        columns = ", ".join(f"{c['name']} {c['dtype']}" for c in preview.get("columns", []))
        more = preview.get("more_columns")
        name = "DataFrame" if kind == "dataframe" else "Series"
        return f"{name} {_shape(preview['shape'])}: {columns}{f' (+{more})' if more else ''}"
    if kind == "model":
        return f"{preview.get('model')} {json.dumps(preview.get('json'), ensure_ascii=False)}"
    if kind == "array":
        return f"array {_shape(preview['shape'])} {preview.get('dtype')}"
    return json.dumps(preview, ensure_ascii=False)


def block(preview: dict[str, Any]) -> str:
    """Several lines: the summary, then a frame's first rows or a model's JSON."""
    kind = preview.get("kind")
    if kind in ("dataframe", "series"):
        head = preview.get("head") or {}
        names = [str(preview.get("index", {}).get("name") or "")]
        names += [c["name"] for c in preview.get("columns", [])]
        rows = [
            [str(i), *(_cell(v) for v in row)]
            for i, row in zip(head.get("index", []), head.get("rows", []), strict=False)
        ]
        widths = [max(len(r[i]) for r in [names, *rows]) for i in range(len(names))]
        lines = [summary(preview)]
        for row in [names, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)))
        shown = len(rows)
        if preview["shape"][0] > shown:
            lines.append(f"… {preview['shape'][0] - shown} more rows")
        return "\n".join(line.rstrip() for line in lines)
    if kind == "model":
        return f"{preview.get('model')}\n{json.dumps(preview.get('json'), indent=2)}"
    if kind == "array":
        first = ", ".join(_cell(v) for v in preview.get("first", []))
        return f"{summary(preview)}\n[{first}{', …' if len(preview.get('first', [])) else ''}]"
    return json.dumps(preview, indent=2)


def _cell(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)
