"""Issue 15 item 2: documents over HTTP (``POST/GET/DELETE /documents``, ``POST /ingest``, jobs),
with FastAPI's TestClient and the in-memory fakes. Path-traversal and upload-name attacks, the
upload size cap, one writer per collection, job progress and failures, a full disk."""

from __future__ import annotations

import errno
import io
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeChat, FakeEmbedder
from fastapi.testclient import TestClient

import api.uploads
from api.app import create_app
from rag import Rag, Settings

CAP = 10_000  # bytes: RAG_MAX_UPLOAD_MB in the tests
BOUNDARY = b"b0undaryXyZ"
TEXT = b"# Pumps\n\nThe P100 pump moves 40 litres of water per minute. It weighs 12 kg.\n"


class Service:
    def __init__(self, client: TestClient, rag: Rag, tmp: Path) -> None:
        self.client, self.rag, self.tmp = client, rag, tmp
        self.uploads = tmp / "uploads" / "rag"

    def upload_raw(self, names: list[bytes], data: bytes = TEXT, folder: bytes | None = None, **params: str) -> Any:
        parts = []
        if folder is not None:
            parts.append(b'Content-Disposition: form-data; name="folder"\r\n\r\n' + folder)
        for name in names:
            head = b'Content-Disposition: form-data; name="files"; filename="' + name + b'"\r\n'
            parts.append(head + b"Content-Type: application/octet-stream\r\n\r\n" + data)
        body = b"".join(b"--" + BOUNDARY + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + BOUNDARY + b"--\r\n"
        ctype = "multipart/form-data; boundary=" + BOUNDARY.decode()
        return self.client.post("/documents", params=params, content=body, headers={"content-type": ctype})

    def wait(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job: dict[str, Any] = self.client.get(f"/jobs/{job_id}").json()
            if job["state"] in ("done", "failed"):
                return job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)

    def stored(self) -> set[str]:
        """Every file under the tmp dir but the index and the allowlisted tree (uploads, escapes)."""
        skip = (self.tmp / "index", self.tmp / "allowed", self.tmp / "outside")
        return {
            p.relative_to(self.tmp).as_posix()
            for p in self.tmp.rglob("*")
            if p.is_file() and not any(p.is_relative_to(s) for s in skip)
        }

    def documents(self, **params: str) -> list[dict[str, Any]]:
        r = self.client.get("/documents", params=params)
        assert r.status_code == 200, r.text
        assert str(self.tmp) not in r.text  # no server path
        files: list[dict[str, Any]] = r.json()["files"]
        return files


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "doc.md").write_bytes(TEXT)
    (allowed / "sub" / "inner.md").write_text("The inner notes mention the Q7 purifier filter.\n")
    (outside / "secret.md").write_text("SECRET outside the roots: the vault code is 1234.\n")
    settings = Settings(
        index_dir=tmp_path / "index",
        upload_dir=tmp_path / "uploads",
        ingest_roots=f"{allowed},{tmp_path / 'missing-root'}",
        max_upload_mb=CAP / 1024 / 1024,
        min_relevance=0.0,
        chunk_counter="estimate",
    )
    with (
        Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as rag,
        TestClient(create_app(settings, rag)) as client,
    ):
        yield Service(client, rag, tmp_path)


def sources(rag: Rag) -> set[str]:
    return {s for s, _ in rag.sources()}


# -- uploads -----------------------------------------------------------------------------------------
def test_upload_into_a_folder_ingests_and_lists(service: Service) -> None:
    files = [("files", ("手册 2024.md", TEXT)), ("files", ("notes.txt", b"Support opens at 9 am on weekdays.\n"))]
    r = service.client.post("/documents", files=files, data={"folder": "manuals/2024"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["files"] == [
        {"name": "手册 2024.md", "source": "manuals/2024/手册 2024.md", "bytes": len(TEXT)},
        {"name": "notes.txt", "source": "manuals/2024/notes.txt", "bytes": 35},
    ]
    assert body["job"]["collection"] == "rag" and body["job"]["state"] in ("queued", "running", "done")
    job = service.wait(body["job"]["id"])
    assert job["state"] == "done" and job["error"] is None and job["failures"] == []
    assert job["files_done"] == job["files_total"] == 2 and job["chunks"] >= 2
    assert job["started"] and job["finished"] >= job["started"]
    assert (service.uploads / "manuals" / "2024" / "手册 2024.md").read_bytes() == TEXT
    docs = {d["source"]: d for d in service.documents()}
    assert set(docs) == {"manuals/2024/手册 2024.md", "manuals/2024/notes.txt"}
    assert all(d["status"] == "ok" and d["uploaded"] and d["chunks"] >= 1 for d in docs.values())
    hits = service.client.post("/search", json={"query": "How many litres does the P100 pump move?"}).json()
    assert hits["hits"][0]["source"] == "manuals/2024/手册 2024.md"
    listed = service.client.get("/jobs", params={"collection": "rag"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    # Another collection: its own folder and index.
    r = service.client.post("/documents", params={"collection": "team-b"}, files=[("files", ("b.md", TEXT))])
    assert r.status_code == 202 and service.wait(r.json()["job"]["id"])["state"] == "done"
    assert (service.tmp / "uploads" / "team-b" / "b.md").exists()
    assert [d["source"] for d in service.documents(collection="team-b")] == ["b.md"]
    assert len(service.documents()) == 2


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b"../x.md", "x.md"),
        (b"..\\x.md", "x.md"),
        (b"../../../../etc/cron.d/x.md", "x.md"),
        (b"/tmp/abs.md", "abs.md"),
        (b"C:\\Windows\\win.md", "win.md"),
        (b"a/b.md", "b.md"),
        (b".hidden.md", "hidden.md"),
        (b"%2e%2e/pct.md", "pct.md"),
        (b"%2e%2e%2fpct2.md", "%2e%2e%2fpct2.md"),  # no decoding: a literal name, inside the folder
        ("a\u2215b.md".encode(), "a\u2215b.md"),  # DIVISION SLASH: a character, not a separator
        ("e\u0301t\u00e9.md".encode(), "\u00e9t\u00e9.md"),  # NFC
        ("中文 文件名.md".encode(), "中文 文件名.md"),
    ],
)
def test_upload_names_are_reduced_to_a_safe_basename(service: Service, raw: bytes, stored: str) -> None:
    r = service.upload_raw([raw])
    assert r.status_code == 202, r.text
    assert r.json()["files"][0]["name"] == stored
    service.wait(r.json()["job"]["id"])
    assert service.stored() == {f"uploads/rag/{stored}"}


@pytest.mark.parametrize(
    "raw",
    [b"a\x00b.md", b"\x1b[31mred.md", b"tab\there.md", "\u202eevil.md".encode(), b".", b"..", b"...", b"/", b"a/.."],
)
def test_bad_upload_names_are_refused(service: Service, raw: bytes) -> None:
    r = service.upload_raw([raw])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert service.stored() == set() and list(service.uploads.iterdir()) == []  # not even a temporary file
    assert service.client.get("/jobs").json()["jobs"] == []  # the job reserved for it was given up


def test_a_very_long_name_is_cut_keeping_its_extension(service: Service) -> None:
    for raw in ("x" * 300 + ".md", "长" * 200 + ".md"):
        r = service.upload_raw([raw.encode()])
        assert r.status_code == 202, r.text
        name = r.json()["files"][0]["name"]
        assert name.endswith(".md") and len(name.encode()) <= api.uploads.MAX_NAME_BYTES and name[0] == raw[0]
        service.wait(r.json()["job"]["id"])
        assert (service.uploads / name).exists()


@pytest.mark.parametrize(
    "folder",
    [b"../out", b"a/../../out", b"/abs", b"a\\b", b".hidden", b"a/./b", b"a//b", b"a/\x1bb", b"a\x00b", b"C:/x"],
)
def test_bad_folders_are_refused(service: Service, folder: bytes) -> None:
    r = service.upload_raw([b"x.md"], folder=folder)
    assert r.status_code == 400, r.text
    assert service.stored() == set()


def test_unsupported_types_and_bad_collections_are_refused(service: Service) -> None:
    r = service.upload_raw([b"/etc/passwd"])  # 'passwd': no type the loaders read
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_type"
    for name in ("../rag", "a", "x/y", ".hidden", "a..b"):
        r = service.upload_raw([b"x.md"], collection=name)
        assert r.status_code == 400, (name, r.text)
        assert service.client.get("/documents", params={"collection": name}).status_code == 400
    assert service.stored() == set()
    r = service.client.post("/documents", content=b"x", headers={"content-type": "text/plain"})
    assert r.status_code == 400


def test_an_upload_over_the_cap_is_413_and_nothing_is_kept(service: Service) -> None:
    r = service.upload_raw([b"small.md", b"big.md"], data=b"word " * (CAP // 5 + 1))
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large" and "RAG_MAX_UPLOAD_MB" in r.json()["error"]["message"]
    assert service.stored() == set() and list(service.uploads.iterdir()) == []
    assert service.upload_raw([b"ok.md"], data=b"word " * (CAP // 5)).status_code == 202  # at the cap: accepted


def test_a_full_disk_is_507_and_nothing_is_kept_or_indexed(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    class Full(io.BufferedWriter):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(api.uploads.os, "fdopen", lambda fd, mode: Full(io.FileIO(fd, mode)))  # type: ignore[attr-defined]
    r = service.upload_raw([b"a.md"])
    assert r.status_code == 507, r.text
    assert r.json()["error"]["code"] == "insufficient_storage" and "disk is full" in r.json()["error"]["message"]
    assert service.stored() == set() and list(service.uploads.iterdir()) == []
    assert service.documents() == [] and service.rag.count() == 0
    monkeypatch.undo()
    r = service.upload_raw([b"a.md"])  # the lock was released: the next upload works
    assert r.status_code == 202 and service.wait(r.json()["job"]["id"])["state"] == "done"


# -- jobs ----------------------------------------------------------------------------------------------
def test_job_progress_and_a_bad_file_reported_by_name(service: Service) -> None:
    files = [("files", ("good.md", TEXT)), ("files", ("broken.pdf", b"%PDF-1.4 this is not a PDF at all"))]
    r = service.client.post("/documents", files=files)
    job = service.wait(r.json()["job"]["id"])
    assert job["state"] == "done" and job["files_total"] == job["files_done"] == 2
    assert [f["source"] for f in job["failures"]] == ["broken.pdf"] and job["failures"][0]["error"]
    docs = {d["source"]: d for d in service.documents()}
    assert docs["good.md"]["status"] == "ok" and docs["broken.pdf"]["status"] == "failed"
    assert docs["broken.pdf"]["error"] and docs["broken.pdf"]["chunks"] == 0
    assert service.client.get("/jobs/nope").status_code == 404


def test_a_second_writer_on_the_same_collection_gets_409(service: Service) -> None:
    jobs = service.client.app.state.jobs  # type: ignore[attr-defined]
    held = jobs.reserve(service.rag, "upload")  # a job of ours holding the collection
    try:
        r = service.upload_raw([b"x.md"])
        assert r.status_code == 409 and r.json()["error"]["code"] == "index_busy" and held.id in r.text
        assert service.client.post("/ingest", json={"paths": ["doc.md"]}).status_code == 409
        assert service.client.delete("/documents/x.md").status_code == 409
        other = service.upload_raw([b"x.md"], collection="other")  # another collection is free
        assert other.status_code == 202 and service.wait(other.json()["job"]["id"])["state"] == "done"
    finally:
        held.cancel()
    # Any other writer (another process, or another Rag of this one) holds the collection's lock.
    with Rag(service.rag.settings, embedder=FakeEmbedder()) as rival, rival.indexer.exclusive():
        r = service.upload_raw([b"x.md"])
        assert r.status_code == 409 and "is writing to collection 'rag'" in r.text
    assert service.stored() == {"uploads/other/x.md"}
    r = service.upload_raw([b"x.md"])
    assert r.status_code == 202 and service.wait(r.json()["job"]["id"])["state"] == "done"


# -- GET / DELETE --------------------------------------------------------------------------------------
def test_delete_forgets_and_removes_an_uploaded_file(service: Service) -> None:
    r = service.client.post(
        "/documents", files=[("files", ("a.md", TEXT)), ("files", ("b.md", TEXT))], data={"folder": "x/y"}
    )
    service.wait(r.json()["job"]["id"])
    r = service.client.delete("/documents/x/y/a.md")
    assert r.status_code == 200, r.text
    assert r.json() == {"forgotten": ["x/y/a.md"], "deleted": True}
    assert [d["source"] for d in service.documents()] == ["x/y/b.md"] and sources(service.rag) == {"x/y/b.md"}
    assert service.stored() == {"uploads/rag/x/y/b.md"}
    assert service.client.delete("/documents/x/y/b.md").json()["deleted"]
    assert not (service.uploads / "x").exists()  # empty folders go too
    for gone in ("x/y/a.md", "nothing.md", "%2e%2e/%2e%2e/index/manifests/rag.sqlite", "../../outside/secret.md"):
        r = service.client.delete(f"/documents/{gone}")
        assert r.status_code == 404, (gone, r.text)
    assert (service.tmp / "outside" / "secret.md").exists() and (service.tmp / "index" / "manifests").exists()


# -- POST /ingest ----------------------------------------------------------------------------------------
def test_ingest_server_paths_under_the_roots(service: Service) -> None:
    allowed = service.tmp / "allowed"
    (allowed / "sub" / "escape.md").symlink_to(service.tmp / "outside" / "secret.md")  # inside a folder: left out
    (allowed / "sub" / "escape-dir").symlink_to(service.tmp / "outside", target_is_directory=True)
    r = service.client.post("/ingest", json={"paths": ["doc.md", str(allowed / "sub")]})
    assert r.status_code == 202, r.text
    job = service.wait(r.json()["job"]["id"])
    assert job["state"] == "done", job
    assert sources(service.rag) == {"doc.md", "inner.md"}
    assert all(
        "SECRET" not in h["text"] for h in service.client.post("/search", json={"query": "vault code"}).json()["hits"]
    )
    docs = service.documents()
    assert {(d["source"], d["uploaded"], d["status"]) for d in docs} == {
        ("doc.md", False, "ok"),
        ("inner.md", False, "ok"),
    }
    assert service.client.delete("/documents/inner.md").json() == {"forgotten": ["inner.md"], "deleted": False}
    assert (allowed / "sub" / "inner.md").exists()  # a server file is forgotten, never deleted


def attacks(tmp: Path) -> dict[str, tuple[str, int]]:
    allowed, outside = tmp / "allowed", tmp / "outside"
    (allowed / "link-out.md").symlink_to(outside / "secret.md")
    (allowed / "link-dir-out").symlink_to(outside, target_is_directory=True)
    (allowed / "loop").symlink_to(allowed / "loop")
    (allowed / "to-dev").symlink_to("/dev/zero")
    os.mkfifo(allowed / "pipe.md")
    return {
        "dotdot-relative": ("../outside/secret.md", 403),
        "dotdot-absolute": (f"{allowed}/../outside/secret.md", 403),
        "dotdot-deep": ("sub/../../../../../../etc/passwd", 403),
        "absolute-outside": (str(outside / "secret.md"), 403),
        "etc-passwd": ("/etc/passwd", 403),
        "symlink-out": ("link-out.md", 403),
        "symlink-dir-out": ("link-dir-out/secret.md", 403),
        "symlink-loop": ("loop", 400),
        "nul-byte": ("doc.md\x00.txt", 400),
        "dev-zero": ("/dev/zero", 403),
        "symlink-to-device": ("to-dev", 403),
        "fifo": ("pipe.md", 400),
        "percent-encoded": ("%2e%2e/outside/secret.md", 400),  # a literal name: no such file inside
        "missing-outside": ("/nonexistent/x.md", 403),
        "tilde": ("~/.ssh/id_rsa", 403),
    }


def test_ingest_refuses_paths_outside_the_roots(service: Service, caplog: pytest.LogCaptureFixture) -> None:
    cases = attacks(service.tmp)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(service.tmp / "allowed" / "sock"))
    cases["socket"] = ("sock", 400)
    caplog.set_level(logging.WARNING, logger="rag.serve")
    try:
        for name, (path, status) in cases.items():
            caplog.clear()
            r = service.client.post("/ingest", json={"paths": [path]})
            assert r.status_code == status, (name, r.text)
            assert "error" in r.json() and "Refused path" in r.json()["error"]["message"], name
            assert any("POST /ingest refused" in rec.getMessage() for rec in caplog.records), name
            # One bad path refuses the whole request.
            assert service.client.post("/ingest", json={"paths": ["doc.md", path]}).status_code == status, name
    finally:
        sock.close()
    assert service.client.get("/jobs").json()["jobs"] == [] and sources(service.rag) == set()
    assert service.client.post("/ingest", json={"paths": []}).status_code == 400
    assert service.client.post("/ingest", json={"paths": "doc.md"}).status_code == 400


def test_ingest_is_off_without_roots(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index", chunk_counter="estimate")
    with Rag(settings, embedder=FakeEmbedder()) as rag, TestClient(create_app(settings, rag)) as client:
        r = client.post("/ingest", json={"paths": ["/etc"]})
        assert r.status_code == 403 and "RAG_INGEST_ROOTS" in r.json()["error"]["message"]
        assert client.get("/documents").json() == {"collection": "rag", "files": []}
        assert not (tmp_path / "index" / "manifests").exists()  # a read makes no manifest


# -- API keys ------------------------------------------------------------------------------------------
def test_documents_and_jobs_need_the_right_scope(tmp_path: Path) -> None:
    from rag import keys

    path = tmp_path / "keys.toml"
    reader = keys.create(path, "reader", ["rag"], "read")
    writer = keys.create(path, "writer", ["rag"], "write")
    other = keys.create(path, "other", ["team-b"], "write")
    settings = Settings(index_dir=tmp_path / "index", api_keys_file=path, chunk_counter="estimate")
    with Rag(settings, embedder=FakeEmbedder()) as rag, TestClient(create_app(settings, rag)) as client:

        def call(method: str, url: str, key: str | None, **kw: Any) -> int:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            return client.request(method, url, headers=headers, **kw).status_code

        upload = {"files": [("files", ("a.md", TEXT))]}
        for key, status in ((None, 401), ("wrong", 401), (other, 403), (reader, 403)):
            assert call("POST", "/documents", key, **upload) == status, key
            assert call("DELETE", "/documents/a.md", key) == status, key
            assert call("POST", "/ingest", key, json={"paths": ["x"]}) == status, key
        for key, status in ((None, 401), ("wrong", 401), (other, 403)):
            assert call("GET", "/documents", key) == status, key
            assert call("GET", "/jobs?collection=rag", key) == status, key
        r = client.post("/documents", headers={"x-api-key": writer}, **upload)  # type: ignore[arg-type]
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]["id"]
        assert call("GET", f"/jobs/{job_id}", reader) == 200
        assert call("GET", f"/jobs/{job_id}", other) == 404  # a job outside the key's scope is not there
        assert client.get("/jobs", headers={"x-api-key": other}).json()["jobs"] == []
        assert call("GET", "/documents", reader) == 200
        assert call("POST", "/ingest", writer, json={"paths": ["x"]}) == 403  # RAG_INGEST_ROOTS unset
