"""Issue 15 item 2: nothing half-indexed after a crash. A real ``rag serve`` is killed with SIGKILL
while it ingests an upload (its embeddings server answers slowly, so the kill lands mid-ingest); a
restarted service's next upload job recovers, and the index then equals an uninterrupted run's:
the same files, statuses and chunk ids in the manifest and in Chroma."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import (
    BIN,
    ServerProcess,
    clean_env,
    free_port,
    instant_settings,
    start_instant_embeddings,
    stored_metadata,
)

from rag import Rag

pytestmark = pytest.mark.slow
FILES = 60


def text(i: int) -> str:
    return "\n\n".join(
        f"Section {j} of manual {i}: the pump model P{i}{j} moves {i * 7 + j} litres of water per minute, "
        f"weighs {i + j} kg and is serviced every {j + 2} months by the {['north', 'south'][j % 2]} team."
        for j in range(8)
    )


def serve(tmp: Path, embed: ServerProcess, name: str) -> ServerProcess:
    port = free_port()
    env = clean_env(
        RAG_INDEX_DIR=str(tmp / "index"),
        RAG_UPLOAD_DIR=str(tmp / "uploads"),
        RAG_BASE_URL=embed.url + "/v1",  # no embedded engines; chat is not used
        RAG_EMBED_MODEL="instant",
        RAG_CHAT_MODEL="none",
        RAG_EMBED_BATCH_SIZE="2",  # many small requests: the ingest takes a while
        RAG_REQUEST_TIMEOUT="60",
    )
    args = [str(BIN / "rag"), "serve", "--port", str(port)]
    return ServerProcess(args, port, "/health", env=env, log=tmp / f"{name}.log")


def upload(url: str, names: list[str]) -> dict[str, Any]:
    files = [("files", (n, text(i).encode())) for i, n in enumerate(names)]
    r = httpx.post(url + "/documents", files=files, data={"folder": "manuals"}, timeout=60)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()["job"]
    return job


def job_state(url: str, job_id: str) -> dict[str, Any]:
    got: dict[str, Any] = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
    return got


def snapshot(rag: Rag) -> dict[str, Any]:
    files = {(r.source, r.status, r.chunks, r.hash) for r in rag.manifest.files()}
    return {
        "files": files,
        "manifest_ids": rag.manifest.all_chunk_ids(),
        "store_ids": set(stored_metadata(rag, {})),
        "sources": set(rag.sources()),
    }


def test_kill_9_during_an_upload_ingest_then_the_next_job_recovers(
    tmp_path: Path, instant_embeddings: ServerProcess
) -> None:
    slow = start_instant_embeddings(tmp_path, "--delay-ms", "400")
    names = [f"manual-{i:02d}.md" for i in range(FILES)]
    service = serve(tmp_path, slow, "first")
    try:
        job = upload(service.url, names)
        deadline = time.monotonic() + 120
        while (state := job_state(service.url, job["id"]))["files_done"] < 5:
            assert state["state"] in ("queued", "running"), state
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        service.proc.send_signal(signal.SIGKILL)
        service.proc.wait(30)
    finally:
        service.stop()
        slow.stop()
    assert service.proc.returncode == -signal.SIGKILL
    assert state["state"] == "running" and 5 <= state["files_done"] < FILES, state
    settings = instant_settings(tmp_path / "index", instant_embeddings, upload_dir=tmp_path / "uploads")
    with Rag(settings) as rag:
        killed = snapshot(rag)
    ok = {f for f in killed["files"] if f[1] == "ok"}
    assert 0 < len(ok) < FILES, "the kill must land mid-ingest"
    assert len(list((tmp_path / "uploads" / "rag" / "manuals").iterdir())) == FILES  # stored before the job ran

    # Restart; the next upload's job walks the folder, repairs what the kill left and finishes it.
    service = serve(tmp_path, instant_embeddings, "second")
    try:
        job = upload(service.url, ["after.md"])
        deadline = time.monotonic() + 300
        while (state := job_state(service.url, job["id"]))["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["state"] == "done" and state["failures"] == [], state
        listed = httpx.get(service.url + "/documents", timeout=30).json()["files"]
    finally:
        service.stop()
    assert len(listed) == FILES + 1 and all(d["status"] == "ok" for d in listed)
    assert str(tmp_path) not in str(listed)
    with Rag(settings) as rag:
        recovered = snapshot(rag)

    # The same folder ingested in one uninterrupted run, into another index.
    reference = instant_settings(tmp_path / "ref-index", instant_embeddings)
    with Rag(reference) as ref:
        ref.ingest([tmp_path / "uploads" / "rag"])
        expected = snapshot(ref)
    assert recovered["files"] == expected["files"]
    assert recovered["manifest_ids"] == recovered["store_ids"] == expected["manifest_ids"] == expected["store_ids"]
    assert recovered["sources"] == expected["sources"]
    assert len(expected["files"]) == FILES + 1 and all(f[1] == "ok" for f in expected["files"])


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB filesystem (tmpfs) for the uploads; skipped where mounting is not allowed."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_during_an_upload_is_a_clear_error_and_nothing_half_indexed(
    tmp_path: Path, tiny_disk: Path, instant_embeddings: ServerProcess
) -> None:
    """Issue 15 item 5: the uploads' disk really fills (ENOSPC from the kernel, no fake): a JSON
    507 that says so, no partial file left, the index and file list as before; the next upload
    that fits works."""
    port = free_port()
    env = clean_env(
        RAG_INDEX_DIR=str(tmp_path / "index"),
        RAG_UPLOAD_DIR=str(tiny_disk),
        RAG_BASE_URL=instant_embeddings.url + "/v1",
        RAG_EMBED_MODEL="instant",
        RAG_CHAT_MODEL="none",
    )
    service = ServerProcess(
        [str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env, log=tmp_path / "s.log"
    )
    try:
        first = upload(service.url, ["small.md"])
        wait_done(service.url, first["id"])
        before = httpx.get(service.url + "/documents", timeout=30).json()["files"]
        chunks = httpx.get(service.url + "/health", timeout=30).json().get("chunks")
        big = ("The P7 pump is serviced yearly. " * 12_000).encode()  # ~380 KB: more than the disk holds
        r = httpx.post(service.url + "/documents", files=[("files", ("big.md", big))], timeout=60)
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_storage" and "disk is full" in error["message"]
        assert str(tiny_disk) not in error["message"]  # no server paths in errors
        assert sorted(p.name for p in tiny_disk.rglob("*") if p.is_file()) == ["small.md"]  # no partial file
        assert httpx.get(service.url + "/documents", timeout=30).json()["files"] == before
        assert httpx.get(service.url + "/health", timeout=30).json().get("chunks") == chunks
        again = upload(service.url, ["after.md"])  # the collection's writer lock was released
        assert wait_done(service.url, again["id"])["failures"] == []
        names = sorted(d["source"] for d in httpx.get(service.url + "/documents", timeout=30).json()["files"])
        assert names == ["manuals/after.md", "manuals/small.md"], names
    finally:
        service.stop()


def wait_done(url: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (state := job_state(url, job_id))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["state"] == "done", state
    return state
