"""An asset's page (its files as a tree, with sizes, previews and downloads) and its files.

Files are named by the asset's manifest, never by the URL: a path that is not
an entry of the manifest is a 404. A file opens in the browser only as a
picture or plain text (never as HTML or SVG, which could run script on this
origin); anything else downloads.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from ....assets import PREFIX, Entry, decode, parse_reference
from ....errors import BlobError, NotFound
from ..blobstores import ProjectBlobs, blobs_of
from ..deps import ProjectDep
from ..orchestration import assets as asset_queries
from ..web.run_page import environment_list
from ..web.templating import templates

router = APIRouter(include_in_schema=False)

#: Types a file may be shown as, inline; every other file downloads.
INLINE = {"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"}
TEXT_SUFFIXES = (
    ".txt",
    ".csv",
    ".tsv",
    ".json",
    ".md",
    ".log",
    ".py",
    ".yaml",
    ".yml",
    ".toml",
    ".ini",
    ".xml",
    ".html",
    ".sql",
    ".jsonl",
)
#: Bytes of a text file shown on the asset page.
TEXT_PREVIEW = 4096


def _manifest(request: Request, project: str, ref: str) -> tuple[ProjectBlobs, str, list[Entry]]:
    key = parse_reference(ref)
    store = blobs_of(request.app.state.settings, project)
    try:
        return store, key, decode(store.get_bytes(key))
    except BlobError:
        raise NotFound(f"unknown asset {PREFIX}{key}") from None


def _kind(path: str) -> str:
    lowered = path.lower()
    if lowered.endswith(TEXT_SUFFIXES):
        return "text"
    guessed = mimetypes.guess_type(path)[0] or ""
    return "image" if guessed in INLINE and guessed.startswith("image/") else "other"


def file_tree(entries: list[Entry]) -> list[dict[str, Any]]:
    """Entries as rows of a tree, folders first at each level, each with its depth
    and (for folders) the files and bytes beneath it."""
    root: dict[str, Any] = {"dirs": {}, "files": []}
    for e in entries:
        node = root
        parts = e.path.split("/")
        for part in parts[:-1]:
            node = node["dirs"].setdefault(part, {"dirs": {}, "files": []})
        node["files"].append(e)
    rows: list[dict[str, Any]] = []

    def totals(node: dict[str, Any]) -> tuple[int, int]:
        files, size = len(node["files"]), sum(f.size for f in node["files"])
        for child in node["dirs"].values():
            f, s = totals(child)
            files, size = files + f, size + s
        return files, size

    def walk(node: dict[str, Any], depth: int, prefix: str) -> None:
        for name in sorted(node["dirs"]):
            child = node["dirs"][name]
            files, size = totals(child)
            rows.append(
                {
                    "dir": True,
                    "name": name + "/",
                    "path": prefix + name,
                    "depth": depth,
                    "files": files,
                    "size": size,
                }
            )
            walk(child, depth + 1, prefix + name + "/")
        for f in sorted(node["files"], key=lambda f: f.path):
            rows.append(
                {
                    "dir": False,
                    "name": f.path.rsplit("/", 1)[-1],
                    "path": f.path,
                    "depth": depth,
                    "size": f.size,
                    "kind": _kind(f.path),
                }
            )

    walk(root, 0, "")
    return rows


@router.get("/projects/{project}/assets/{ref}", response_class=HTMLResponse)
def asset_page(
    request: Request,
    project: ProjectDep,
    ref: str,
    env: str | None = Query(None, max_length=200),
) -> Response:
    store, key, entries = _manifest(request, project.name, ref)
    with project.engine.connect() as c:
        records = asset_queries.asset_records(c, key)
    previews: list[dict[str, Any]] = []
    for e in entries:
        kind = _kind(e.path)
        if kind == "text" and len(previews) < 5 and all(store.has(b) for b in e.blobs[:1]):
            head = next(store.open_chunks(e.blobs[0]), b"")[:TEXT_PREVIEW] if e.blobs else b""
            previews.append(
                {
                    "path": e.path,
                    "kind": "text",
                    "size": e.size,
                    "text": head.decode("utf-8", "replace"),
                    "cut": e.size > TEXT_PREVIEW,
                }
            )
        elif kind == "image" and len(previews) < 5:
            previews.append({"path": e.path, "kind": "image", "size": e.size})
    context = {
        "project": project.name,
        "env": env,
        "environments": environment_list(project),
        "ref": f"{PREFIX}{key}",
        "rows": file_tree(entries),
        "files": len(entries),
        "size": sum(e.size for e in entries),
        "records": records,
        "previews": previews,
    }
    return templates.TemplateResponse(request, "asset.html", context)


@router.get("/projects/{project}/assets/{ref}/files/{path:path}")
def asset_file(
    request: Request, project: ProjectDep, ref: str, path: str, inline: bool = False
) -> Response:
    """One file of an asset, streamed from its blobs (named by the manifest, never by the URL)."""
    store, key, entries = _manifest(request, project.name, ref)
    entry = next((e for e in entries if e.path == path), None)
    if entry is None:
        raise NotFound(f"asset {PREFIX}{key} has no file {path[:200]!r}")
    for blob in entry.blobs:
        if not store.has(blob):
            raise NotFound(f"a blob of {path[:200]!r} is not on the server")

    def content() -> Any:
        for blob in entry.blobs:
            yield from store.open_chunks(blob)

    name = quote(entry.path.rsplit("/", 1)[-1])
    kind = _kind(entry.path)
    media = "application/octet-stream"
    if inline and kind == "image":
        media = mimetypes.guess_type(entry.path)[0] or media
    elif inline and kind == "text":
        media = "text/plain; charset=utf-8"
    disposition = "inline" if media != "application/octet-stream" else "attachment"
    return StreamingResponse(
        content(),
        media_type=media,
        headers={
            "Content-Length": str(entry.size),
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{name}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        },
    )
