"""Ingest on real parts: real files, a real Chroma in a temp dir, the embedded default's
chunking. Where a test is about what ingest does with files, the embedder is an in-memory
fake (tests/fakes.py); where it is about what the embedded models find or say, they are the
real ones behind their /v1 HTTP apps (one shared index, ``embedded_rag_session``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag import EmptyIndexError, IndexMismatchError, Rag, Settings
from rag.answer import Event
from tests.conftest import DATA, ServerProcess, free_port, stored_metadata
from tests.fakes import FakeChat, FakeEmbedder


def _all(r: Rag) -> dict[str, dict[str, object]]:
    return stored_metadata(r, {})


def fake_rag(settings: Settings) -> Rag:
    """A Rag on ``settings`` (chunks sized by the embedded model's tokenizer) whose embedder and
    chat are in-memory fakes: no model server is started. The fake's vectors carry no meaning, so
    relevance is not calibrated for them: the refusal threshold is off."""
    settings = settings.model_copy(update={"min_relevance": 0.0})
    return Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat())


def test_ingest_twice_gives_same_ids_and_count(settings: Settings, embedded_rag_session: Rag) -> None:
    with fake_rag(settings) as r:
        first = r.ingest([DATA])
        ids1 = set(_all(r))
        assert first.count("added") == 6 and not first.failed
        assert len(ids1) == first.chunks == r.store.count()
        second = r.ingest([DATA])
        assert second.count("unchanged") == 6 and second.chunks == 0
        assert set(_all(r)) == ids1
    # A fresh process-level index built the same way gets the same ids too.
    with fake_rag(Settings(index_dir=settings.index_dir.parent / "other")) as r2:
        r2.ingest([DATA])
        assert set(_all(r2)) == ids1
    # And so does the one built with the real embedded embedder: ids do not depend on vectors.
    assert set(_all(embedded_rag_session)) == ids1


def test_pdf_chunks_carry_their_page(embedded_rag_session: Rag) -> None:
    r = embedded_rag_session  # data/ ingested with the real embedded embedder
    pdf = [m for m in _all(r).values() if m["source"] == "x200-user-guide.pdf"]
    assert {m["page"] for m in pdf} == {1, 2, 3, 4}
    hits = r.search("How long is the warranty on the X200?", k=3)
    assert (hits[0].source, hits[0].page) == ("x200-user-guide.pdf", 3)
    assert "3 years (36 months)" in hits[0].text


def test_changed_and_deleted_files_are_updated(settings: Settings, data_copy: Path) -> None:
    with fake_rag(settings) as r:
        r.ingest([data_copy])
        before = _all(r)
        notes = data_copy / "z10-release-notes.txt"
        notes.write_text(notes.read_text() + "\n\nVersion 2.5.0 (2026-02-01) adds a vacation mode.\n")
        (data_copy / "support-hours.html").unlink()
        report = r.ingest([data_copy])
        status = {f.source: f.status for f in report.files}
        assert status["z10-release-notes.txt"] == "updated"
        assert status["support-hours.html"] == "removed"
        assert report.count("unchanged") == 4
        after = _all(r)
        assert not any(m["source"] == "support-hours.html" for m in after.values())
        old_notes = {i for i, m in before.items() if m["source"] == "z10-release-notes.txt"}
        new_notes = {i for i, m in after.items() if m["source"] == "z10-release-notes.txt"}
        assert new_notes != old_notes  # stale chunks were replaced, not kept beside the new ones
        assert sum(1 for m in after.values() if m["source"] == "z10-release-notes.txt") == len(new_notes)
        assert any("vacation mode" in h.text for h in r.search("vacation mode", k=3))


def test_unreadable_and_unsupported_files_are_reported(settings: Settings, data_copy: Path) -> None:
    (data_copy / "empty.txt").write_bytes(b"")
    (data_copy / "junk.txt").write_bytes(b"\x00\x01binary\x00" * 100)
    (data_copy / "image.png").write_bytes(b"\x89PNG....")
    (data_copy / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<")
    with fake_rag(settings) as r:
        report = r.ingest([data_copy])
    by = {f.source: f for f in report.files}
    assert by["empty.txt"].status == "skipped" and "empty" in (by["empty.txt"].error or "")  # not a failure
    assert by["junk.txt"].status == "failed" and "binary" in (by["junk.txt"].error or "")
    assert by["broken.pdf"].status == "failed" and "PDF" in (by["broken.pdf"].error or "")
    assert by["image.png"].status == "skipped"
    assert report.count("added") == 6  # the rest of the folder still went in


def test_search_on_empty_index_says_what_to_do(settings: Settings) -> None:
    with Rag(settings) as r, pytest.raises(EmptyIndexError, match="rag ingest"):
        r.search("anything")


def test_chinese_question_finds_chinese_document(embedded_rag_session: Rag) -> None:
    hits = embedded_rag_session.search("Q7 空气净化器的 HEPA 滤网多久需要更换一次？", k=3)
    assert hits[0].source == "zh/q7-air-purifier.md"
    assert "每六个月" in hits[0].text
    assert "滤网更换" in (hits[0].metadata.get("heading") or "")


@pytest.mark.slow  # starts the real embedded chat model and generates: 7-55 s measured on 2 cores
def test_library_stream_events(embedded_rag_session: Rag) -> None:
    question = "What is the restocking fee for opened items?"
    check_stream_events(list(embedded_rag_session.stream(question, answer="generate")))


def test_library_stream_events_with_fakes(settings: Settings) -> None:
    """The same events from the same code, with an in-memory embedder and chat model."""
    with fake_rag(settings) as r:
        r.ingest([DATA])
        check_stream_events(list(r.stream("What is the restocking fee for opened items?", answer="generate")))
        assert isinstance(r.chat, FakeChat) and len(r.chat.calls) == 1


def check_stream_events(events: list[Event]) -> None:
    kinds = [e.type for e in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and "token" in kinds
    done = events[-1].data
    assert done["answer"] == "".join(e.data["text"] for e in events if e.type == "token")
    n_sources = len(events[0].data["sources"])
    assert all(1 <= c["n"] <= n_sources for c in done["citations"])
    assert "returns-policy.md" in {c["source"] for c in done["citations"]}
    assert done["usage"]["completion_tokens"] > 0 and done["timings"]["first_token_ms"] > 0


def test_other_embedding_model_is_refused(settings: Settings) -> None:
    with fake_rag(settings) as r:
        r.ingest([DATA / "returns-policy.md"])
    other = Settings(index_dir=settings.index_dir, embed_model="another-model", embed_base_url=None)
    with fake_rag(other) as r2, pytest.raises(IndexMismatchError, match="rag reindex"):
        r2.ingest([DATA / "returns-policy.md"])


@pytest.mark.slow  # each step in its own process: a process caches a collection's configuration
def test_the_collection_searches_wide_and_an_older_one_is_widened(settings: Settings) -> None:
    # HNSW at Chroma's default breadth (100, the dense depth) missed passages of the exact top 100,
    # different ones from process to process (rag.chroma.SEARCH_EF).
    import subprocess
    import sys

    from rag.chroma import SEARCH_EF

    def run(code: str) -> str:
        prelude = (
            "import sys, chromadb\n"
            f"sys.path[:0] = [{str(Path(__file__).parent.parent)!r}]\n"
            "from pathlib import Path\n"
            "from rag import Rag, Settings\n"
            "from tests.fakes import FakeChat, FakeEmbedder\n"
            f"s = Settings(index_dir=Path({str(settings.index_dir)!r}))\n"
            "def fake(): return Rag(s, embedder=FakeEmbedder(s.embed_model_name), chat=FakeChat())\n"
            "def col():\n"
            "    return chromadb.PersistentClient(path=str(s.index_dir / 'chroma')).get_collection(s.collection)\n"
        )
        out = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    ef = "print(col().configuration_json['hnsw']['ef_search'])"
    run(f"with fake() as r: r.ingest([Path({str(DATA / 'returns-policy.md')!r})])")
    assert run(ef) == str(SEARCH_EF) and SEARCH_EF > 100
    run("col().modify(configuration={'hnsw': {'ef_search': 100}})")  # as made before SEARCH_EF
    assert run(ef) == "100"
    run(f"with fake() as r: r.ingest([Path({str(DATA / 'support-hours.html')!r})])")  # the next ingest that writes
    assert run(ef) == str(SEARCH_EF)


@pytest.mark.slow
def test_chroma_server_mode(tmp_path: Path) -> None:
    """The same ingest and search against a real `chroma run` server."""
    import chromadb

    from tests.conftest import BIN

    port = free_port()
    server = ServerProcess(
        [
            str(BIN / "chroma"),
            "run",
            "--path",
            str(tmp_path / "chroma-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port,
        "/api/v2/heartbeat",
        log=tmp_path / "chroma.log",
    )
    try:
        s = Settings(index_dir=tmp_path / "unused", chroma_url=f"http://127.0.0.1:{port}")
        with Rag(s) as r:
            report = r.ingest([DATA])
            assert report.count("added") == 6
            assert r.store.count() == report.chunks
            hits = r.search("When is phone support available?", k=2)
            assert hits[0].source == "support-hours.html"
            assert r.ingest([DATA]).count("unchanged") == 6
        from rag.chroma import SEARCH_EF

        server_col = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection(s.collection)
        assert server_col.configuration_json["hnsw"]["ef_search"] == SEARCH_EF
        assert not (tmp_path / "unused" / "chroma").exists()
    finally:
        server.stop()


def test_files_read_by_an_older_loader_are_read_again_keeping_their_vectors(settings: Settings) -> None:
    # An index built before a loader change (here: rows signed without the text version) re-reads
    # every file on the next run; chunks whose text is the same take their stored vectors back.
    import sqlite3

    from ingest.manifest import manifest_path

    with fake_rag(settings) as r:
        first = r.ingest([DATA])
        assert first.count("added") == 6
        db = sqlite3.connect(manifest_path(settings.index_dir, settings.collection, None))
        with db:
            db.execute("UPDATE files SET chunker = substr(chunker, 1, instr(chunker, '/t') - 1)")
        db.close()
        again = r.ingest([DATA])
        assert again.count("unchanged") == 0 and not again.failed
        assert again.embedded == 0 and again.reused == first.chunks
        assert r.ingest([DATA]).count("unchanged") == 6  # and signed with the version now
