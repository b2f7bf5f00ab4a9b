"""The storage rule, in one place: vectors, manifest rows and keyword rows agree after any crash.

A chunk lives in three stores: the vector store (Chroma: vector, text, metadata), the manifest's
``chunks`` table and the keyword tables in the same SQLite file (``ingest.schema``). Every change
goes through ``Index``, in this order:

1. **pending**: the files about to change are marked ``pending`` with the chunk ids about to be
   written, in a committed transaction (``start``);
2. **vectors**: the store gets the new chunks and loses the old ones (``start`` begins it; the
   writer process answers at once and writes meanwhile, the caller waits with what it returns);
3. **commit**: one transaction writes the files' rows, their ``chunks`` rows and their keyword
   rows (``commit``); a trigger bumps ``kw_state.gen``, which readers watch.

A process killed anywhere leaves ``pending`` marks (or a store that lost committed chunks);
``recover`` deletes from the store every id no committed row owns and marks the suspect files
stale, so the next ingest redoes them. Dropping files (``drop``, ``forget``) follows the same
order, and ``clear`` empties both sides.

The vectors go to the store, or during a big ingest to the writer process (``ingest.storeproc``):
one process uses the embedded Chroma at a time, so while it runs every store call goes through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ingest.manifest import Manifest
from ingest.schema import Committed, Failed, FileRow
from ingest.storeproc import StoreProcess
from rag.errors import IndexMismatchError
from rag.settings import Settings
from rag.store import ChromaStore, IndexInfo, check_compatible

# Files dropped per step (pending, store, manifest): bounds one SQL statement and one store call.
DROP_STEP = 500
# Chunks backfilled per store read when a manifest predates the keyword index.
BACKFILL_STEP = 1000


@dataclass
class Batch:
    """One write: files whose chunks are written (``stored``, their chunks' vectors in the same
    order in ``vectors``), files that had chunks and now hold none (``emptied``: path, root,
    source), and the rows the commit writes for files that failed, went away or were only touched
    (path, size, mtime_ns)."""

    stored: list[Committed] = field(default_factory=list)
    vectors: list[Sequence[float]] = field(default_factory=list)
    emptied: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    touched: list[tuple[str, int, int]] = field(default_factory=list)


class Index:
    """A collection's vectors, manifest rows and keyword rows, changed only by the storage rule.

    ``settings`` (optional) lets an ingest write through the writer process; without it every call
    goes to ``store`` in this process."""

    def __init__(self, store: ChromaStore, manifest: Manifest, settings: Settings | None = None) -> None:
        self.store = store
        self.manifest = manifest
        self.settings = settings
        # Where vectors are read and written now: ``store``, or the writer process.
        self.vectors: ChromaStore | StoreProcess = store
        self._proc: StoreProcess | None = None
        self.model: str | None = None
        self.dim: int | None = None
        self._chunking = (0, 0)
        self._ensured = False

    # -- the writer process -------------------------------------------------------------------
    def start_writer_process(self) -> None:
        """From now on the vectors go through a child process (``ingest.storeproc``)."""
        if self._proc is None:
            assert self.settings is not None, "the writer process needs the settings"
            self.vectors = self._proc = StoreProcess(self.settings)

    def _repairing(self) -> ChromaStore | StoreProcess:
        """The store for repairs (recovery, dropping files): the writer process if it runs, or if
        ``RAG_WRITE_PROCESS=always``."""
        if self.settings is not None and self.settings.write_process == "always":
            self.start_writer_process()
        return self.vectors

    def stop_writer_process(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None
            self.vectors = self.store
            self.store.reopen()  # it may hold a stale copy of what the child wrote

    # -- before a run writes ---------------------------------------------------------------------
    def prepare(self, model: str, chunk_tokens: int, chunk_overlap: int) -> str | None:
        """Check the collection against the embedding model before writing to it. A collection
        dropped behind our back leaves a manifest describing nothing: it is cleared, and a note
        saying so is returned."""
        self.model, self._chunking, self._ensured, self.dim = model, (chunk_tokens, chunk_overlap), False, None
        info = self.store.info()
        note = None
        if info is None and self.manifest.counts().get("chunks"):
            self.manifest.clear()
            note = "the collection was missing; the manifest was reset"
        if info is not None:
            check_compatible(info, model, None, self.store.name)
            self.dim = info.embed_dim
        return note

    def _ensure(self, dim: int) -> None:
        """The collection exists for ``dim``-dimensional vectors of the model (made on first write)."""
        if self.dim is not None and dim != self.dim:
            raise IndexMismatchError(
                f"The embedding server returned {dim}-dimensional vectors for '{self.model}', but the index "
                f"holds {self.dim}-dimensional ones. Run `rag reindex` to rebuild it with the current model."
            )
        if not self._ensured:  # once per run: creates the collection, or records new chunk settings
            assert self.model is not None, "prepare() first"
            self.vectors.ensure(IndexInfo(self.model, dim, *self._chunking))
            self.dim, self._ensured = dim, True

    # -- the rule: pending, vectors, commit ----------------------------------------------------------
    def start(self, batch: Batch) -> Callable[[], None]:
        """Steps 1 and 2: mark the batch's files pending, then start writing its vectors and
        deleting the chunks its files no longer have. Returns the function that waits for the
        store; ``commit`` may only follow it."""
        m = self.manifest
        paths = [c.path for c in batch.stored] + [path for path, _, _ in batch.emptied]
        old = {cid for path in paths for cid in m.chunk_ids(path)}
        m.mark_pending(
            [(c.path, c.root, c.source, [cid for cid, _ in c.chunks]) for c in batch.stored]
            + [(path, root, source, []) for path, root, source in batch.emptied]
        )
        chunks = [d for c in batch.stored for d in c.docs]
        drop = sorted(old - {d.id for d in chunks})
        if chunks:
            self._ensure(len(batch.vectors[0]))
        return self.vectors.start_write(chunks, batch.vectors, drop)

    def commit(self, batch: Batch) -> None:
        """Step 3, once the store has the batch: manifest and keyword rows in one transaction."""
        self.manifest.commit(batch.stored, batch.failed, batch.removed, batch.touched)

    def recover(self) -> int:
        """Make the store and the manifest agree after an interrupted run: delete from the store
        what no committed row owns, and mark stale the files whose committed chunks are missing or
        that were being written. Returns how many files the next ingest will redo because of it."""
        m = self.manifest
        pending = m.pending()
        if not pending and m.counts().get("chunks", 0) == self.vectors.count():
            return 0
        store = self._repairing()
        stored = store.all_ids()
        owned = m.all_chunk_ids()
        store.delete(sorted(stored - owned))  # written but never committed
        suspect = m.paths_of_chunks(owned - stored) | {r.path for r in pending}
        m.invalidate(sorted(suspect))
        return len(suspect)

    # -- dropping ----------------------------------------------------------------------------------
    def drop(self, rows: list[FileRow]) -> list[tuple[FileRow, int]]:
        """Remove these files' chunks from the store and their rows, by the rule (pending, then the
        store, then the manifest), ``DROP_STEP`` files at a time. Returns each file with its chunk count."""
        m, store = self.manifest, self._repairing()
        out: list[tuple[FileRow, int]] = []
        for i in range(0, len(rows), DROP_STEP):
            part = rows[i : i + DROP_STEP]
            ids = {r.path: m.chunk_ids(r.path) for r in part}
            m.mark_pending([(r.path, r.root, r.source, []) for r in part])
            store.delete([cid for v in ids.values() for cid in v] + [p for r in part for p in r.pending_ids])
            m.forget([r.path for r in part])
            out += [(r, len(ids[r.path])) for r in part]
        return out

    def forget(self, path: str) -> list[str]:
        """Drop ``path`` (a file, or every file under a folder) and the ingested roots at or under
        it. Returns the sources dropped."""
        dropped = [row.source for row, _ in self.drop(self.manifest.files(prefix=path))]
        self.manifest.forget_root(path)
        return dropped

    def clear(self) -> None:
        """Empty the collection: the store's collection is dropped, then every row (reset, reindex)."""
        self.store.drop()
        self.manifest.clear(roots=True)

    # -- an older manifest ---------------------------------------------------------------------------
    def backfill_keyword(self) -> None:
        """Keyword rows for committed chunks that lack them (a manifest from before the keyword
        index), read back from the store."""
        missing = self.manifest.keyword_missing()
        for i in range(0, len(missing), BACKFILL_STEP):
            part = dict(missing[i : i + BACKFILL_STEP])
            found = self.store.get_chunks(list(part))
            self.manifest.add_keyword([(part[c.id], c) for c in found])


__all__ = ["Batch", "Index"]
