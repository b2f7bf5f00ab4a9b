"""Issue 15 item 2 against a real ``rag serve`` process over real HTTP (the same attacks as
``test_documents.py``, which runs them in-process with fakes): server paths outside
``RAG_INGEST_ROOTS`` (traversal, symlinks, devices, FIFOs, sockets, NUL bytes), and upload names
and folders that try to leave the upload folder. Nothing outside the roots is ever read, nothing
is stored outside the collection's upload folder, and every refusal is a JSON error."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import BIN, ServerProcess, clean_env, free_port
from test_documents import BOUNDARY, TEXT, attacks

pytestmark = pytest.mark.slow

BAD_NAMES = [b"a\x00b.md", b"\x1b[31mred.md", "\u202eevil.md".encode(), b"..", b"/", b"a/.."]
BAD_FOLDERS = [b"../out", b"a/../../out", b"/abs", b"a\\b", b".hidden", b"a\x00b"]
SAFE_NAMES = [(b"../../etc/cron.d/x.md", "x.md"), (b"C:\\Windows\\evil.md", "evil.md"), (b"..\\..\\up.md", "up.md")]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, instant_embeddings: ServerProcess) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("served-docs")
    allowed, outside = tmp / "allowed", tmp / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "doc.md").write_bytes(TEXT)
    (outside / "secret.md").write_text("SECRET outside the roots: the vault code is 1234.\n")
    port = free_port()
    env = clean_env(
        RAG_INDEX_DIR=str(tmp / "index"),
        RAG_UPLOAD_DIR=str(tmp / "uploads"),
        RAG_INGEST_ROOTS=str(allowed),
        RAG_BASE_URL=instant_embeddings.url + "/v1",
        RAG_EMBED_MODEL="instant",
        RAG_CHAT_MODEL="none",
        RAG_MIN_RELEVANCE="0",
    )
    server = ServerProcess(
        [str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env, log=tmp / "s.log"
    )
    try:
        yield {"url": server.url, "tmp": tmp, "log": tmp / "s.log"}
    finally:
        server.stop()


def multipart(name: bytes, folder: bytes | None = None) -> tuple[bytes, dict[str, str]]:
    parts = []
    if folder is not None:
        parts.append(b'Content-Disposition: form-data; name="folder"\r\n\r\n' + folder)
    head = b'Content-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
    parts.append(head + b"Content-Type: application/octet-stream\r\n\r\n" + TEXT)
    body = b"".join(b"--" + BOUNDARY + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + BOUNDARY + b"--\r\n"
    return body, {"content-type": "multipart/form-data; boundary=" + BOUNDARY.decode()}


def stored(tmp: Path) -> set[str]:
    return {p.relative_to(tmp / "uploads").as_posix() for p in (tmp / "uploads").rglob("*") if p.is_file()}


def wait(url: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{url}/jobs/{job_id}", timeout=30).json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return dict(job)


def test_server_paths_outside_the_roots_are_refused(served: dict[str, Any]) -> None:
    url, tmp = served["url"], served["tmp"]
    cases = attacks(tmp)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / "allowed" / "sock"))
    cases["socket"] = ("sock", 400)
    try:
        for name, (path, status) in cases.items():
            r = httpx.post(url + "/ingest", json={"paths": [path]}, timeout=30)
            assert r.status_code == status, (name, r.text)
            assert "Refused path" in r.json()["error"]["message"], name
            assert str(tmp) not in r.text or name in ("absolute-outside", "dotdot-absolute", "missing-outside"), name
    finally:
        sock.close()
    assert "POST /ingest refused" in served["log"].read_text()
    r = httpx.post(url + "/ingest", json={"paths": ["doc.md"]}, timeout=30)  # inside: works
    assert r.status_code == 202 and wait(url, r.json()["job"]["id"])["state"] == "done"
    hits = httpx.post(url + "/search", json={"query": "vault code SECRET", "mode": "keyword"}, timeout=30).json()
    assert all("SECRET" not in h["text"] for h in hits["hits"])
    sources = {d["source"] for d in httpx.get(url + "/documents", timeout=30).json()["files"]}
    assert "secret.md" not in sources and "doc.md" in sources


def test_upload_names_and_folders_cannot_escape(served: dict[str, Any]) -> None:
    url, tmp = served["url"], served["tmp"]
    before = stored(tmp)
    for raw in BAD_NAMES:
        body, headers = multipart(raw)
        r = httpx.post(url + "/documents", content=body, headers=headers, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (raw, r.text)
    for folder in BAD_FOLDERS:
        body, headers = multipart(b"x.md", folder)
        r = httpx.post(url + "/documents", content=body, headers=headers, timeout=30)
        assert r.status_code == 400, (folder, r.text)
    assert stored(tmp) == before
    for raw, name in SAFE_NAMES:
        body, headers = multipart(raw)
        r = httpx.post(url + "/documents", content=body, headers=headers, timeout=30)
        assert r.status_code == 202, (raw, r.text)
        assert r.json()["files"][0]["name"] == name
        assert wait(url, r.json()["job"]["id"])["state"] == "done"
    assert stored(tmp) - before == {f"rag/{name}" for _, name in SAFE_NAMES}
    assert not list((tmp / "allowed").glob("**/x.md")) and not (tmp / "etc").exists()
