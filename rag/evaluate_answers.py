"""``rag eval --answers``: the quality of whole answers, per answer mode.

For every question of a set (``rag.evaluate.load_questions``), an answer is made as ``rag ask``
would make it, in each mode asked for (generate, quote, auto), and scored:

- **accuracy**: answerable lines with an ``answer`` (regular expressions, any matching means right,
  case-insensitive) whose answer matches; a refusal is wrong;
- **citation precision**: cited passages (markers, and sentences matched to a source by content)
  that come from an expected source, over all cited passages;
- **refusal rate**: unanswerable lines (``"unanswerable": true``) answered with a refusal;
- **wrong refusals**: answerable lines refused;
- **unsupported rate**: answer sentences the check (``rag.claims``) finds unsupported, over all
  checked sentences of answers that were not refusals;
- **time to first token**: median and mean, from the question to the first answer text.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.errors import RagError
from rag.evaluate import Question

if TYPE_CHECKING:
    from rag.engine import Rag


@dataclass
class AnswerScore:
    mode: str
    answerable: int = 0
    unanswerable: int = 0
    keyed: int = 0  # answerable lines with answer keys
    right: int = 0
    refused_unanswerable: int = 0
    refused_answerable: int = 0
    cited: int = 0
    cited_expected: int = 0
    sentences: int = 0
    unsupported: int = 0
    errors: int = 0
    first_token_ms: list[float] = field(default_factory=list)
    wrong: list[int] = field(default_factory=list)  # lines answered wrongly (keyed, answerable)

    def to_dict(self) -> dict[str, Any]:
        def rate(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        ttft = self.first_token_ms
        return {
            "mode": self.mode,
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            "accuracy": rate(self.right, self.keyed),
            "citation_precision": rate(self.cited_expected, self.cited),
            "refusal_rate": rate(self.refused_unanswerable, self.unanswerable),
            "wrong_refusal_rate": rate(self.refused_answerable, self.answerable),
            "unsupported_rate": rate(self.unsupported, self.sentences),
            "first_token_ms_p50": round(statistics.median(ttft), 1) if ttft else None,
            "first_token_ms_mean": round(statistics.fmean(ttft), 1) if ttft else None,
            "errors": self.errors,
            "wrong_lines": self.wrong,
        }


def answer_keys(q: Question) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in getattr(q, "answers", None) or []]


def evaluate_answers(
    rag: Rag,
    questions: Sequence[Question],
    modes: Sequence[str],
    k: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[AnswerScore]:
    scores = [AnswerScore(m) for m in modes]
    total = len(questions) * len(modes)
    done = 0
    for q in questions:
        keys = answer_keys(q)
        unanswerable = bool(getattr(q, "unanswerable", False))
        for score in scores:
            done += 1
            try:
                answer = rag.ask(q.question, k, answer=score.mode)
            except RagError:
                score.errors += 1
                continue
            finally:
                if progress:
                    progress(done, total)
            score.first_token_ms.append(answer.timings["first_token_ms"])
            if unanswerable:
                score.unanswerable += 1
                score.refused_unanswerable += answer.refused
                continue
            score.answerable += 1
            score.refused_answerable += answer.refused
            if keys:
                score.keyed += 1
                ok = not answer.refused and any(p.search(answer.text) for p in keys)
                score.right += ok
                if not ok:
                    score.wrong.append(q.line)
            if answer.refused:
                continue
            for c in answer.citations:
                score.cited += 1
                hit = answer.sources[c["n"] - 1]
                score.cited_expected += any(e.matches(hit) for e in q.expected)
            checked = [c for c in answer.claims if c.checked]
            score.sentences += len(checked)
            score.unsupported += sum(1 for c in checked if not c.supported)
    return scores
