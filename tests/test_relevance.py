"""Issue 14: calibrated relevance (rag/relevance.py), its keyword signals (rag.bm25.match), the
hybrid ranking by it (rag.retrieval.rank), the eval file's answer keys and unanswerable lines
(rag.evaluate), and the rare-term requirement on a real Chroma index of ~60 files."""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag import Rag
from rag.bm25 import Matches, build, match, score
from rag.errors import InvalidRequestError
from rag.evaluate import ModeScore, load_questions, refusals, summarise
from rag.relevance import (
    CALIBRATION_GLOSSED_FULL,
    FULL,
    KEYWORD,
    MODEL_FULL,
    MODEL_GLOSSED,
    MODEL_KEYWORD,
    Candidate,
    calibrated,
    candidates,
    features,
)
from rag.relevance import score as relevance
from rag.retrieval import rank
from rag.settings import Settings
from rag.store import Hit
from rag.text import terms
from tests.fakes import FakeEmbedder


def tiny_index(texts: list[str]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE kw_state (gen INTEGER)")
    db.execute("INSERT INTO kw_state VALUES (1)")
    db.execute("CREATE TABLE kw_chunks (rowid INTEGER PRIMARY KEY, id TEXT, path TEXT, page INTEGER, terms TEXT)")
    for i, t in enumerate(texts):
        db.execute("INSERT INTO kw_chunks VALUES (?,?,?,?,?)", (i + 1, f"c{i}", f"/f{i}", 0, " ".join(terms(t))))
    return db


TEXTS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "error code E42 means fan failure",
    "the cat and the dog",
    "warranty of three years",
]


def test_match_gives_bm25_coverage_and_rare_terms() -> None:
    built = build(tiny_index(TEXTS))
    words = terms("cat E42 zebra")
    m = match(built, words, [f"c{i}" for i in range(5)] + ["gone"])
    # BM25 as the ranking scorer computes it, for ranked and unranked chunks alike
    for _, cid, bm in score(built, words, 5, None):
        assert m.by_id[cid][0] == pytest.approx(bm)
    assert set(m.by_id) == {"c0", "c2", "c3"}  # chunks holding no query term are left out
    idf_cat, idf_e42, idf_zebra = (built.idf(w) for w in words)
    assert idf_zebra == pytest.approx(math.log(2 * 5 + 1))  # in no chunk: the largest idf
    assert m.total_idf == pytest.approx(idf_cat + idf_e42 + idf_zebra)
    assert m.absent_idf == pytest.approx(idf_zebra)
    assert m.by_id["c2"][1] == pytest.approx(idf_e42) and m.by_id["c2"][2] == pytest.approx(idf_e42)
    assert idf_e42 > idf_cat  # E42 is in one chunk, cat in two


def test_features_are_bounded_and_impute_the_missing_cosine() -> None:
    m = Matches(total_idf=4.0, absent_idf=1.0, max_idf=5.0, by_id={"a": (3.0, 4.0, 2.0), "b": (1.0, 1.0, 1.0)})
    cands = candidates(["a", "b", "k"], {"a": 0.9, "b": 0.8}, m)
    x = features(cands, m, dense=True)
    assert x.shape == (3, len(FULL))
    col = dict(zip(FULL, x.T, strict=True))
    assert list(col["cov"]) == [1.0, 0.25, 0.0]
    assert list(col["cos"]) == [0.9, 0.8, 0.8]  # "k" (keyword side only) gets the lowest dense cosine
    assert list(col["absent"]) == [0.25] * 3
    assert col["cos_gap"][0] == 0.0 and col["cov_gap"][2] == 1.0
    assert ((col["bm25n"] >= 0) & (col["bm25n"] <= 1)).all()
    assert features(cands, m, dense=False).shape == (3, len(KEYWORD))
    assert features([], m, dense=True).shape == (0, len(FULL))


def test_relevance_is_a_probability_that_rises_with_the_evidence() -> None:
    m = Matches(10.0, 0.0, 10.0, {"full": (20.0, 10.0, 9.0), "half": (6.0, 5.0, 3.0)})
    strong, weak, none = relevance(
        [Candidate("full", 0.9, *m.by_id["full"]), Candidate("half", 0.85, *m.by_id["half"]), Candidate("x", 0.8)],
        m,
        dense=True,
    )
    assert 0 < none < weak < strong < 1
    for model in (MODEL_FULL, MODEL_KEYWORD, MODEL_GLOSSED):
        assert len(model.coef) == len(model.features)
        assert all(np.isfinite(model.coef)) and np.isfinite(model.intercept)
    # not normalised per query: the best hit of a query matching nothing is still unlikely
    off = Matches(10.0, 10.0, 10.0, {})
    (best,) = relevance([Candidate("y", 0.78)], off, dense=True)
    assert best < 0.2 < strong


def test_a_question_looked_up_in_english_has_its_own_models() -> None:
    # The same candidates, as a question in the documents' language and as a Chinese question
    # looked up in English (Matches.glossed): a lower cosine is ordinary there, and what tells
    # an unanswerable one is how much of it the documents lack.
    by_id = {"a": (8.0, 6.0, 4.0), "b": (3.0, 2.0, 2.0)}
    cands = [Candidate("a", 0.78, *by_id["a"]), Candidate("b", 0.77, *by_id["b"]), Candidate("c", 0.76)]
    own = relevance(cands, Matches(8.0, 2.0, 9.0, by_id), dense=True)
    glossed_m = Matches(8.0, 2.0, 9.0, by_id, glossed=True)
    glossed = relevance(cands, glossed_m, dense=True)
    assert max(own) < 0.6 < max(glossed)
    x = features(cands, glossed_m, dense=True)
    composed = calibrated(MODEL_GLOSSED.predict(x), x, True, glossed_m, CALIBRATION_GLOSSED_FULL)
    assert glossed == pytest.approx(list(composed))
    lacking = relevance(cands, Matches(8.0, 6.0, 9.0, by_id, glossed=True), dense=True)
    assert max(lacking) < 0.6 < max(glossed)
    for glossed_kw in (False, True):
        kw = relevance(cands, Matches(8.0, 2.0, 9.0, by_id, glossed=glossed_kw), dense=False)
        assert all(0 < p < 1 for p in kw)


class Terms:
    def __init__(self, m: Matches) -> None:
        self.m = m
        self.asked: list[list[str]] = []

    def matches(self, query: str, ids: Sequence[str]) -> Matches:
        self.asked.append(list(ids))
        return self.m


def test_rank_orders_hybrid_by_relevance_and_keeps_the_other_modes_scores() -> None:
    def hit(cid: str, s: float) -> Hit:
        return Hit(cid, s, "", None, "")

    m = Matches(6.0, 0.0, 8.0, {"exact": (18.0, 6.0, 7.5), "d1": (1.0, 1.0, 1.0)})
    dense = [hit("d1", 0.86), hit("d2", 0.85)]
    keyword = [hit("exact", 18.0), hit("d1", 1.0)]
    terms_ = Terms(m)
    hybrid = rank("q", dense, keyword, terms_, "hybrid")
    assert [h.id for h in hybrid][0] == "exact"  # the rare exact match, though dense never found it
    assert sorted(terms_.asked[0]) == ["d1", "d2", "exact"]
    assert all(h.score == h.relevance for h in hybrid)
    assert [h.relevance for h in hybrid] == sorted((h.relevance for h in hybrid), reverse=True)
    only_dense = rank("q", dense, [], terms_, "dense")
    assert [(h.id, h.score) for h in only_dense] == [("d1", 0.86), ("d2", 0.85)]
    assert all(0 < h.relevance < 1 for h in only_dense)
    only_kw = rank("q", [], keyword, terms_, "keyword")
    assert [(h.id, h.score) for h in only_kw] == [("exact", 18.0), ("d1", 1.0)]
    assert only_kw[0].relevance > only_kw[1].relevance
    assert rank("q", [], [], terms_, "hybrid") == []
    assert hybrid[0].to_dict()["relevance"] == round(hybrid[0].relevance, 4)


# -- the eval file ------------------------------------------------------------------------------
def test_eval_lines_carry_answer_keys_and_unanswerable(tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    lines = [
        {"question": "Warranty?", "expected": [{"source": "a.pdf", "page": 3}], "answer": ["3 years", "36"]},
        {"question": "Old style", "expected": [{"source": "b.md"}], "answer": "free text"},
        {"question": "Who won the 2022 football world cup?", "unanswerable": True},
    ]
    qa.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    a, b, c = load_questions(qa)
    assert a.answers == ["3 years", "36"] and not a.unanswerable
    assert b.answers == [] and b.answer_text == "free text"
    assert c.unanswerable and c.expected == []
    for bad in (
        {"question": "x", "unanswerable": True, "expected": [{"source": "a"}]},
        {"question": "x", "expected": [{"source": "a"}], "answer": ["(unclosed"]},
        {"question": "x"},
    ):
        qa.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(InvalidRequestError, match="line 1"):
            load_questions(qa)


def test_metrics_leave_unanswerable_lines_out_and_report_refusals() -> None:
    results = [(1, 1.0), (None, 0.0), (None, 0.0), (3, 0.5)]
    flags = [False, True, True, False]
    best = [0.8, 0.1, 0.6, 0.2]
    s = summarise("hybrid", results, 0.4, best, flags, min_relevance=0.3)
    assert s.questions == 2 and s.unanswerable == 2
    assert s.hit1 == 0.5 and s.hit5 == 1.0 and s.ndcg10 == 0.75
    assert (s.refused, s.wrongly_refused) == (0.5, 0.5)
    d = s.to_dict()
    assert d["answerable"] == 2 and d["unanswerable"] == 2 and d["min_relevance"] == 0.3
    assert d["refused"] == 0.5 and d["wrongly_refused"] == 0.5
    assert {"hit@1", "hit@5", "hit@10", "mrr", "ndcg@10", "ms_mean", "questions"} <= set(d)
    assert refusals([0.5], [False], 0.3) == (None, 0.0)
    assert ModeScore("dense").to_dict()["refused"] is None
    assert summarise("dense", [(2, 0.6)], 0.1).refused is None  # no relevance given: no refusal figures


# -- the requirement: a rare exact term reaches the top k -----------------------------------------
WORDS = [
    "install",
    "configure",
    "server",
    "client",
    "network",
    "backup",
    "printer",
    "user",
    "group",
    "password",
    "disk",
    "partition",
    "kernel",
    "driver",
    "module",
    "package",
    "update",
    "upgrade",
    "firewall",
    "proxy",
    "mail",
    "browser",
    "desktop",
    "screen",
    "keyboard",
    "mouse",
    "session",
    "login",
    "logout",
    "terminal",
    "shell",
    "script",
    "service",
    "daemon",
    "log",
    "monitor",
    "alert",
]


def corpus(root: Path, files: int = 60) -> list[Path]:
    rnd = random.Random(14)
    paths = []
    for i in range(files):
        paras = [" ".join(rnd.choice(WORDS) for _ in range(40)).capitalize() + "." for _ in range(4)]
        path = root / f"doc{i:02d}.md"
        path.write_text(f"# Notes {i}\n\n" + "\n\n".join(paras) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def test_an_exact_rare_term_reaches_the_top_k_in_hybrid(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    paths = corpus(docs)
    settings = Settings(index_dir=tmp_path / "index")
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name)) as r:  # type: ignore[arg-type]
        r.ingest([docs])
        with paths[37].open("a", encoding="utf-8") as f:
            f.write("\nAn added paragraph with editmarker999.\n")
        r.ingest([docs])
        hits = r.search("editmarker999", 3, mode="hybrid")
        assert hits[0].source.endswith("doc37.md"), [h.source for h in hits]
        # (FakeEmbedder's cosines are far below e5's, so the figure itself means little here)
        assert hits[0].relevance > max(h.relevance for h in hits[1:])
        assert r.search("editmarker999", 3, mode="keyword")[0].source.endswith("doc37.md")


@pytest.mark.slow
def test_an_exact_rare_term_reaches_the_top_k_with_the_embedded_model(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    paths = corpus(docs)
    with Rag(Settings(index_dir=tmp_path / "index")) as r:
        r.ingest([docs])
        with paths[37].open("a", encoding="utf-8") as f:
            f.write("\nAn added paragraph with editmarker999.\n")
        r.ingest([docs])
        hits = r.search("editmarker999", 3, mode="hybrid")
        assert any(h.source.endswith("doc37.md") for h in hits), [h.source for h in hits]
