"""Documents over HTTP: uploads, server-side ingests, the files a collection holds, and jobs.

- ``POST /documents?collection=NAME`` (multipart: ``files``, one or more; ``folder``, optional):
  the files are stored under ``UPLOAD_DIR/NAME/FOLDER/`` (:mod:`api.uploads`) and the collection's
  upload folder is ingested by a job; 202 ``{"job": {...}, "files": [{"name", "source", "bytes"}]}``.
- ``POST /ingest`` ``{"paths": [...], "collection": NAME}``: files and folders under
  ``RAG_INGEST_ROOTS`` (:mod:`api.allowlist`) ingested by a job; 202 ``{"job": {...}}``.
- ``GET /documents?collection=NAME``: ``{"collection", "files": [{"source", "uploaded", "status",
  "chunks", "bytes", "error"}]}``; no server path (uploads are named relative to their folder).
- ``DELETE /documents/{source}?collection=NAME``: the file leaves the index (and, if uploaded, the
  disk); ``{"forgotten": [...], "deleted": bool}``; 404 if the collection has no such file.
- ``GET /jobs/{id}``, ``GET /jobs?collection=NAME``: :meth:`api.jobs.Job.to_dict`.

Writes need the ``write`` scope on the collection, reads ``read`` (:mod:`api.auth`); a collection
with a job running (or any other writer) answers writes with 409.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import allowlist
from api.auth import CallerDep, require
from api.deps import AppCollections, check_collection_name
from api.jobs import Jobs
from api.uploads import Receiver, clean_folder, inside
from ingest.manifest import FileRow, manifest_path
from ingest.walker import Selection
from rag.engine import Rag
from rag.errors import InvalidRequestError, RagError

log = logging.getLogger("rag.serve")
router = APIRouter(tags=["documents"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": what}
    for code, what in {
        400: "Invalid request, refused path or name",
        403: "Outside the key's scope, or outside RAG_INGEST_ROOTS",
        404: "No such file or job",
        409: "Another job or process is writing to the collection",
        413: "A file over RAG_MAX_UPLOAD_MB",
        415: "A type of file that cannot be indexed",
        507: "The disk is full",
    }.items()
}


class NotFoundError(RagError):
    code = "not_found"
    status = 404


async def get_jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


AppJobs = Annotated[Jobs, Depends(get_jobs)]


def _upload_folder(rag: Rag) -> Path:
    return rag.settings.uploads_root / rag.settings.collection


# -- uploads ------------------------------------------------------------------------------------
@router.post("/documents", status_code=202, responses=ERRORS)
async def upload(
    request: Request, caller: CallerDep, collections: AppCollections, jobs: AppJobs, collection: str | None = None
) -> JSONResponse:
    """Upload files (multipart, fields `files`; optional field `folder`) into the collection and
    ingest them in a job: `{"job": {...}, "files": [{"name", "source", "bytes"}]}`."""
    rag = collections.checked(caller, collection, "write", create=True)
    folder = _upload_folder(rag)
    folder.mkdir(parents=True, exist_ok=True)
    job = await run_in_threadpool(jobs.reserve, rag, "upload")
    try:
        with Receiver(folder, int(rag.settings.max_upload_mb * 1024 * 1024)) as rx:
            await rx.read(request.headers.get("content-type", ""), request.stream())
            parts = clean_folder(rx.fields.get("folder"))
            stored = await run_in_threadpool(rx.store, parts)
    except BaseException as exc:
        job.cancel()
        if isinstance(exc, RagError) and exc.status < 500:
            log.warning("POST /documents refused (%s): %s", exc.code, exc.message)
        raise
    job.start([folder])
    files = [{"name": s.name, "source": s.source, "bytes": s.bytes} for s in stored]
    return JSONResponse({"job": job.to_dict(), "files": files}, status_code=202)


# -- server-side paths --------------------------------------------------------------------------
class IngestRequest(BaseModel):
    paths: list[str] = Field(..., description="Files or folders under RAG_INGEST_ROOTS (relative: to the first).")
    collection: str | None = Field(None, description="The collection (default: the service's).")


@router.post("/ingest", status_code=202, responses=ERRORS)
async def ingest(body: IngestRequest, caller: CallerDep, collections: AppCollections, jobs: AppJobs) -> JSONResponse:
    """Ingest files and folders on the server, only under RAG_INGEST_ROOTS, in a job: `{"job": {...}}`."""
    rag = collections.checked(caller, body.collection, "write", create=True)
    roots = allowlist.roots_of(rag.settings)
    paths = await run_in_threadpool(allowlist.check_paths, body.paths, roots)
    excluded = [p for path in paths for p in await run_in_threadpool(allowlist.links_out, path, roots)]
    job = await run_in_threadpool(jobs.reserve, rag, "ingest")
    job.start(paths, Selection(exclude=excluded) if excluded else None)
    return JSONResponse({"job": job.to_dict()}, status_code=202)


# -- what a collection holds --------------------------------------------------------------------
def _rows(rag: Rag) -> list[FileRow]:
    s = rag.settings
    if not manifest_path(s.index_dir, s.collection, s.chroma_url).exists():
        return []  # nothing ingested: do not make an empty manifest for a name someone typed
    return rag.manifest.files()


def _uploaded(rag: Rag, row: FileRow) -> bool:
    folder = _upload_folder(rag).resolve()
    return Path(row.path).is_relative_to(folder)


@router.get("/documents", responses=ERRORS)
async def documents(caller: CallerDep, collections: AppCollections, collection: str | None = None) -> dict[str, Any]:
    """The files in the collection: `{"collection", "files": [{"source", "uploaded", "status"
    (ok, failed, pending), "chunks", "bytes", "error"}]}`."""
    rag = collections.checked(caller, collection, "read")
    rows = await run_in_threadpool(_rows, rag)
    files = [
        {
            "source": r.source,
            "uploaded": _uploaded(rag, r),
            "status": r.status if r.status in ("ok", "failed") else "pending",
            "chunks": r.chunks,
            "bytes": r.size,
            "error": r.error,
        }
        for r in rows
    ]
    return {"collection": rag.settings.collection, "files": files}


def _forget(rag: Rag, source: str) -> dict[str, Any]:
    matches = [r for r in _rows(rag) if r.source == source]
    uploaded = [r for r in matches if _uploaded(rag, r)]
    if not matches:
        raise NotFoundError(f"The collection '{rag.settings.collection}' has no file {source!r}.")
    if not uploaded and len(matches) > 1:
        raise InvalidRequestError(f"{source!r} names {len(matches)} files ingested from different folders.")
    row = (uploaded or matches)[0]
    folder = _upload_folder(rag)
    deleted = False
    with rag.indexer.exclusive():
        path = Path(row.path)
        if uploaded and path.is_file() and not path.is_symlink() and inside(path, folder):
            path.unlink()  # first: if we die before the forget, the next walk of the folder drops it
            deleted = True
            with contextlib.suppress(OSError):
                for parent in path.parents:
                    if parent == folder or not parent.is_relative_to(folder):
                        break
                    os.rmdir(parent)  # only empty folders; stops at the first that is not
        forgotten = rag.forget(row.path) or rag.indexer.index.forget(row.path)
    return {"forgotten": forgotten, "deleted": deleted}


@router.delete("/documents/{source:path}", responses=ERRORS)
async def forget(
    source: str, caller: CallerDep, collections: AppCollections, jobs: AppJobs, collection: str | None = None
) -> dict[str, Any]:
    """Forget one file (by its `source`); an uploaded one is deleted too: `{"forgotten", "deleted"}`."""
    rag = collections.checked(caller, collection, "write")
    running = [j for j in jobs.recent(rag.settings.collection) if j.active]
    if running:
        raise jobs.busy(running[0])
    return await run_in_threadpool(_forget, rag, source)


# -- jobs ---------------------------------------------------------------------------------------
@router.get("/jobs/{job_id}", responses=ERRORS)
async def job(job_id: str, caller: CallerDep, jobs: AppJobs) -> dict[str, Any]:
    """One job: `{"id", "collection", "kind", "state" (queued, running, done, failed), "files_total",
    "files_done", "chunks", "failures": [{"source", "status", "error"}], "created", "started",
    "finished", "error"}`."""
    found = jobs.get(job_id)
    if found is None or not caller.can(found.collection, "read"):
        raise NotFoundError(f"No job {job_id!r}.")  # the same answer for a job outside the key's scope
    return found.to_dict()


@router.get("/jobs", responses=ERRORS)
async def job_list(caller: CallerDep, jobs: AppJobs, collection: str | None = None) -> dict[str, Any]:
    """Recent jobs, newest first (of one collection, or of every collection the key can read)."""
    if collection is not None:
        require(caller, check_collection_name(collection), "read")
    return {"jobs": [j.to_dict() for j in jobs.recent(collection) if caller.can(j.collection, "read")]}
