"""Chroma's exceptions become one StoreError in one place (ChromaStore._using), whatever the call:
a failure in query, upsert, delete or count reaches the CLI as one line and an HTTP client as a
JSON 503, never as a bare 500 with a traceback (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chromadb.errors import InternalError
from fastapi.testclient import TestClient

from api.app import create_app
from rag import Rag, StoreError
from rag.store import StoredChunk
from tests.conftest import DATA, ServerProcess, instant_settings


def _break(rag: Rag, method: str) -> None:
    """Make the real collection's ``method`` fail the way a damaged index or a lost server does."""
    rag.search("settle", 1, mode="dense")  # the search after an ingest reopens the client: do it first
    with rag.store._using() as conn:
        col = rag.store._get(conn)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise InternalError("simulated: database disk image is malformed")

    setattr(col, method, boom)


@pytest.mark.parametrize("method", ["query", "add", "delete", "count"])
def test_chroma_failures_become_store_errors(tmp_path: Path, instant_embeddings: ServerProcess, method: str) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as rag:
        rag.ingest([DATA / "returns-policy.md"])
        _break(rag, method)
        with pytest.raises(StoreError, match="malformed") as caught:
            if method == "query":
                rag.search("restocking fee", 3, mode="dense")
            elif method == "add":
                rag.store.upsert([StoredChunk("new-id", "text", {"source": "x"})], [[0.0] * 64])
            elif method == "delete":
                rag.store.delete(["some-id"])
            else:
                rag.store.count()
        assert caught.value.status == 503 and caught.value.code == "store_error"


def test_http_client_gets_a_json_503(tmp_path: Path, instant_embeddings: ServerProcess) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as rag:
        rag.ingest([DATA / "returns-policy.md"])
        _break(rag, "query")
        with TestClient(create_app(rag=rag), raise_server_exceptions=False) as client:
            resp = client.post("/search", json={"query": "restocking fee", "mode": "dense"})
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == "store_error" and "malformed" in resp.json()["error"]["message"]
