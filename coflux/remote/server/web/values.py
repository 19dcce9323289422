"""Values as people read them in a page: a collapsible JSON tree, links, previews.

A stored value is never unpickled here (invariant I8). A JSON value is drawn as
a tree of ``<details>`` (keyboard-operable without script); references inside
it (``{"$ref": i}``) become links to the execution's step or the asset's page.
A JSON value kept in a blob is drawn as a button that fetches its tree on
demand, beside a link to the raw bytes. Any other value shows its type, its
repr and, when the agent attached one, its ``preview``: a table when it has
``columns`` and ``rows``, a JSON tree otherwise.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from ....records import previews

#: Nodes drawn in one tree; past this the rest is behind the raw link.
NODE_BUDGET = 4000
#: Children of one container drawn before "… N more".
CHILD_LIMIT = 200
#: Containers nested deeper than this start closed.
OPEN_DEPTH = 2
#: A container whose JSON text is at most this long is drawn on one line.
INLINE_TEXT = 60


@dataclass(frozen=True)
class Links:
    """Where references in a value point: the project's pages, seen from ``env``."""

    project: str
    env: str

    def execution(self, ref: str) -> str:
        run, step, *_ = ref.split(":") + ["1"]
        where = f"/projects/{quote(self.project)}/runs/{quote(run)}"
        return f"{where}?env={quote(self.env)}&step={quote(step)}"

    def asset(self, ref: str) -> str:
        return f"/projects/{quote(self.project)}/assets/{quote(ref)}?env={quote(self.env)}"

    def blob(self, key: str) -> str:
        return f"/api/projects/{quote(self.project)}/blobs/{quote(key)}"


def render(value: dict[str, Any] | None, links: Links, lazy_url: str | None = None) -> Markup:
    """A stored value as HTML. ``lazy_url`` answers the whole tree of a value kept in a blob."""
    if value is None:
        return Markup('<span class="muted">no value</span>')
    references = list(value.get("references") or [])
    preview = value.get("preview")
    if value.get("format") == "json" and "data" in value:
        return Markup('<div class="value">{}</div>').format(tree(value["data"], references, links))
    parts: list[Markup] = []
    if value.get("format") == "json" and value.get("blob"):
        size = value.get("size") or 0
        raw = links.blob(value["blob"])
        parts.append(
            Markup(
                '<div class="value lazy" data-src="{src}">'
                '<button type="button" class="secondary" data-action="load-value">'
                "Show the value ({size} bytes of JSON)</button> "
                '<a href="{raw}" download>raw JSON</a></div>'
            ).format(src=lazy_url or "", size=f"{size:,}", raw=raw)
        )
    else:
        kind = value.get("type") or value.get("format") or "value"
        parts.append(
            Markup('<div class="value"><span class="type">{}</span> <code>{}</code></div>').format(
                kind, value.get("repr") or f"<{value.get('size')} bytes>"
            )
        )
    if preview is not None:
        parts.append(render_preview(preview, links))
    return Markup("").join(parts)


def _as_table(preview: Any) -> Any:
    """A DataFrame's or Series' preview (``coflux.records.previews``: columns as
    ``{"name", "dtype"}``, rows under ``head``) as columns, dtypes and rows."""
    if not (isinstance(preview, dict) and preview.get("kind") in ("dataframe", "series")):
        return preview
    columns = [c for c in preview.get("columns") or [] if isinstance(c, dict)]
    head: Any = preview.get("head") if isinstance(preview.get("head"), dict) else {}  # JSON
    index = head.get("index") if isinstance(head.get("index"), list) else None
    rows = head.get("rows") if isinstance(head.get("rows"), list) else []
    if index is not None and len(index) == len(rows):
        name = (preview.get("index") or {}).get("name") or ""
        dtype = (preview.get("index") or {}).get("dtype")
        return {
            "shape": preview.get("shape"),
            "columns": [name, *(c.get("name") for c in columns)],
            "dtypes": [dtype, *(c.get("dtype") for c in columns)],
            "rows": [
                [i, *(r if isinstance(r, list) else [r])] for i, r in zip(index, rows, strict=True)
            ],
        }
    return {
        "shape": preview.get("shape"),
        "columns": [c.get("name") for c in columns],
        "dtypes": [c.get("dtype") for c in columns],
        "rows": rows,
    }


def render_preview(preview: Any, links: Links) -> Markup:
    """A typed value's preview: a table when it has columns and rows, else a tree;
    a typed serialiser's (``coflux.records.previews``) under its one-line summary."""
    summary = ""
    if isinstance(preview, dict) and "kind" in preview:
        try:
            summary = previews.summary(preview)
        except (KeyError, TypeError, ValueError):  # a preview of another shape
            summary = ""
    preview = _as_table(preview)
    if (
        isinstance(preview, dict)
        and isinstance(preview.get("columns"), list)
        and isinstance(preview.get("rows"), list)
    ):
        columns = preview["columns"]
        head = Markup("").join(Markup("<th scope=col>{}</th>").format(_cell(c)) for c in columns)
        dtypes = preview.get("dtypes")
        if isinstance(dtypes, dict):
            dtypes = [dtypes.get(str(c)) for c in columns]
        if isinstance(dtypes, list):
            head += Markup("</tr><tr class=dtypes>") + Markup("").join(
                Markup("<td class=muted>{}</td>").format(_cell(d)) for d in dtypes
            )
        body = Markup("").join(
            Markup("<tr>{}</tr>").format(
                Markup("").join(Markup("<td>{}</td>").format(_cell(v)) for v in row)
                if isinstance(row, list)
                else Markup("<td>{}</td>").format(_cell(row))
            )
            for row in preview["rows"][:CHILD_LIMIT]
        )
        shape = preview.get("shape")
        caption = f"shape {' × '.join(str(s) for s in shape)}" if isinstance(shape, list) else ""
        caption = summary or caption
        return Markup(
            '<div class="scroll preview" tabindex="0"><table class="data"><caption>{}</caption>'
            "<thead><tr>{}</tr></thead><tbody>{}</tbody></table></div>"
        ).format(caption or "preview", head, body)
    return Markup('<div class="preview"><span class="muted">{}</span>{}</div>').format(
        summary or "preview", tree(preview, [], links)
    )


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def tree(data: Any, references: list[str], links: Links) -> Markup:
    """JSON data as nested ``<details>``; at most ``NODE_BUDGET`` nodes."""
    budget = [NODE_BUDGET]
    out: list[str] = []
    _node(data, references, links, 0, budget, out)
    if budget[0] <= 0:
        out.append('<p class="muted">Cut here: open the raw value for the rest.</p>')
    return Markup("".join(out))


def _node(
    data: Any, references: list[str], links: Links, depth: int, budget: list[int], out: list[str]
) -> None:
    budget[0] -= 1
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("$ref"), int):
        out.append(_reference(data["$ref"], references, links))
        return
    if not isinstance(data, (dict, list)) or not data:
        out.append(_scalar(data))
        return
    text = json.dumps(data, ensure_ascii=False)
    if len(text) <= INLINE_TEXT and "$ref" not in text:
        out.append(f'<code class="json">{escape(text)}</code>')
        return
    items = list(data.items()) if isinstance(data, dict) else list(enumerate(data))
    noun = (
        ("key" if len(items) == 1 else "keys")
        if isinstance(data, dict)
        else ("item" if len(items) == 1 else "items")
    )
    opening = "{" if isinstance(data, dict) else "["
    state = " open" if depth < OPEN_DEPTH else ""
    out.append(
        f'<details class="json"{state}><summary>{opening} {len(items):,} {noun}</summary><ul>'
    )
    for shown, (key, item) in enumerate(items):
        if shown >= CHILD_LIMIT or budget[0] <= 0:
            out.append(f'<li class="muted">… {len(items) - shown:,} more</li>')
            break
        label = escape(json.dumps(key, ensure_ascii=False)) if isinstance(key, str) else key
        out.append(f'<li><span class="key">{label}:</span> ')
        _node(item, references, links, depth + 1, budget, out)
        out.append("</li>")
    out.append("</ul></details>")


def _scalar(data: Any) -> str:
    kind = (
        "null"
        if data is None
        else "bool"
        if isinstance(data, bool)
        else "number"
        if isinstance(data, (int, float))
        else "string"
        if isinstance(data, str)
        else "json"
    )
    return f'<code class="json {kind}">{escape(json.dumps(data, ensure_ascii=False))}</code>'


def _reference(index: int, references: list[str], links: Links) -> str:
    ref = references[index] if 0 <= index < len(references) else None
    if ref is None:
        return '<span class="muted">(unknown reference)</span>'
    if ref.startswith("a:"):
        url, text = links.asset(ref), f"Asset {ref[:14]}…"
        return f'<a class="ref asset mono" href="{escape(url)}">{escape(text)}</a>'
    url, text = links.execution(ref), f"Execution {ref}"
    return f'<a class="ref execution mono" href="{escape(url)}">{escape(text)}</a>'


def default_value(text: str | None) -> tuple[bool, Any]:
    """A parameter's default (its repr) as JSON data, when it is a plain literal."""
    if text is None:
        return False, None
    try:
        value = ast.literal_eval(text)
        json.dumps(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None
    return True, value


def arguments(
    stored: list[dict[str, Any]],
    parameters: list[dict[str, Any]] | None,
    links: Links,
    lazy_url: str,
) -> list[dict[str, Any]]:
    """A step's arguments beside its target's parameters: each named, those left
    out shown with their default. ``parameters`` is None when the manifest is gone."""
    parameters = parameters or []
    out: list[dict[str, Any]] = []
    variadic = next((p for p in parameters if p.get("kind") == "var_positional"), None)
    for index, value in enumerate(stored):
        if index < len(parameters) and parameters[index].get("kind") != "var_positional":
            p = parameters[index]
        else:
            p = variadic or {"name": f"argument {index + 1}", "annotation": None}
        out.append(
            {
                "name": p["name"]
                if p is not variadic
                else f"*{p['name']}[{index - parameters.index(p)}]",
                "annotation": p.get("annotation"),
                "html": render(value, links, f"{lazy_url}?argument={index}"),
                "default": False,
            }
        )
    for p in parameters[len(stored) :]:
        if p.get("kind") == "var_positional":
            continue
        out.append(
            {
                "name": p["name"],
                "annotation": p.get("annotation"),
                "html": Markup('<code class="json">{}</code>').format(p.get("default") or "?"),
                "default": True,
            }
        )
    return out
