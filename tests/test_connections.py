"""Issue 13, part 2: SQLite connections are bounded and closed, however many threads come and go.

The keyword index and the manifest's readers used to keep one connection per thread in a list,
never closed: a server whose thread pool retires idle threads and starts new ones (uvicorn's,
anyio's) gained files with every burst of requests (315 -> 605 over four bursts of 40). They now
check connections out of a small pool and back in."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import BIN, DATA, ServerProcess, clean_env, free_port, instant_settings, run_cli

from rag import Rag
from rag.keyword import POOL_SIZE, ConnectionPool

QUERIES = ("restocking fee", "firmware version thermostat", "空气净化器 滤网", "warranty X200", "support hours")


def open_files(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def burst(n: int, work: Callable[[int], None]) -> None:
    """``n`` new threads, all alive at once (a barrier), each calling ``work(i)``; then they end."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]


# -- the pool itself ------------------------------------------------------------------------------
def test_pool_never_opens_more_than_its_size_and_closes_what_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    sqlite3.connect(path).close()
    made: list[sqlite3.Connection] = []
    lock = threading.Lock()
    live = peak = 0

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False)
        made.append(db)
        return db

    pool = ConnectionPool(connect, size=3)

    def work(i: int) -> None:
        nonlocal live, peak
        with pool.connection() as db:
            with lock:
                live += 1
                peak = max(peak, live)
            db.execute("SELECT 1").fetchone()
            time.sleep(0.01)
            with lock:
                live -= 1

    for _ in range(3):
        burst(20, work)
    assert peak == 3 and len(made) == 3 and pool.opened == 3  # reused across bursts of new threads
    # close() closes idle connections now, and one checked out when it comes back.
    with pool.connection() as held:
        pool.close()
        assert pool.opened == 1
        held.execute("SELECT 1")
    assert pool.opened == 0
    for db in made:
        with pytest.raises(sqlite3.ProgrammingError):
            db.execute("SELECT 1")
    with pool.connection() as db:  # usable again afterwards
        assert db.execute("SELECT 1").fetchone() == (1,)
    pool.close()


def test_a_failed_read_does_not_poison_the_pool(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    sqlite3.connect(path).close()
    pool = ConnectionPool(lambda: sqlite3.connect(path, check_same_thread=False), size=1)
    with pytest.raises(sqlite3.OperationalError), pool.connection() as db:
        db.execute("SELECT * FROM missing")
    with pool.connection() as db:  # the one connection came back
        assert db.execute("SELECT 2").fetchone() == (2,)
    pool.close()


# -- in process: bursts of searches from new threads -------------------------------------------------
def test_open_files_stay_bounded_across_bursts_of_new_threads(
    tmp_path: Path, instant_embeddings: ServerProcess, data_copy: Path
) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as r:
        r.ingest([data_copy])
        hashes = [h for _, h in r.manifest.db.execute("SELECT id, hash FROM chunks")]

        def work(i: int) -> None:
            hits = r.search(QUERIES[i % len(QUERIES)], 5, mode="keyword")
            assert hits
            assert r.keyword.fetch([hits[0].id])
            assert r.manifest.find_by_chunk_hash(hashes[:3])  # what the ingest's parse threads call

        manifests = str(tmp_path / "index" / "manifests")
        counts, files = [], []
        for _ in range(5):
            burst(40, work)
            counts.append(open_files())
            files.append(sum(1 for p in fd_targets() if p.startswith(manifests)))
        print(f"\nafter each burst of 40 new threads: open files {counts}, of the manifest {files}")
        # The pools fill up to their size in the first bursts, then nothing more opens.
        assert r.keyword.pool.opened <= POOL_SIZE and r.manifest._readers.opened <= POOL_SIZE
        connections = 1 + 2 * POOL_SIZE  # the manifest's writer connection and the two pools
        assert max(files) <= 2 * connections + 1, files  # the database and its WAL per connection
        assert max(counts) - counts[0] <= 4 * POOL_SIZE, counts
    # Rag.close() closed them all: nothing of this index stays open.
    left = [p for p in fd_targets() if p.startswith(str(tmp_path / "index" / "manifests"))]
    assert not left, left


def fd_targets(pid: int | str = "self") -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile (or the listing's own descriptor)
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


# -- a real `rag serve`: its thread pool retires idle threads between bursts -----------------------
@pytest.mark.slow
def test_server_open_files_stay_bounded_across_bursts(tmp_path: Path, instant_embeddings: ServerProcess) -> None:
    env = clean_env(
        RAG_INDEX_DIR=str(tmp_path / "index"),
        RAG_EMBED_BASE_URL=instant_embeddings.url + "/v1",
        RAG_EMBED_MODEL="instant",
    )
    assert run_cli("ingest", str(DATA), env=env).returncode == 0
    port = free_port()
    server = ServerProcess(
        [str(BIN / "rag"), "serve", "--port", str(port)], port, "/health", env=env, log=tmp_path / "serve.log"
    )
    try:

        def one(i: int) -> None:
            got = httpx.post(
                server.url + "/search", json={"query": QUERIES[i % len(QUERIES)], "mode": "keyword"}, timeout=60
            )
            assert got.status_code == 200 and got.json()["hits"], got.text

        index = str(tmp_path / "index")
        totals, files = [], []
        for n in range(4):
            if n:
                time.sleep(11)  # anyio retires worker threads idle for 10 s: the next burst gets new ones
            with ThreadPoolExecutor(40) as pool:
                list(pool.map(one, range(40)))
            links = fd_targets(server.proc.pid)
            totals.append(len(links))
            files.append(sum(1 for p in links if p.startswith(index)))
        print(f"\n`rag serve` after each burst of 40 searches, 11 s apart: open files {totals}, of the index {files}")
        # The SQLite files are the pools' connections (a database and a WAL file each): a pool opens
        # connections as concurrent use first needs them, up to its size, then reuses them. The old
        # code opened new ones for every new worker thread (measured: 38, 60, 72, 90).
        assert max(files) - files[0] <= 2 * POOL_SIZE, files
        assert max(totals) - totals[0] <= 10, totals  # sockets come and go with the clients
    finally:
        server.stop()
