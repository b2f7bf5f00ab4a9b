"""Crash safety: `kill -9` of a real `rag ingest` at many moments, then a rerun,
must give exactly the index an uninterrupted run gives: the same chunk ids,
texts, metadata and vectors, no duplicates, no orphans, and a manifest that
agrees with Chroma.

Embeddings come from a real OpenAI-compatible server process whose vectors are
deterministic per text (benchmarks/instant_embeddings.py), slowed down so one
run lasts a few seconds and the kills land in every phase: start-up, reading,
embedding, Chroma writes, manifest commits, removal of deleted files.
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.api.client import SharedSystemClient
from chromadb.config import Settings as ChromaSettings
from conftest import BIN, DATA, REPO, ServerProcess, clean_env, start_instant_embeddings

sys.path.insert(0, str(REPO / "scripts"))
from make_sample_pdf import build_pdf  # noqa: E402

pytestmark = pytest.mark.slow

WORDS = [
    *[
        "filter",
        "battery",
        "warranty",
        "sensor",
        "firmware",
        "update",
        "cable",
        "adapter",
        "screen",
        "motor",
        "fan",
        "cleaning",
    ],
    *[
        "schedule",
        "invoice",
        "refund",
        "shipping",
        "carrier",
        "label",
        "pallet",
        "voltage",
        "current",
        "torque",
        "bracket",
    ],
]


def make_corpus(dst: Path, seed: int) -> None:
    """data/ plus 40 generated Markdown/text files and 3 PDFs (deterministic for ``seed``)."""
    rng = random.Random(seed)
    shutil.copytree(DATA, dst)
    for i in range(40):
        paras = []
        for p in range(rng.randint(2, 9)):
            sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16))) + "." for _ in range(4)]
            paras.append((f"## Part {p}\n\n" if i % 2 == 0 else "") + " ".join(sentences))
        ext = ".md" if i % 2 == 0 else ".txt"
        (dst / f"gen/{i % 4}").mkdir(parents=True, exist_ok=True)
        (dst / f"gen/{i % 4}/doc{i:02d}{ext}").write_text(f"# Document {i}\n\n" + "\n\n".join(paras) + "\n")
    for i in range(3):
        pages = [(f"Manual {i} page {n}", [" ".join(rng.choice(WORDS) for _ in range(40)) + "."]) for n in range(1, 4)]
        build_pdf(dst / f"manual{i}.pdf", pages)


def change_corpus(root: Path) -> None:
    """v1 -> v2: edit two files, delete two, rename one, add one."""
    for name in ("gen/0/doc00.md", "returns-policy.md"):
        p = root / name
        p.write_text(p.read_text() + "\n\nA new closing paragraph about pallet voltage limits.\n")
    (root / "gen/1/doc01.txt").unlink()
    (root / "manual1.pdf").unlink()
    (root / "gen/2/doc02.md").rename(root / "gen/2/renamed02.md")
    (root / "gen/3/new.md").write_text("# New\n\nA brand new file about bracket torque.\n")


def snapshot(index: Path) -> dict[str, Any]:
    # Chroma caches one client per path in a process; another process has written since.
    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(path=str(index / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_collection("rag")
    got = col.get(include=["documents", "metadatas", "embeddings"])
    chunks = {
        cid: (doc, tuple(sorted(meta.items())), tuple(round(float(x), 5) for x in emb))
        for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
    }
    assert len(chunks) == len(got["ids"]) == col.count(), "duplicate ids"
    db = sqlite3.connect(index / "manifests" / "rag.sqlite")
    files = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT path, source, status, hash, chunks, chunker, pending_ids, error FROM files ORDER BY path"
        )
    }
    owned = {r[0]: r[1] for r in db.execute("SELECT id, path FROM chunks")}
    keyword = {r[0]: r[1] for r in db.execute("SELECT id, text FROM kw_chunks")}
    db.execute("INSERT INTO kw (kw) VALUES ('integrity-check')")  # raises if FTS5 and its rows disagree
    db.close()
    # The keyword index holds exactly Chroma's chunks, with the same texts.
    assert keyword == {cid: c[0] for cid, c in chunks.items()}, "keyword index and Chroma disagree"
    # The manifest agrees with Chroma: no orphans, nothing missing, nothing pending.
    assert set(owned) == set(chunks), "manifest and Chroma disagree"
    assert all(status in ("ok", "failed") and pending is None for _, status, _, _, _, pending, _ in files.values())
    for path, (_, _, _, n, *_rest) in files.items():
        assert n == sum(1 for p in owned.values() if p == path), path
    return {"chunks": chunks, "files": files}


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_instant_embeddings(tmp_path_factory.mktemp("embed"), "--delay-ms", "60")
    yield server
    server.stop()


def ingest_env(index: Path, server: ServerProcess, writer: str = "auto") -> dict[str, str]:
    return clean_env(
        RAG_INDEX_DIR=str(index),
        RAG_EMBED_BASE_URL=server.url + "/v1",
        RAG_EMBED_MODEL="instant",
        RAG_EMBED_BATCH_SIZE="8",
        RAG_WRITE_PROCESS=writer,
    )


def run_ingest(
    corpus: Path, index: Path, server: ServerProcess, writer: str = "auto"
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "rag"), "ingest", str(corpus)],
        env=ingest_env(index, server, writer),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def kill_during(
    corpus: Path, index: Path, server: ServerProcess, *, after_s: float, after_lines: int, writer: str
) -> str:
    """Start an ingest and SIGKILL it ``after_s`` seconds after it printed ``after_lines`` file lines."""
    proc = subprocess.Popen(
        [str(BIN / "rag"), "ingest", str(corpus)],
        env=ingest_env(index, server, writer),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = 0
    deadline = time.monotonic() + 120
    while seen < after_lines and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith("  "):
            seen += 1
    time.sleep(after_s)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    return "finished before the kill" if finished else f"killed after {seen} files + {after_s}s"


# (lines printed before the kill, extra seconds): start-up, first batches, mid-run, the tail.
MOMENTS_FRESH = [
    (0, 0.5),
    (0, 1.6),
    (0, 2.2),
    (1, 0.0),
    (3, 0.05),
    (8, 0.0),
    (15, 0.1),
    (25, 0.0),
    (35, 0.15),
    (44, 0.0),
]
MOMENTS_UPDATE = [(0, 1.8), (2, 0.0), (4, 0.05), (6, 0.0)]
# Chroma written from a child process (ingest/storeproc.py) or from the ingest process; the
# killed run uses one and the repairing rerun the other (the corpus is below "auto"'s threshold).
WRITERS = ("always", "never")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("corpora")
    v1, v2 = base / "v1", base / "v2"
    make_corpus(v1, seed=7)
    shutil.copytree(v1, v2)
    change_corpus(v2)
    return {"v1": v1, "v2": v2, "live": base / "live"}


def use(corpora: dict[str, Path], version: str) -> Path:
    """Put ``version`` at the one path every run ingests (chunk ids include the path)."""
    live = corpora["live"]
    shutil.rmtree(live, ignore_errors=True)
    shutil.copytree(corpora[version], live)
    return live


def test_kill_at_any_moment_then_rerun_gives_the_uninterrupted_index(
    tmp_path: Path, embed_server: ServerProcess, corpora: dict[str, Path]
) -> None:
    live = use(corpora, "v1")
    ref1 = tmp_path / "ref1"
    run_ingest(live, ref1, embed_server)
    expected_v1 = snapshot(ref1)
    assert len(expected_v1["chunks"]) > 100 and len(expected_v1["files"]) == 49

    outcomes: list[str] = []
    partial: list[bool] = []  # the kill left some files done and some not
    for n, (lines, secs) in enumerate(MOMENTS_FRESH):
        index = tmp_path / f"fresh{n}"
        writer = WRITERS[n % 2]
        outcomes.append(kill_during(live, index, embed_server, after_s=secs, after_lines=lines, writer=writer))
        rerun = run_ingest(live, index, embed_server, WRITERS[(n + 1) % 2])
        assert snapshot(index) == expected_v1, (n, writer, outcomes[-1], rerun.stderr[-2000:])
        summary = re.search(r"(\d+) added, \d+ updated, (\d+) unchanged", rerun.stderr)
        assert summary is not None, rerun.stderr
        partial.append(0 < int(summary.group(2)) < 49 or "Repaired an interrupted run" in rerun.stderr)
        # A second rerun has nothing left to do.
        again = run_ingest(live, index, embed_server)
        assert "0 added, 0 updated, 49 unchanged" in again.stderr, again.stderr[-500:]
    assert sum(o.startswith("killed") for o in outcomes) >= 9, outcomes
    assert sum(partial) >= 5, list(zip(outcomes, partial, strict=True))  # the kills landed mid-run

    # Kills while an existing index is updated: edits, deletions, a rename, a new file.
    live = use(corpora, "v2")
    run_ingest(live, ref1, embed_server)
    expected_v2 = snapshot(ref1)
    assert expected_v2 != expected_v1
    for n, (lines, secs) in enumerate(MOMENTS_UPDATE):
        index = tmp_path / f"update{n}"
        run_ingest(use(corpora, "v1"), index, embed_server)
        live = use(corpora, "v2")
        writer = WRITERS[n % 2]
        outcomes.append(kill_during(live, index, embed_server, after_s=secs, after_lines=lines, writer=writer))
        run_ingest(live, index, embed_server, WRITERS[(n + 1) % 2])
        assert snapshot(index) == expected_v2, (n, writer, outcomes[-1])
    assert sum(o.startswith("killed") for o in outcomes) >= 12, outcomes
