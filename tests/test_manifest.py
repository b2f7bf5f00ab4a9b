"""The manifest and the store agree, whatever state an interrupted run left behind."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ServerProcess, instant_settings, stored_metadata

from rag import Rag


def chroma_ids(r: Rag) -> set[str]:
    return r.store.all_ids()


def test_recover_deletes_uncommitted_chunks_and_redoes_the_file(
    tmp_path: Path, data_copy: Path, instant_embeddings: ServerProcess
) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as r:
        r.ingest([data_copy])
        before = chroma_ids(r)
        path = str(data_copy / "returns-policy.md")
        committed = r.manifest.chunk_ids(path)
        # A run died after writing new chunks to Chroma but before committing them.
        r.manifest.mark_pending([(path, str(data_copy), "returns-policy.md", ["orphan-1", "orphan-2"])])
        chunk = r.store.get_embeddings([committed[0]])[committed[0]]
        from rag.store import StoredChunk

        r.store.upsert(
            [StoredChunk(i, "stale text", {"source": "returns-policy.md"}) for i in ("orphan-1", "orphan-2")],
            [chunk, chunk],
        )
        assert {"orphan-1", "orphan-2"} <= chroma_ids(r)

    with Rag(settings) as r:
        report = r.ingest([data_copy])
        assert report.recovered == 1
        by = {f.source: f for f in report.files}
        assert by["returns-policy.md"].status == "updated"
        assert by["returns-policy.md"].embedded == 0  # its committed vectors were reused
        assert chroma_ids(r) == before
        assert r.manifest.pending() == []


def test_recover_redoes_files_whose_chunks_vanished_from_the_store(
    tmp_path: Path, data_copy: Path, instant_embeddings: ServerProcess
) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as r:
        r.ingest([data_copy])
        before = chroma_ids(r)
        lost = r.manifest.chunk_ids(str(data_copy / "z10-release-notes.txt"))
        r.store.delete(lost[:2])  # e.g. a run died after deleting old chunks, before its commit
    with Rag(settings) as r:
        report = r.ingest([data_copy])
        assert report.recovered == 1
        assert {f.source: f.status for f in report.files}["z10-release-notes.txt"] == "updated"
        assert chroma_ids(r) == before


def test_manifest_is_reset_when_the_collection_was_dropped(
    tmp_path: Path, data_copy: Path, instant_embeddings: ServerProcess
) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as r:
        first = r.ingest([data_copy])
        r.store.drop()  # someone deleted the collection with another tool
        again = r.ingest([data_copy])
        assert again.count("added") == first.count("added") == 6
        assert r.store.count() == first.chunks


def test_chunks_never_exceed_the_embedding_models_limit(tmp_path: Path, instant_embeddings: ServerProcess) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "long.txt").write_text(" ".join(f"word{i} is here." for i in range(3000)))
    settings = instant_settings(tmp_path / "index", instant_embeddings, chunk_tokens=1000, embed_max_tokens=128)
    with Rag(settings) as r:
        report = r.ingest([docs])
        assert report.count("added") == 1
        metas = stored_metadata(r, {})
        assert len(metas) > 10
        assert max(int(m["tokens"]) for m in metas.values()) <= 120
        # Nothing was cut off: the chunks cover the whole text.
        assert max(int(m["end"]) for m in metas.values()) == len((docs / "long.txt").read_text().strip())


def test_status_reports_files_failures_settings_and_last_run(
    tmp_path: Path, data_copy: Path, instant_embeddings: ServerProcess
) -> None:
    (data_copy / "junk.txt").write_bytes(b"\x00\xff" * 64)
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as r:
        report = r.ingest([data_copy])
        status = r.status()
    assert status["files"] == 6 and status["failed"] == 1
    assert status["chunks"] == report.chunks
    assert status["failures"] == [
        {"source": "junk.txt", "root": str(data_copy.resolve()), "error": status["failures"][0]["error"]}
    ]
    assert "binary" in status["failures"][0]["error"]
    assert status["embed_model"] == "instant" and status["chunk_tokens"] == 128
    assert status["roots"] == [str(data_copy.resolve())]
    assert status["last_run"]["added"] == 6 and status["last_run"]["failed"] == 1
    json.dumps(status)  # serialisable for `rag status --json`
