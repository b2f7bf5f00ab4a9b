"""Which files are ingested, and what reruns, forget, reindex, progress, a flaky
model server and the PDF worker's limits do. Embeddings come from the
deterministic server process benchmarks/instant_embeddings.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.loaders import LoadError
from ingest.pdfworker import PdfWorker
from ingest.progress import ConsoleProgress
from ingest.report import FileResult
from ingest.walker import Selection
from rag import IndexBusyError, Rag, Settings
from tests.conftest import BIN, DATA, ServerProcess, clean_env, invoke_cli, start_instant_embeddings, stored_metadata
from tests.pdfs import hand_pdf, slow_stream

LONG = "\n\n".join(f"Paragraph {i}: the pump {i} moves {i * 7} litres of water per minute." for i in range(60))


def start_server(tmp: Path, *extra: str) -> ServerProcess:
    return start_instant_embeddings(tmp, *extra)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("embed"))
    yield srv
    srv.stop()


def settings_for(tmp_path: Path, server: ServerProcess, **kw: object) -> Settings:
    return Settings(index_dir=tmp_path / "index", embed_base_url=server.url + "/v1", embed_model="instant", **kw)


def env_for(tmp_path: Path, url: str, model: str = "instant", **extra: str) -> dict[str, str]:
    return clean_env(
        RAG_INDEX_DIR=str(tmp_path / "index"), RAG_EMBED_BASE_URL=url + "/v1", RAG_EMBED_MODEL=model, **extra
    )


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def ingested(r: Rag) -> set[str]:
    return {s for s, _ in r.sources()}


def stored(r: Rag) -> set[str]:
    return {m["source"] for m in stored_metadata(r, {}).values()}


def test_include_exclude_globs(tmp_path: Path, server: ServerProcess) -> None:
    root = tree(tmp_path / "d", {f: f"text of {f}\n" for f in ["a.md", "b.txt", "gen/c.md", "sub/d.md", "sub/e.txt"]})
    env = env_for(tmp_path, server.url)
    proc = invoke_cli("ingest", str(root), "--include", "*.md", "--exclude", "gen/", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert {f["source"] for f in json.loads(proc.stdout)["files"]} == {"a.md", "sub/d.md"}
    with Rag(settings_for(tmp_path, server)) as r:
        r.ingest([root], selection=Selection(exclude=["*.txt"]))
        assert ingested(r) == stored(r) == {"a.md", "gen/c.md", "sub/d.md"}


def test_hidden_junk_and_virtualenv_folders(tmp_path: Path, server: ServerProcess) -> None:
    names = [".hidden.md", ".dot/x.md", ".git/notes.md", "node_modules/pkg/readme.md", ".venv/lib/v.md"]
    root = tree(tmp_path / "d", {f: f"text of {f}\n" for f in [*names, "env/pyvenv.cfg", "env/e.md", "keep.md"]})
    cases = [
        (Selection(), {"keep.md"}),
        (Selection(hidden=True), {"keep.md", ".hidden.md", ".dot/x.md"}),
        (Selection(junk=True), {"keep.md", "node_modules/pkg/readme.md", "env/e.md", "env/pyvenv.cfg"}),
        (Selection(hidden=True, junk=True), {*names, "keep.md", "env/e.md", "env/pyvenv.cfg"}),
    ]
    with Rag(settings_for(tmp_path, server)) as r:
        for selection, expected in cases:
            r.ingest([root], selection=selection)  # files no longer selected are removed
            assert ingested(r) == stored(r) == expected, selection
    proc = invoke_cli("ingest", str(root), "--hidden", "--all-folders", env=env_for(tmp_path / "cli", server.url))
    assert proc.returncode == 0 and "  added     .git/notes.md" in proc.stderr, proc.stderr


def test_gitignore_only_with_the_flag_nested_and_negated(tmp_path: Path, server: ServerProcess) -> None:
    files = {".gitignore": "*.log\nbuild/\n", "sub/.gitignore": "!keep.log\n", "notes.md": "notes\n"}
    files |= {f: f"log {f}\n" for f in ["a.log", "sub/keep.log", "sub/other.log", "build/b.md"]}
    root = tree(tmp_path / "d", files)
    with Rag(settings_for(tmp_path, server)) as r:
        r.ingest([root])
        assert ingested(r) == {"notes.md", "a.log", "sub/keep.log", "sub/other.log", "build/b.md"}
    proc = invoke_cli("ingest", str(root), "--gitignore", env=env_for(tmp_path, server.url))
    assert proc.returncode == 0, proc.stderr
    with Rag(settings_for(tmp_path, server)) as r:
        assert ingested(r) == stored(r) == {"notes.md", "sub/keep.log"}  # as `git status --ignored` says


def test_reruns_unchanged_touched_edited_renamed_deleted(tmp_path: Path, server: ServerProcess) -> None:
    root = tree(tmp_path / "d", {"long.md": LONG + "\n", "move.md": LONG.replace("pump", "valve"), "gone.md": "bye\n"})
    with Rag(settings_for(tmp_path, server)) as r:
        first = r.ingest([root])
        assert first.count("added") == 3 and first.embedded == first.chunks > 10
        again = r.ingest([root])
        assert again.count("unchanged") == 3 and again.embedded == 0 and again.chunks == 0

        os.utime(root / "long.md", ns=(time.time_ns(), time.time_ns() + 10**9))  # new mtime, same bytes
        touched = {f.source: f for f in r.ingest([root]).files}
        assert touched["long.md"].status == "unchanged" and touched["long.md"].embedded == 0
        assert r.manifest.get(str(root / "long.md")).mtime_ns == (root / "long.md").stat().st_mtime_ns

        (root / "long.md").write_text(LONG + "\n\nParagraph 60: a brand new closing paragraph about gaskets.\n")
        (root / "move.md").rename(root / "moved.md")
        (root / "gone.md").unlink()
        report = {f.source: f for f in r.ingest([root]).files}
        edited, moved = report["long.md"], report["moved.md"]
        assert edited.status == "updated" and 0 < edited.embedded < edited.chunks and edited.reused > 0
        assert moved.status == "added" and moved.embedded == 0 and moved.reused == moved.chunks > 1
        assert report["move.md"].status == "removed" and report["gone.md"].status == "removed"
        assert stored(r) == ingested(r) == {"long.md", "moved.md"}
        text = r.store.get_chunks(list(stored_metadata(r, {"source": "moved.md"})))[0].text
        assert r.search(text, k=1)[0].source == "moved.md"


def test_new_chunk_settings_rechunk_and_reuse_identical_texts(tmp_path: Path, server: ServerProcess) -> None:
    root = tree(tmp_path / "d", {"long.md": LONG, "short.md": "One short paragraph.\n"})
    with Rag(settings_for(tmp_path, server, chunk_tokens=128)) as r:
        before = {f.source: f for f in r.ingest([root]).files}
    with Rag(settings_for(tmp_path, server, chunk_tokens=96)) as r:
        after = {f.source: f for f in r.ingest([root]).files}
        assert after["long.md"].status == "updated" and after["long.md"].chunks > before["long.md"].chunks
        assert after["short.md"].status == "updated" and after["short.md"].reused == 1
        assert after["short.md"].embedded == 0
        assert {m["chunk_tokens"] for m in stored_metadata(r, {}).values()} == {96}
        assert r.store.count() == after["long.md"].chunks + 1


def test_other_model_refused_then_reindex_rebuilds(tmp_path: Path, server: ServerProcess) -> None:
    root = tree(tmp_path / "d", {"a.md": "alpha\n", "b.md": LONG})
    assert invoke_cli("ingest", str(root), env=env_for(tmp_path, server.url)).returncode == 0
    other = env_for(tmp_path, server.url, model="instant-2")
    refused = invoke_cli("ingest", str(root), env=other)
    assert refused.returncode == 1 and "rag reindex" in refused.stderr and "Traceback" not in refused.stderr
    rebuilt = invoke_cli("reindex", "--yes", env=other)
    assert rebuilt.returncode == 0, rebuilt.stderr
    info = json.loads(invoke_cli("status", "--json", env=other).stdout)
    assert info["embed_model"] == "instant-2" and info["files"] == 2 and info["chunks"] > 2
    assert invoke_cli("ingest", str(root), env=other).returncode == 0


def test_forget_file_folder_and_missing_folder(tmp_path: Path, server: ServerProcess) -> None:
    files = ["a.md", "sub/b.md", "sub/c.md", "old/d.md", "keep.md"]
    root = tree(tmp_path / "d", {f: f"text of {f}\n" for f in files})
    env = env_for(tmp_path, server.url)
    assert invoke_cli("ingest", str(root), env=env).returncode == 0
    shutil.rmtree(root / "old")
    for target, n in [(root / "a.md", 1), (root / "sub", 2), (root / "old", 1)]:
        proc = invoke_cli("forget", str(target), env=env)
        assert proc.returncode == 0 and f"Removed {n} file(s)" in proc.stderr, proc.stderr
    missing = invoke_cli("forget", str(root / "never"), env=env)
    assert missing.returncode == 1 and "Nothing in the index is under" in missing.stderr
    info = json.loads(invoke_cli("status", "--json", env=env).stdout)
    assert [s["source"] for s in info["sources"]] == ["keep.md"] and info["files"] == 1
    with Rag(settings_for(tmp_path, server)) as r:
        assert stored(r) == {"keep.md"} and r.store.count() == 1
        assert all(r.manifest.get(str(root / f)) is None for f in files[:4])


def test_progress_json_log_lines_and_bar(tmp_path: Path, server: ServerProcess) -> None:
    root = tree(tmp_path / "d", {"a.md": "alpha\n", "b.txt": "beta\n"})
    proc = invoke_cli("ingest", str(root), "--json", env=env_for(tmp_path, server.url))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert {"added", "updated", "unchanged", "removed", "failed", "skipped", "seconds"} <= set(summary)
    assert summary["added"] == 2 and summary["failed"] == 0
    assert "  added     a.md (1 chunks)" in proc.stderr and "  added     b.txt" in proc.stderr
    assert "Ingested in " in proc.stderr and "2 added" in proc.stderr

    out = io.StringIO()
    bar = ConsoleProgress(out, tty=True)
    bar.started(3, 3000)
    for name in ("a.md", "b.md"):
        time.sleep(0.12)  # the bar is redrawn at most every 0.1 s
        bar.file_done(FileResult(name, "added", chunks=5, bytes=1000))
    bar.file_done(FileResult("c.pdf", "failed", error="encrypted PDF", bytes=1000))
    shown = out.getvalue()
    assert "2/3 files" in shown and "chunks/s" in shown and "ETA" in shown and "[" in shown
    assert "failed    c.pdf (encrypted PDF)" in shown


def test_server_failing_twice_then_recovering(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--fail-first", "2", "--fail-status", "500")
    try:
        root = tree(tmp_path / "d", {f"f{i}.md": f"file {i}\n" for i in range(5)})
        proc = invoke_cli("ingest", str(root), env=env_for(tmp_path, srv.url, RAG_MAX_RETRIES="3"))
        assert proc.returncode == 0, proc.stderr
        assert "5 added" in proc.stderr and "0 failed" in proc.stderr
    finally:
        srv.stop()


def test_server_always_failing_aborts_cleanly_then_rerun_completes(tmp_path: Path, server: ServerProcess) -> None:
    bad = start_server(tmp_path, "--fail-first", "100000")
    root = tree(tmp_path / "d", {f"f{i}.md": f"file {i}\n" for i in range(12)})
    try:
        env = env_for(tmp_path, bad.url, RAG_MAX_RETRIES="0", RAG_EMBED_BATCH_SIZE="1", RAG_EMBED_CONCURRENCY="1")
        proc = invoke_cli("ingest", str(root), env=env)
    finally:
        bad.stop()
    assert proc.returncode == 1, proc.stderr
    assert "Stopped after 3 embedding requests in a row failed" in proc.stderr and "HTTP 500" in proc.stderr
    assert "Traceback" not in proc.stderr
    again = invoke_cli("ingest", str(root), env=env_for(tmp_path, server.url))
    assert again.returncode == 0 and "0 failed" in again.stderr, again.stderr
    with Rag(settings_for(tmp_path, server)) as r:
        assert ingested(r) == stored(r) == {f"f{i}.md" for i in range(12)}


def test_input_refused_by_the_server_fails_only_its_own_file(tmp_path: Path) -> None:
    # All 13 one-chunk files travel in one request (batch 32); the server refuses it for one input.
    srv = start_server(tmp_path, "--reject-containing", "POISON")
    files = {f"f{i}.md": f"file {i} about pumps\n" for i in range(12)} | {"bad.md": "this file holds POISON\n"}
    root = tree(tmp_path / "d", files)
    try:
        proc = invoke_cli("ingest", "--json", str(root), env=env_for(tmp_path, srv.url, RAG_MAX_RETRIES="0"))
    finally:
        srv.stop()
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["summary"]["added"] == 12 and out["summary"]["failed"] == 1, out["summary"]
    failed = [f for f in out["files"] if f["status"] == "failed"]
    assert [f["source"] for f in failed] == ["bad.md"]
    assert "refused the request" in failed[0]["error"] and "POISON" in failed[0]["error"]
    assert "failed    bad.md (embedding failed: " in proc.stderr and "Traceback" not in proc.stderr
    with Rag(settings_for(tmp_path, srv)) as r:
        assert ingested(r) == stored(r) == {f"f{i}.md" for i in range(12)}
        assert [f["source"] for f in r.status()["failures"]] == ["bad.md"]


def test_one_writer_per_index_and_a_killed_ingest_leaves_no_lock(tmp_path: Path, server: ServerProcess) -> None:
    # The first ingest holds the lock for as long as the test wants, however loaded the machine: its
    # embeddings server takes an hour to answer and the client waits that long, so it cannot finish
    # until the test kills it. (A merely slow server let it finish before the third refusal once.)
    stuck = start_server(tmp_path, "--delay-ms", "3600000")
    root = tree(tmp_path / "d", {f"f{i}.md": f"file {i} about pumps\n" for i in range(60)})
    hold_env = env_for(tmp_path, stuck.url, RAG_REQUEST_TIMEOUT="3600", RAG_MAX_RETRIES="0")
    env = env_for(tmp_path, server.url)  # the contenders: same index, a server that answers
    lock = tmp_path / "index" / "manifests" / "rag.lock"
    first = subprocess.Popen([str(BIN / "rag"), "ingest", str(root)], env=hold_env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (lock.exists() and lock.read_text() == str(first.pid)):
            assert time.monotonic() < deadline and first.poll() is None, "the first ingest never took the lock"
            time.sleep(0.05)
        for args in (("ingest", str(root)), ("forget", str(root / "f1.md")), ("reset", "--yes")):
            t = time.monotonic()
            busy = invoke_cli(*args, env=env)  # in this process: the lock is held by another one
            assert busy.returncode == 1, busy.stderr
            assert f"Another process (pid {first.pid}) is writing to collection 'rag'" in busy.stderr
            assert "Traceback" not in busy.stderr
            assert time.monotonic() - t < 30, "refused at once, not after waiting for the lock"
        with Rag(settings_for(tmp_path, server)) as r, pytest.raises(IndexBusyError, match="--collection"):
            r.ingest([root])
        assert first.poll() is None, "the first ingest must still be running: the refusals prove nothing otherwise"
    finally:
        first.kill()  # SIGKILL: the kernel drops its flock with it
        first.wait()
        stuck.stop()
    assert first.returncode == -9
    assert lock.read_text() == str(first.pid)  # the file stays, naming a dead process: the flock is the lock
    again = invoke_cli("ingest", str(root), env=env)
    assert again.returncode == 0, again.stderr
    with Rag(settings_for(tmp_path, server)) as r:
        assert ingested(r) == stored(r) == {f"f{i}.md" for i in range(60)}
        r.forget(root / "f1.md")  # the lock is free after each call, and re-entrant inside reindex
        assert ingested(r) == {f"f{i}.md" for i in range(60)} - {"f1.md"}
        r.reindex()  # walks the folder again: f1.md is still on disk
        assert ingested(r) == stored(r) == {f"f{i}.md" for i in range(60)}


def one_page_pdf(path: Path, streams: list[bytes], flate: bool = False) -> Path:
    """A one-page PDF whose /Contents are ``streams``, written by hand with a correct xref."""
    return hand_pdf(path, [streams], flate=flate)


def test_pdf_worker_time_limit_fails_one_file_only(tmp_path: Path) -> None:
    # ~60k text operators take pypdf well over a second here (200k: ~5 s measured): one page that
    # outlasts the stall limit (more in tests/test_pdf_limits.py).
    slow = one_page_pdf(tmp_path / "slow.pdf", [slow_stream(60_000)])
    worker = PdfWorker(timeout=0.5, memory_mb=1024)
    try:
        with pytest.raises(LoadError, match=r"no progress for 0.5s, stuck on page 1 of 1 \(RAG_PDF_TIMEOUT"):
            worker.load(slow)
        assert len(worker.load(DATA / "x200-user-guide.pdf")) == 4  # a new parser took over
    finally:
        worker.close()


def test_pdf_worker_memory_limit_fails_one_file_only(tmp_path: Path) -> None:
    # Five FlateDecode streams of 70 MB of spaces (68 KB each compressed): ~350 MB to parse the page.
    blob = zlib.compress(b" " * 70_000_000, 9)
    bomb = one_page_pdf(tmp_path / "bomb.pdf", [blob] * 5, flate=True)
    assert bomb.stat().st_size < 1_000_000
    worker = PdfWorker(timeout=60, memory_mb=160)
    try:
        with pytest.raises(LoadError, match="160 MB parser limit \\(RAG_PDF_MEMORY_MB\\)"):
            worker.load(bomb)
        assert len(worker.load(DATA / "x200-user-guide.pdf")) == 4
    finally:
        worker.close()


def test_pdf_worker_that_cannot_start_is_a_load_error() -> None:
    # 1 MB of address space: the parser process dies importing pypdf, before it says "ready".
    # This used to escape as EOFError and abort the whole run.
    worker = PdfWorker(timeout=30, memory_mb=1)
    try:
        with pytest.raises(LoadError, match="did not start"):
            worker.load(DATA / "x200-user-guide.pdf")
    finally:
        worker.close()


def test_slow_pdf_fails_alone_in_a_run(tmp_path: Path, server: ServerProcess) -> None:
    root = tree(tmp_path / "d", {"a.md": "alpha\n"})
    shutil.copy(DATA / "x200-user-guide.pdf", root / "guide.pdf")
    # ~5 s of parsing on one page; the guide's pages take milliseconds (up to ~1 s on a very busy
    # machine: the parser runs niced).
    one_page_pdf(root / "0-slow.pdf", [slow_stream(200_000)])
    with Rag(settings_for(tmp_path, server, pdf_timeout=2, parse_workers=1)) as r:
        by = {f.source: f for f in r.ingest([root]).files}
    assert by["0-slow.pdf"].status == "failed" and "(RAG_PDF_TIMEOUT" in (by["0-slow.pdf"].error or "")
    assert "stuck on page 1 of 1" in (by["0-slow.pdf"].error or "")
    assert by["guide.pdf"].status == by["a.md"].status == "added"  # parsed after the stopped one
