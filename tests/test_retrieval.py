"""Issue 5: the keyword index, the three search modes, filters and the eval harness,
on a real Chroma in a temporary directory, a real embeddings server process on
127.0.0.1 (deterministic vectors: dense ranking is arbitrary, which is what lets
these tests tell the modes apart) and the real files of data/."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from rag import Rag
from rag.errors import InvalidRequestError
from rag.evaluate import Expected, load_questions, ranks
from rag.keyword import Scope, match_expression, stem, terms
from rag.retrieval import Filters, Fusion, fuse, parse_pages
from rag.store import Hit
from tests.conftest import DATA, ServerProcess, clean_env, instant_settings, invoke_cli


@pytest.fixture(scope="module")
def indexed_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The copy of data/ that ``indexed`` holds; no test may change it."""
    docs = tmp_path_factory.mktemp("indexed") / "docs"
    shutil.copytree(DATA, docs)
    return docs


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory, instant_embeddings: ServerProcess, indexed_docs: Path
) -> Iterator[Rag]:
    """One index of data/ shared by the tests that only search it (ingested once per module)."""
    with pytest.MonkeyPatch.context() as env:  # settings from no RAG_* but ours, as in every test
        for key in [k for k in os.environ if k.startswith("RAG_")]:
            env.delenv(key)
        settings = instant_settings(tmp_path_factory.mktemp("indexed") / "index", instant_embeddings)
    with Rag(settings) as r:
        r.ingest([indexed_docs])
        yield r


@pytest.fixture
def own_index(tmp_path: Path, instant_embeddings: ServerProcess, data_copy: Path) -> Iterator[Rag]:
    """A private index of a private copy of data/, for a test that changes them."""
    with Rag(instant_settings(tmp_path / "index", instant_embeddings)) as r:
        r.ingest([data_copy])
        yield r


def keyword_ids(r: Rag) -> set[str]:
    assert r.keyword is not None  # opening it fills in an index built before it existed
    db = sqlite3.connect(r.manifest.path)  # the keyword rows live beside the catalog
    try:
        return {row[0] for row in db.execute("SELECT id FROM kw_chunks")}
    finally:
        db.close()


def consistent(r: Rag) -> set[str]:
    """Keyword index == manifest == Chroma, and FTS5 agrees with its rows."""
    stored = r.store.all_ids()
    assert keyword_ids(r) == r.manifest.all_chunk_ids() == stored
    db = sqlite3.connect(r.manifest.path)
    db.execute("INSERT INTO kw (kw) VALUES ('integrity-check')")
    db.close()
    return stored


# -- analysis ------------------------------------------------------------------------------------
def test_terms_keep_identifiers_whole_and_in_parts() -> None:
    got = terms("Call sqlite3_prepare_v2() or getElementById, SQLITE_BUSY; the end. Running queries")
    assert {"sqlite3_prepare_v2", "sqlite3", "prepar", "v2", "getelementbyid", "element", "id"} <= set(got)
    assert {"sqlite_busy", "sqlite", "busi", "call", "end", "run", "queri"} <= set(got)
    assert "the" not in got and "or" not in got
    assert stem("running") == stem("runs") == "run" and stem("sqlite3") == "sqlite3"


def test_terms_split_chinese_into_bigrams() -> None:
    assert terms("空气净化器") == ["空气", "气净", "净化", "化器"]
    assert terms("滤网 A") == ["滤网"]
    assert terms("中") == ["中"]


def test_match_expression_quotes_every_term() -> None:
    assert match_expression('what is "NEAR" AND x2?') == '"near" OR "x2"'
    assert match_expression("the of and") is None


# -- the keyword index follows ingest ---------------------------------------------------------------
def test_keyword_index_holds_exactly_the_committed_chunks(own_index: Rag, data_copy: Path) -> None:
    r = own_index
    assert len(consistent(r)) > 10
    # Edit one file, delete one, rename one, add one: the next run keeps all three indexes equal.
    notes = data_copy / "z10-release-notes.txt"
    notes.write_text(notes.read_text() + "\nVersion 9.9.9 adds the quokkatron pairing mode.\n")
    (data_copy / "support-hours.html").unlink()
    (data_copy / "returns-policy.md").rename(data_copy / "returns.md")
    (data_copy / "new.md").write_text("# Zebrafish\n\nThe zebrafish firmware handles hibernation.\n")
    r.ingest([data_copy])
    consistent(r)
    assert r.search("quokkatron", 3, mode="keyword")[0].source == "z10-release-notes.txt"
    assert r.search("zebrafish hibernation", 3, mode="keyword")[0].source == "new.md"
    assert all(h.source != "support-hours.html" for h in r.search("support hours weekend", 10, mode="keyword"))
    assert {h.source for h in r.search("restocking fee", 5, mode="keyword")} == {"returns.md"}
    r.forget(data_copy / "new.md")
    consistent(r)
    assert r.search("zebrafish", 3, mode="keyword") == []
    r.reset()
    assert keyword_ids(r) == set()


def test_keyword_index_is_filled_in_for_an_index_built_before_it(
    tmp_path: Path, instant_embeddings: ServerProcess, data_copy: Path
) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as r:
        r.ingest([data_copy])
        manifest = r.manifest.path
    db = sqlite3.connect(manifest)  # what a manifest written by the previous version looks like
    db.executescript("DROP TRIGGER chunks_kw_ad; DROP TABLE kw; DROP TABLE kw_chunks;")
    db.close()
    with Rag(settings) as r:
        stored = consistent(r)
        assert len(stored) > 10
        assert r.search("restocking fee", 1, mode="keyword")[0].source == "returns-policy.md"


# -- modes ---------------------------------------------------------------------------------------------
def test_keyword_mode_finds_exact_terms_and_chinese(indexed: Rag) -> None:
    top = indexed.search("SUPPORTED_FORMATS", 1, mode="keyword")[0]
    assert top.source == "tools/export_report.py" and "SUPPORTED_FORMATS" in top.text
    top = indexed.search("净化器的滤网多久更换", 1, mode="keyword")[0]
    assert top.source == "zh/q7-air-purifier.md" and "滤网" in top.text
    assert indexed.search("xylophonic quasar", 5, mode="keyword") == []


def test_hybrid_takes_exact_matches_from_the_keyword_side(indexed: Rag) -> None:
    # Dense vectors here are arbitrary: an identifier only BM25 can find must still come first.
    dense = indexed.search("SUPPORTED_FORMATS", 5, mode="dense")
    hybrid = indexed.search("SUPPORTED_FORMATS", 5, mode="hybrid")
    assert "SUPPORTED_FORMATS" in hybrid[0].text
    assert all(0.0 <= h.score <= 1.0 for h in hybrid)
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    assert {h.id for h in dense} & {h.id for h in hybrid}  # the dense side contributes too
    assert indexed.settings.search_mode == "hybrid"


def test_fuse_weights_and_normalisation() -> None:
    def hit(cid: str, score: float) -> Hit:
        return Hit(cid, score, "s", None, cid)

    dense = [hit("a", 0.90), hit("b", 0.85), hit("c", 0.80)]
    keyword = [hit("c", 30.0), hit("d", 10.0), hit("a", 5.0)]
    fused = fuse(dense, keyword, 4, Fusion(depth=10, dense_weight=0.6))
    # min-max within each list: dense a 1, b 0.5, c 0; keyword c 1, d 0.2, a 0
    # a: 0.6; c: 0.4; b: 0.3; d: 0.08
    assert [h.id for h in fused] == ["a", "c", "b", "d"]
    assert [h.score for h in fused] == pytest.approx([0.6, 0.4, 0.3, 0.08])
    assert [h.id for h in fuse(dense, keyword, 2, Fusion(10, 0.3))] == ["c", "a"]  # keyword-heavy
    assert fuse([], [], 3) == []
    assert Fusion() == Fusion(depth=100, dense_weight=0.6)  # the measured default


# -- filters --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_filters_apply_in_every_mode(indexed: Rag, indexed_docs: Path, mode: str) -> None:
    q = "warranty support returns firmware HEPA 滤网 Q7 hours"

    def sources(**f: object) -> set[str]:
        hits = indexed.search(q, 20, mode=mode, filters=Filters(**f))  # type: ignore[arg-type]
        return {h.source for h in hits}

    assert sources(paths=("zh/",)) == {"zh/q7-air-purifier.md"}
    assert sources(paths=("*.md",)) <= {"returns-policy.md", "zh/q7-air-purifier.md"}
    assert sources(paths=(str(indexed_docs / "z10"),)) == {"z10-release-notes.txt"}
    assert sources(types=("pdf",)) == {"x200-user-guide.pdf"}
    assert sources(types=(".txt", "html")) <= {"z10-release-notes.txt", "support-hours.html"}
    pages = {h.page for h in indexed.search(q, 20, mode=mode, filters=Filters(page_min=2, page_max=3))}  # type: ignore[arg-type]
    assert pages and pages <= {2, 3}
    assert sources(paths=("nothing/",)) == set()


def test_min_score_and_bad_filters(indexed: Rag) -> None:
    hits = indexed.search("restocking fee warranty returns", 10, mode="keyword")
    cut = hits[1].score
    kept = indexed.search("restocking fee warranty returns", 10, mode="keyword", min_score=cut)
    assert kept == [h for h in hits if h.score >= cut] and len(kept) < len(hits)
    with pytest.raises(InvalidRequestError, match="page range 5-2 is empty"):
        Filters(page_min=5, page_max=2)
    with pytest.raises(InvalidRequestError, match="Unknown search mode"):
        indexed.search("x", 3, mode="fuzzy")
    assert parse_pages("3-7") == (3, 7) and parse_pages("5") == (5, 5) and parse_pages("-4") == (None, 4)
    with pytest.raises(InvalidRequestError, match="Invalid page range"):
        parse_pages("seven")
    with pytest.raises(InvalidRequestError, match="No indexed passage matches"):
        indexed.start("What is the restocking fee?", 3, filters=Filters(paths=("nowhere/",)))


# -- HTTP -------------------------------------------------------------------------------------------------
def test_http_search_takes_the_same_options(indexed: Rag) -> None:
    with TestClient(create_app(rag=indexed)) as client:
        r = client.post("/search", json={"query": "SUPPORTED_FORMATS", "k": 3, "mode": "keyword"})
        assert r.status_code == 200 and "SUPPORTED_FORMATS" in r.json()["hits"][0]["text"]
        r = client.post("/search", json={"query": "fee", "types": ["pdf"], "page_min": 2, "page_max": 2, "k": 5})
        assert r.status_code == 200
        assert {(h["source"], h["page"]) for h in r.json()["hits"]} == {("x200-user-guide.pdf", 2)}
        r = client.post("/search", json={"query": "fee", "paths": ["zh/"], "mode": "dense"})
        assert {h["source"] for h in r.json()["hits"]} == {"zh/q7-air-purifier.md"}
        r = client.post("/search", json={"query": "fee", "mode": "fuzzy"})
        assert r.status_code == 400 and "mode" in r.json()["error"]["message"]
        r = client.post("/search", json={"query": "fee", "page_min": 5, "page_max": 2})
        assert r.status_code == 400 and "page range" in r.json()["error"]["message"]
        r = client.post("/query", json={"question": "What is the fee?", "paths": ["nowhere/"]})
        assert r.status_code == 400 and "No indexed passage" in r.json()["error"]["message"]


# -- CLI ----------------------------------------------------------------------------------------------------
def cli_ingested(tmp_path: Path, server: ServerProcess) -> dict[str, str]:
    """The environment for `rag` whose index holds a copy of data/, ingested by the CLI (in this process)."""
    env = clean_env(
        RAG_INDEX_DIR=str(tmp_path / "index"),
        RAG_EMBED_BASE_URL=server.url + "/v1",
        RAG_EMBED_MODEL="instant",
    )
    docs = tmp_path / "docs"
    shutil.copytree(DATA, docs)
    assert invoke_cli("ingest", str(docs), env=env).returncode == 0
    return env


def test_cli_search_modes_and_filters(tmp_path: Path, instant_embeddings: ServerProcess) -> None:
    env = cli_ingested(tmp_path, instant_embeddings)
    out = invoke_cli("search", "SUPPORTED_FORMATS", "--mode", "keyword", "-k", "2", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert "SUPPORTED_FORMATS" in json.loads(out.stdout)[0]["text"]
    out = invoke_cli("search", "warranty", "--type", "pdf", "--pages", "3", "--json", env=env)
    assert {(h["source"], h["page"]) for h in json.loads(out.stdout)} == {("x200-user-guide.pdf", 3)}
    out = invoke_cli("search", "warranty", "--path", "nowhere/", env=env)
    assert out.returncode == 0 and "No chunk matches" in out.stderr
    out = invoke_cli("search", "warranty", "--pages", "x", env=env)
    assert out.returncode == 1 and "Invalid page range" in out.stderr
    assert "--mode [dense|keyword|hybrid]" in invoke_cli("ask", "--help", env=env).stdout


# -- evaluation harness ----------------------------------------------------------------------------------------
def test_ranks_and_ndcg_by_hand() -> None:
    def hit(source: str, page: int | None = None) -> Hit:
        return Hit(source + str(page), 1.0, source, page, "")

    expected = [Expected("a.html"), Expected("doc.pdf", 4)]
    hits = [hit("x.html"), hit("doc.pdf", 4), hit("doc.pdf", 4), hit("sub/a.html"), hit("doc.pdf", 5)]
    first, ndcg = ranks(hits, expected)
    # gains at ranks 2 and 4 (the second doc.pdf p4 chunk earns nothing); ideal: ranks 1 and 2
    assert first == 2
    assert ndcg == pytest.approx((1 / 1.5849625 + 1 / 2.3219281) / (1 + 1 / 1.5849625), rel=1e-6)
    assert ranks([hit("x.html")], expected) == (None, 0.0)
    assert ranks([hit("a.html")], [Expected("a.html")]) == (1, 1.0)


def test_load_questions_names_the_bad_line(tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"question": "q", "expected": [{"source": "a.md", "page": 2}]}\n\n{"question": "q2"}\n')
    with pytest.raises(InvalidRequestError, match=r"line 3: needs \"expected\""):
        load_questions(qa)
    qa.write_text('{"question": "q", "expected": [{"source": "a.md", "page": 0}]}\n')
    with pytest.raises(InvalidRequestError, match='line 1: "page" must be a positive integer'):
        load_questions(qa)
    qa.write_text('{"question": "q", "expected": [{"source": "/a.md", "page": 2}], "answer": "x"}\n')
    assert load_questions(qa)[0].expected == [Expected("a.md", 2)]


def test_cli_eval_scores_every_mode(tmp_path: Path, instant_embeddings: ServerProcess) -> None:
    env = cli_ingested(tmp_path, instant_embeddings)
    qa = tmp_path / "qa.jsonl"
    lines = [
        {"question": "Which formats does SUPPORTED_FORMATS allow?", "expected": [{"source": "tools/export_report.py"}]},
        {"question": "restocking fee for opened items", "expected": [{"source": "returns-policy.md"}]},
        {"question": "Q7 空气净化器 滤网", "expected": [{"source": "zh/q7-air-purifier.md"}]},
        {"question": "X200 warranty", "expected": [{"source": "x200-user-guide.pdf", "page": 3}]},
    ]
    qa.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
    out = invoke_cli("eval", str(qa), "--json", env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["questions"] == 4 and set(report["modes"]) == {"dense", "keyword", "hybrid"}
    kw = report["modes"]["keyword"]
    # BM25 finds all four (each question names its document's words); random dense vectors cannot.
    assert kw["hit@5"] == 1.0 and kw["mrr"] > 0.6
    assert report["modes"]["hybrid"]["hit@10"] >= kw["hit@10"] - 0.25
    for m in report["modes"].values():
        assert 0 <= m["hit@1"] <= m["hit@5"] <= m["hit@10"] <= 1 and 0 <= m["ndcg@10"] <= 1
    text = invoke_cli("eval", str(qa), "--mode", "keyword", env=env)
    assert text.returncode == 0 and "keyword" in text.stdout and "dense" not in text.stdout
    qa.write_text(json.dumps({"question": "q", "expected": [{"source": "not/there.md"}]}) + "\n")
    warned = invoke_cli("eval", str(qa), "--mode", "keyword", env=env)
    assert warned.returncode == 0 and "1 expected source(s) are not in 'rag'" in warned.stderr
    assert "not/there.md" in warned.stderr
    bad = invoke_cli("eval", str(tmp_path / "missing.jsonl"), env=env)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert os.path.exists(qa)


# -- the in-memory scorer agrees with FTS5 and follows other writers --------------------------------
def test_memory_bm25_matches_fts5(indexed: Rag) -> None:
    from rag.keyword import KeywordIndex

    fts = KeywordIndex(indexed.manifest.path, memory=False)
    mem = KeywordIndex(indexed.manifest.path, memory=True)
    try:
        for q in (
            "restocking fee for opened items",
            "firmware version thermostat",
            "空气净化器 滤网",
            "export_report csv",
        ):
            a, b = fts.search(q, 8), mem.search(q, 8)
            assert a, q
            assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-4), q
            assert {h.id for h in a} == {h.id for h in b}, q
        scope = Scope(
            paths=[str(p) for p in (f.path for f in indexed.manifest.files(prefix="/"))][:3],
            page_min=None,
            page_max=None,
        )
        assert {h.id for h in fts.search("the fee warranty", 20, scope)} == {
            h.id for h in mem.search("the fee warranty", 20, scope)
        }
    finally:
        fts.close()
        mem.close()


def test_memory_bm25_catches_up_with_another_writer(
    tmp_path: Path, instant_embeddings: ServerProcess, data_copy: Path
) -> None:
    settings = instant_settings(tmp_path / "index", instant_embeddings)
    with Rag(settings) as reader, Rag(settings) as writer:
        writer.ingest([data_copy])
        assert reader.search("restocking", 1, mode="keyword")[0].source == "returns-policy.md"
        (data_copy / "late.md").write_text("# Late\n\nThe marmoset protocol arrived later.\n")
        writer.ingest([data_copy])
        # The reader's copy is stale: it answers from it and rebuilds in the background.
        deadline = time.monotonic() + 30
        while not reader.search("marmoset", 1, mode="keyword"):
            assert time.monotonic() < deadline, "the in-memory index never caught up"
            time.sleep(0.05)
        assert reader.search("marmoset", 1, mode="keyword")[0].source == "late.md"


def test_keyword_tables_from_an_older_version_are_rebuilt(own_index: Rag) -> None:
    indexed = own_index
    path = indexed.manifest.path
    indexed.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE kw_chunks SET terms = 'stale'")  # what an older analysis left behind
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Rag(indexed.settings) as r:
        consistent(r)
        assert r.search("restocking fee", 1, mode="keyword")[0].source == "returns-policy.md"
        assert r.search("stale", 1, mode="keyword") == []
