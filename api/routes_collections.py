"""``GET /collections`` (the collections the key can read, with their counts) and
``GET /collections/{name}/status`` (one collection's state, for the web page's library view).

Both come from ``Rag.status()`` without what names the machine: no index directory, manifest path,
roots or backend URLs; a failure carries its ``source`` (as cited) and its error.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.auth import CallerDep
from api.deps import AppCollections
from api.routes_query import ERRORS
from rag.engine import Rag

router = APIRouter(tags=["collections"])

SUMMARY_FIELDS = ("files", "failed", "stale", "chunks", "embed_model", "last_run")
STATUS_FIELDS = (*SUMMARY_FIELDS, "embed_dim", "chunk_tokens", "chunk_overlap", "chat_model")


def _fields(name: str, status: dict[str, Any], default: str, fields: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "default": name == default} | {f: status.get(f) for f in fields}
    run = out.get("last_run")
    if isinstance(run, dict):  # its roots are paths on this machine
        out["last_run"] = {k: v for k, v in run.items() if k != "roots"}
    return out


def _summary(name: str, rag: Rag, default: str) -> dict[str, Any]:
    return _fields(name, rag.status(), default, SUMMARY_FIELDS)


@router.get("/collections", responses=ERRORS)
async def list_collections(collections: AppCollections, caller: CallerDep) -> dict[str, Any]:
    """The collections this key can read: `name`, `default` (the service's own), `files`, `failed`,
    `stale`, `chunks`, `embed_model` and `last_run`."""
    names = caller.readable(await run_in_threadpool(collections.names))
    out = []
    for name in names:
        rag = collections.rag_for(name)
        out.append(await run_in_threadpool(_summary, name, rag, collections.default))
    return {"collections": out}


@router.get("/collections/{name}/status", responses=ERRORS)
async def collection_status(name: str, collections: AppCollections, caller: CallerDep) -> dict[str, Any]:
    """One collection's counts, last run, embedding and chunk settings, and its failed files
    (`source`, `error`). Needs read access to it."""
    rag = await run_in_threadpool(collections.checked, caller, name, "read")
    status = await run_in_threadpool(rag.status)
    out = _fields(name, status, collections.default, STATUS_FIELDS)
    out["failures"] = [{"source": f["source"], "error": f["error"]} for f in status.get("failures", [])]
    return out
