"""The web page: ``GET /`` (``api/web/index.html``), ``GET /static/{name}`` (its scripts and styles,
shipped in the package, no CDN) and ``GET /pages/{source}/{page}.png`` (a PDF page as an image,
for the passage viewer).

A page image is rendered server-side by ``pypdfium2`` in a child process (:mod:`api.pagerender`:
a time limit, a memory limit, a crash stays there) and cached on disk under
``INDEX_DIR/page-cache``, keyed by the file's path and content hash, so a changed file gets new
images. Only a file the collection has indexed (its ``source`` as cited, in the manifest) can be
rendered: the route never opens a path given by the client. The page and its files are open (they
hold no data); a page image needs a key that may read the collection (:mod:`api.auth`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from api.auth import CallerDep
from api.deps import AppCollections
from rag.engine import Rag
from rag.errors import RagError

router = APIRouter(include_in_schema=False)

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(?:js|css|svg|png)$")
SCALE = 1.5  # 72 dpi * 1.5: an A4 page is 893 px wide, sharp enough beside the passage
MAX_PAGE = 100_000


class NotFound(RagError):
    status = 404
    code = "not_found"


def _asset(name: str) -> bytes | None:
    item = resources.files("api").joinpath("web", name)
    return item.read_bytes() if item.is_file() else None


def _send(request: Request, name: str, data: bytes) -> Response:
    """``data`` with its type, an ETag, and ``no-cache`` (revalidated, so an upgrade shows at once)."""
    etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=TYPES[Path(name).suffix], headers=headers)


@router.get("/")
def index(request: Request) -> Response:
    data = _asset("index.html")
    if data is None:
        raise NotFound("The web page is not installed (api/web/index.html is missing).")
    return _send(request, "index.html", data)


@router.get("/static/{name}")
def static(name: str, request: Request) -> Response:
    data = _asset(name) if _NAME.match(name) else None
    if data is None:
        raise NotFound(f"No such file: /static/{name}")
    return _send(request, name, data)


def _indexed_pdf(rag: Rag, source: str) -> tuple[str, str]:
    """(path, content hash) of the indexed PDF cited as ``source``; NotFound otherwise."""
    manifest = rag.manifest.path
    if not manifest.exists():
        raise NotFound(f"No such document: {source}")
    db = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute(
            "SELECT path, hash, kind FROM files WHERE source = ? AND status = 'ok' ORDER BY path LIMIT 1", (source,)
        ).fetchone()
    finally:
        db.close()
    if row is None:
        raise NotFound(f"No such document: {source}")
    if row[2] != "pdf":
        raise NotFound(f"Not a PDF: {source}")
    return str(row[0]), str(row[1] or "")


@router.get("/pages/{source:path}/{page:int}.png")
def page_image(
    source: str,
    page: int,
    collections: AppCollections,
    caller: CallerDep,
    collection: Annotated[str | None, Query(description="The collection (default: the service's).")] = None,
) -> Response:
    """Page ``page`` (1-based) of the indexed PDF cited as ``source``, as a PNG."""
    if not 1 <= page <= MAX_PAGE:
        raise NotFound(f"No page {page} in {source}")
    from api.pagerender import render

    target = collections.checked(caller, collection, "read")  # 400, 403 or 404 as for /query
    path, digest = _indexed_pdf(target, source)
    if not os.path.isfile(path):
        raise NotFound(f"{source} is indexed but no longer on disk")
    cache = target.settings.index_dir / "page-cache"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{path}\0{digest}\0{SCALE}".encode()).hexdigest()[:32]
    png = cache / f"{key}-{page}.png"
    if not png.exists():
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
        os.close(fd)
        try:
            code = render(path, page, Path(tmp), scale=SCALE, memory_mb=target.settings.pdf_memory_mb)
            if code == 3:
                raise NotFound(f"No page {page} in {source}")
            if code != 0:
                raise RagError(f"Could not render page {page} of {source}")
            os.replace(tmp, png)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return FileResponse(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
