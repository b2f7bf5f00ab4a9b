"""How should hybrid search fuse dense and keyword results? Measure, on the eval sets.

For every question of every set, the dense and keyword candidate lists (top 100,
with scores) are fetched once from a real index; then each fusion method is
scored offline on exactly those lists, so all methods are compared side by side
in one run. Prints hit@5 and nDCG@10 per set for dense, keyword and each method,
and marks methods that reach the better input on both metrics on every set
(the issue's target, with one configuration for all sets).

    python benchmarks/fusion_tuning.py --index-dir DIR \\
        gnuplot-doc=data/eval/gnuplot-doc.jsonl sqlite3-doc=data/eval/sqlite3-doc.jsonl

Each ``COLLECTION=QA.jsonl`` names a collection in DIR holding that set's corpus
(scripts/run_eval.sh builds them). ``--cache FILE`` keeps the candidate lists.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag import Rag, Settings  # noqa: E402
from rag.evaluate import Question, load_questions, ranks  # noqa: E402
from rag.retrieval import Fusion, fuse  # noqa: E402
from rag.store import Hit  # noqa: E402

DEPTH = 100
Lists = list[tuple[Question, list[Hit], list[Hit]]]


def fetch(index_dir: Path, collection: str, qa: Path) -> Lists:
    out: Lists = []
    with Rag(Settings(index_dir=index_dir, collection=collection)) as r:
        for q in load_questions(qa):
            vec = r.embedder.embed_query(q.question)
            dense = r.search(q.question, DEPTH, mode="dense", embedding=vec)
            keyword = r.search(q.question, DEPTH, mode="keyword")
            out.append((q, dense, keyword))
    return out


def to_json(lists: Lists) -> list[dict[str, object]]:
    def hits(hs: list[Hit]) -> list[list[object]]:
        return [[h.id, h.score, h.source, h.page] for h in hs]

    return [{"line": q.line, "dense": hits(d), "keyword": hits(k)} for q, d, k in lists]


def from_json(data: list[dict[str, object]], questions: list[Question]) -> Lists:
    by_line = {q.line: q for q in questions}

    def hits(rows: object) -> list[Hit]:
        return [Hit(str(i), float(s), str(src), p, "") for i, s, src, p in rows]  # type: ignore[attr-defined,misc]

    return [(by_line[int(d["line"])], hits(d["dense"]), hits(d["keyword"])) for d in data]  # type: ignore[call-overload]


# -- fusion methods ------------------------------------------------------------------------------
Method = Callable[[str, list[Hit], list[Hit]], list[Hit]]


def rrf(c: int = 60, depth: int = DEPTH, w: float = 0.5) -> Method:
    def run(q: str, dense: list[Hit], keyword: list[Hit]) -> list[Hit]:
        score: dict[str, float] = {}
        by_id = {h.id: h for h in keyword[:depth]} | {h.id: h for h in dense[:depth]}
        for i, h in enumerate(dense[:depth]):
            score[h.id] = score.get(h.id, 0) + 2 * w / (c + i + 1)
        for i, h in enumerate(keyword[:depth]):
            score[h.id] = score.get(h.id, 0) + 2 * (1 - w) / (c + i + 1)
        return [replace(by_id[i], score=s) for i, s in sorted(score.items(), key=lambda x: -x[1])[:10]]

    return run


def ours(fusion: Fusion) -> Method:
    def run(q: str, dense: list[Hit], keyword: list[Hit]) -> list[Hit]:
        return fuse(dense[: fusion.depth], keyword[: fusion.depth], 10, fusion)

    return run


def zscore(w: float, depth: int) -> Method:
    def norm(hs: list[Hit]) -> dict[str, float]:
        if not hs:
            return {}
        xs = [h.score for h in hs]
        mu = sum(xs) / len(xs)
        sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / len(xs)) or 1.0
        return {h.id: (h.score - mu) / sd for h in hs}

    def run(q: str, dense: list[Hit], keyword: list[Hit]) -> list[Hit]:
        d, k = norm(dense[:depth]), norm(keyword[:depth])
        lo_d, lo_k = min(d.values(), default=0), min(k.values(), default=0)
        by_id = {h.id: h for h in keyword[:depth]} | {h.id: h for h in dense[:depth]}
        s = {i: w * d.get(i, lo_d) + (1 - w) * k.get(i, lo_k) for i in by_id}
        return [replace(by_id[i], score=v) for i, v in sorted(s.items(), key=lambda x: -x[1])[:10]]

    return run


def score(lists: Lists, method: Method) -> tuple[float, float]:
    hit5 = ndcg = 0.0
    for q, dense, keyword in lists:
        first, g = ranks(method(q.question, dense, keyword), q.expected)
        hit5 += first is not None and first <= 5
        ndcg += g
    return hit5 / len(lists), ndcg / len(lists)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index-dir", type=Path, required=True)
    ap.add_argument("--cache", type=Path, help="JSON file to keep (and reuse) the candidate lists in.")
    ap.add_argument("sets", nargs="+", metavar="COLLECTION=QA.jsonl")
    args = ap.parse_args(argv)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    data: dict[str, Lists] = {}
    for spec in args.sets:
        name, qa = spec.split("=", 1)
        questions = load_questions(Path(qa))
        if name in cache:
            data[name] = from_json(cache[name], questions)
        else:
            print(f"fetching candidates for {name} ...", file=sys.stderr)
            data[name] = fetch(args.index_dir, name, Path(qa))
            cache[name] = to_json(data[name])
            if args.cache:
                args.cache.write_text(json.dumps(cache))

    methods: dict[str, Method] = {
        "dense": lambda q, d, k: d[:10],
        "keyword": lambda q, d, k: k[:10],
        "rrf c=60 (plain)": rrf(),
    }
    for depth in (20, 50, 100):
        for w in (0.5, 0.7):
            methods[f"rrf c=60 depth {depth} w={w}"] = rrf(60, depth, w)
    for depth in (20, 50, 100):
        for w in (0.4, 0.5, 0.6, 0.7):
            methods[f"zscore depth {depth} w={w}"] = zscore(w, depth)
    for depth in (10, 20, 30, 50, 75, 100):
        for w in (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8):
            methods[f"minmax depth {depth} w={w}"] = ours(Fusion(depth, w))
    default = Fusion()
    methods[f"DEFAULT {default}"] = ours(default)

    names = list(data)
    header = f"{'method':<52}" + "".join(f"{n[:14] + ' hit@5':>22}{'nDCG@10':>9}" for n in names) + f"{'margin':>8}"
    print(header)
    base = {n: (score(data[n], methods["dense"]), score(data[n], methods["keyword"])) for n in names}
    margins: dict[str, float] = {}
    for label, method in methods.items():
        row = [score(data[n], method) for n in names]
        # margin: the worst, over sets and both metrics, of (method - the better input)
        margin = min(
            min(h5 - max(base[n][0][0], base[n][1][0]), nd - max(base[n][0][1], base[n][1][1]))
            for n, (h5, nd) in zip(names, row, strict=True)
        )
        margins[label] = margin
        mark = " *" if margin >= -1e-9 and label not in ("dense", "keyword") else ""
        print(f"{label:<52}" + "".join(f"{h5:22.3f}{nd:9.3f}" for h5, nd in row) + f"{margin:8.3f}" + mark)
    print("* = at least the better of dense and keyword on hit@5 and nDCG@10 on every set (margin >= 0)")
    best = sorted((m for m in margins if m not in ("dense", "keyword")), key=lambda m: -margins[m])[:8]
    print("largest margins: " + "; ".join(f"{m} ({margins[m]:+.3f})" for m in best))


if __name__ == "__main__":
    main()
