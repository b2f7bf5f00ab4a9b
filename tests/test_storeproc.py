"""Chroma writes from a child process (ingest/storeproc.py) on real parts: a real embedded
Chroma, the real OpenAI-compatible instant embeddings server, real files, a real `rag ingest`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BIN, DATA, ServerProcess, clean_env, start_instant_embeddings
from test_crash import snapshot

from rag import Rag, Settings, StoreError
from rag.errors import IndexMismatchError
from rag.retrieval import Filters


def make_docs(dst: Path, n: int = 12) -> Path:
    shutil.copytree(DATA, dst)
    for i in range(n):
        body = "\n\n".join(f"## Part {p}\n\nFile {i} part {p} covers pallet {i * 7 + p} voltage." for p in range(6))
        (dst / f"gen/doc{i:02d}.md").parent.mkdir(exist_ok=True)
        (dst / f"gen/doc{i:02d}.md").write_text(f"# Document {i}\n\n{body}\n")
    return dst


def settings_for(index: Path, server: ServerProcess, mode: str) -> Settings:
    return Settings(
        index_dir=index, embed_base_url=server.url + "/v1", embed_model="instant", write_process=mode, max_retries=0
    )


@pytest.fixture(scope="module")
def slow_embeddings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Each embeddings request takes 150 ms, so an ingest lasts long enough to be interrupted."""
    server = start_instant_embeddings(tmp_path_factory.mktemp("slow"), "--delay-ms", "150")
    yield server
    server.stop()


def alive(pid: int) -> bool:
    """Running (a killed child whose parent is gone may stay a zombie until init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cli_env(index: Path, server: ServerProcess, **extra: str) -> dict[str, str]:
    return clean_env(
        RAG_INDEX_DIR=str(index),
        RAG_EMBED_BASE_URL=server.url + "/v1",
        RAG_EMBED_MODEL="instant",
        RAG_MAX_RETRIES="0",
        **extra,
    )


def children_of(pid: int, marker: str) -> list[int]:
    found = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and marker in cmd:
            found.append(int(d))
    return found


def test_writer_process_builds_the_same_index_as_writing_in_process(
    tmp_path: Path, instant_embeddings: ServerProcess
) -> None:
    docs = make_docs(tmp_path / "docs")
    snaps: dict[str, dict[str, Any]] = {}
    for mode in ("always", "never"):
        live = tmp_path / "live"
        shutil.rmtree(live, ignore_errors=True)
        shutil.copytree(docs, live)  # chunk ids include the path: both modes ingest the same one
        index = tmp_path / f"index-{mode}"
        with Rag(settings_for(index, instant_embeddings, mode)) as r:
            first = r.ingest([live])
            assert first.count("added") == 18 and not first.failed
            # An update: an edit, a deletion and a rename (its vectors are reused).
            (live / "gen/doc00.md").write_text("# Document 0\n\nRewritten entirely: bracket torque.\n")
            (live / "gen/doc01.md").unlink()
            (live / "gen/doc02.md").rename(live / "gen/moved02.md")
            second = r.ingest([live])
            assert (second.count("updated"), second.count("removed"), second.count("added")) == (1, 2, 1)
            assert second.reused > 0
        snaps[mode] = snapshot(index)
    assert snaps["always"] == snaps["never"]
    assert len(snaps["always"]["chunks"]) > 60


def test_library_sees_what_the_writer_process_wrote(tmp_path: Path, instant_embeddings: ServerProcess) -> None:
    """The parent's own Chroma client loaded the HNSW index before the child wrote; without
    reopening it, dense search would not find the new chunks (measured with Chroma 1.5)."""
    docs = make_docs(tmp_path / "docs", n=2)
    with Rag(settings_for(tmp_path / "index", instant_embeddings, "always")) as r:
        r.ingest([docs])
        assert r.search("pallet voltage", k=3, mode="dense")  # loads the index in this process
        (docs / "gen/late.md").write_text("# Late\n\nThe late file is about the zebra crossing.\n")
        report = r.ingest([docs])
        assert report.count("added") == 1
        # The instant server's vectors are per text: the exact chunk text is its own nearest neighbour.
        hits = r.search("# Late\n\nThe late file is about the zebra crossing.", k=1, mode="dense")
        assert hits and hits[0].source == "gen/late.md" and hits[0].score > 0.99
        only = r.search("zebra", k=5, mode="dense", filters=Filters(paths=["gen/late.md"]))
        assert [h.source for h in only] == ["gen/late.md"]


@pytest.mark.slow  # kill -9 of a real `rag ingest`'s writer process mid-run, then real reruns: ~15 s
def test_writer_process_dying_is_one_clear_error_and_a_rerun_repairs(
    tmp_path: Path, slow_embeddings: ServerProcess
) -> None:
    docs = make_docs(tmp_path / "docs", n=30)
    env = cli_env(tmp_path / "index", slow_embeddings, RAG_EMBED_BATCH_SIZE="4", RAG_WRITE_PROCESS="always")
    proc = subprocess.Popen(
        [str(BIN / "rag"), "ingest", str(docs)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    # Kill the writer once it has written something: file lines are printed after their commit.
    while proc.stderr.readline().startswith("ingesting"):
        pass
    writers = children_of(proc.pid, "ingest.storeproc")
    assert len(writers) == 1
    os.kill(writers[0], signal.SIGKILL)
    err = proc.stderr.read()
    assert proc.wait(120) == 1, err
    assert "Traceback" not in err
    assert "The index writer process stopped unexpectedly" in err and "Run the same command again" in err
    rerun = subprocess.run([str(BIN / "rag"), "ingest", str(docs)], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    env["RAG_WRITE_PROCESS"] = "never"
    again = subprocess.run([str(BIN / "rag"), "ingest", str(docs)], env=env, capture_output=True, text=True)
    assert "0 added, 0 updated, 36 unchanged" in again.stderr, again.stderr[-800:]
    assert len(snapshot(tmp_path / "index")["files"]) == 36  # and consistent: snapshot checks that


PARENT = """
import sys, threading, numpy as np
from pathlib import Path
from ingest.storeproc import StoreProcess
from rag.settings import Settings
from rag.store import IndexInfo, StoredChunk
proc = StoreProcess(Settings(index_dir=Path(sys.argv[1])))
proc.ensure(IndexInfo("m", 384, 128, 16))
n = 30000  # a write that takes Chroma many seconds
chunks = [StoredChunk(f"{i:032x}", f"text {i}", {"source": f"s{i}"}) for i in range(n)]
vectors = np.random.default_rng(0).standard_normal((n, 384), dtype=np.float32)
threading.Thread(target=lambda: proc.start_write(chunks, vectors, [])(), daemon=True).start()
print(proc._proc.pid, flush=True)
threading.Event().wait(600)
"""


def test_killed_ingest_takes_its_writer_process_with_it(tmp_path: Path) -> None:
    """The writer must not go on writing after its parent is killed (the next run's recovery
    would race it): it dies with the parent, even in the middle of a long Chroma write."""
    parent = subprocess.Popen(
        [str(BIN / "python"), "-c", PARENT, str(tmp_path / "index")], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert parent.stdout is not None
    writer = int(parent.stdout.readline())
    time.sleep(1.5)  # the write is under way in the writer
    assert alive(writer)
    parent.send_signal(signal.SIGKILL)
    parent.wait(30)
    deadline = time.monotonic() + 2
    while alive(writer) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(writer), "the writer outlived the killed ingest"


def test_writer_process_errors_keep_their_type(tmp_path: Path) -> None:
    from ingest.storeproc import StoreProcess
    from rag.store import IndexInfo

    proc = StoreProcess(Settings(index_dir=tmp_path / "index"))
    try:
        assert proc.info() is None and proc.count() == 0
        proc.ensure(IndexInfo("model-a", 4, 128, 16))
        with pytest.raises(IndexMismatchError, match="rag reindex"):
            proc.ensure(IndexInfo("model-b", 4, 128, 16))
        with pytest.raises(StoreError, match="unknown store call"):
            proc._call("drop")
    finally:
        proc.close()
    assert proc._proc.returncode == 0
