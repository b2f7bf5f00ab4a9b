"""Can the embedded chat model tell an answerable question from an unanswerable one? (issue 14)

Calibrated relevance misses on-topic unanswerable questions ("What is the price of the X200
projector?" beside a passage about the X200): their passages look like an answer's by every signal
retrieval has. Telling them apart needs a model that reads. This asks the embedded chat model
(SmolLM2-135M-Instruct, the only instruction model shipped in a PyPI package) to judge each
question's best passage, and scores the logit of "yes" over "no" (one token, temperature 0,
``top_logprobs``) against the eval set's labels, beside the best hit's ``relevance``:

    .venv/bin/python benchmarks/judge_answerable.py INDEX_DIR=data/eval/SET.jsonl [...]

It prints the AUC (the chance that an answerable question outscores an unanswerable one) of
each signal, per set and pooled, and of the judge among the questions relevance lets through
(at ``RAG_MIN_RELEVANCE``), which is where it would have to help.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag import Rag, Settings  # noqa: E402
from rag.evaluate import load_questions  # noqa: E402

SYSTEM = "You judge whether a passage answers a question. Reply with one word: yes or no."
Row = tuple[bool, float, float]  # answerable, relevance, judge's logit(yes) - logit(no)


def judge(index_dir: Path, qa: Path) -> list[Row]:
    rows: list[Row] = []
    with Rag(Settings(index_dir=index_dir)) as r:
        client = openai.OpenAI(base_url=r.backend_url, api_key="unused")
        for q in load_questions(qa):
            hits = r.search(q.question, k=1)
            if not hits:
                continue
            ask = f"Passage:\n{hits[0].text[:1200]}\n\nQuestion: {q.question}\n\nDoes the passage answer the question?"
            out = client.chat.completions.create(
                model="default",
                messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask}],
                max_tokens=1,
                temperature=0,
                logprobs=True,
                top_logprobs=10,
            )
            content = out.choices[0].logprobs.content if out.choices[0].logprobs else None
            top = {t.token.strip().lower(): t.logprob for t in (content[0].top_logprobs if content else [])}
            rows.append((not q.unanswerable, hits[0].relevance or 0.0, top.get("yes", -20.0) - top.get("no", -20.0)))
    return rows


def auc(rows: Sequence[Row], signal: int) -> str:
    pos = [r[signal] for r in rows if r[0]]
    neg = [r[signal] for r in rows if not r[0]]
    if not pos or not neg:
        return "  -  "
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return f"{wins / (len(pos) * len(neg)):.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="+", metavar="INDEX_DIR=QA.jsonl", help="an index and its question set")
    ap.add_argument("--min-relevance", type=float, default=0.6)
    args = ap.parse_args(argv)
    if any("=" not in s for s in args.sets):
        ap.error("give each set as INDEX_DIR=QA.jsonl")
    pooled: list[Row] = []
    print(f"{'set':<28} {'lines':>5} {'relevance AUC':>14} {'judge AUC':>10} {'judge AUC, let through':>23}")
    for spec in args.sets:
        index_dir, qa = (Path(p) for p in spec.split("=", 1))
        rows = judge(index_dir, qa)
        pooled += rows
        through = [r for r in rows if r[1] >= args.min_relevance]
        print(f"{qa.stem:<28} {len(rows):>5} {auc(rows, 1):>14} {auc(rows, 2):>10} {auc(through, 2):>23}")
    through = [r for r in pooled if r[1] >= args.min_relevance]
    print(f"{'pooled':<28} {len(pooled):>5} {auc(pooled, 1):>14} {auc(pooled, 2):>10} {auc(through, 2):>23}")


if __name__ == "__main__":
    main()
