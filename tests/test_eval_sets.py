"""The eval sets in data/eval load as `rag eval` reads them, and the twins agree: a translated set
asks the same questions of the same pages as its original. (Their evidence against the real
corpora is checked by scripts/check_eval_sets.py, which needs the Debian packages installed.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.evaluate import load_questions
from rag.text import is_chinese

SETS = sorted(p for p in (Path(__file__).parent.parent / "data" / "eval").glob("*.jsonl") if p.stem != "claims")


@pytest.mark.parametrize("path", SETS, ids=[p.stem for p in SETS])
def test_every_set_loads_with_answer_keys_that_compile(path: Path) -> None:
    questions = load_questions(path)
    assert questions and any(q.unanswerable for q in questions) and any(not q.unanswerable for q in questions)
    for q in questions:
        assert q.question.strip() and (q.unanswerable or q.expected)
        for pattern in q.answers:
            re.compile(pattern)


@pytest.mark.parametrize(
    ("twin", "original"), [("gnuplot-doc-zh", "gnuplot-doc"), ("linuxcnc-doc-en", "linuxcnc-doc-zh")]
)
def test_a_translated_set_asks_the_same_of_the_same_pages(twin: str, original: str) -> None:
    folder = Path(__file__).parent.parent / "data" / "eval"
    translated = [q for q in load_questions(folder / f"{twin}.jsonl") if not q.unanswerable]
    source = [q for q in load_questions(folder / f"{original}.jsonl") if not q.unanswerable]
    assert len(translated) == len(source)
    for t, s in zip(translated, source, strict=True):
        assert t.expected == s.expected and t.answers == s.answers
        assert is_chinese(t.question) != is_chinese(s.question)  # asked in the other language
