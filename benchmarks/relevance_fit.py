"""Fit and check calibrated relevance (rag/relevance.py) on the eval sets; choose the refusal threshold.

For every line of every set (answerable and unanswerable), the dense and keyword top 100 are
fetched once from a real index, with each candidate's raw signals (cosine, BM25, matched-term idf)
and its label (from an expected source and page; every candidate of an unanswerable line is
irrelevant). Offline, on exactly those lists:

1. fit the two logistic passage models (``FULL`` features with a query vector, ``KEYWORD`` without)
   on all sets, and the calibrations: the general ones on the calibration sets' questions (all
   but ``--no-calibrate``), the glossed ones on every set's questions looked up in English
   (``Matches.glossed``: Chinese questions on documents not in Chinese); print them as the
   constants to paste into rag/relevance.py (``--keep``: fit only the glossed ones);
2. compare the hybrid ranking by relevance with the previous min-max fusion (hit@5, nDCG@10);
3. sweep the refusal threshold (``ok?``: * where a set meets both targets, >= 90% refused
   and <= 5% wrongly refused; the last column pools the calibration sets): per set, the share of
   unanswerable lines whose best candidate is
   below it (refused) and of answerable lines (wrongly refused), for the fitted models and for
   leave-one-set-out fits (each set scored by a model that never saw it).

    .venv/bin/python benchmarks/relevance_fit.py --index-root /work/evalidx --cache /work/evalidx/cands.json

``--index-root`` holds one index directory per set (collection ``rag``), named like the set:
sqlite3-doc, gnuplot-doc, debian-edu-doc-zh, linuxcnc-doc-zh, linuxcnc-doc-en, demo, gnuplot-doc-zh
(``rag --index-dir ROOT/NAME ingest CORPUS``; sets on the same corpus can share an index by a
symlink). ``--qa NAME=FILE`` reads a set's questions from FILE (a subset matching a partial corpus).
``--current`` scores with the constants in rag/relevance.py instead of fitting.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag import Rag, Settings  # noqa: E402
from rag.bm25 import Matches  # noqa: E402
from rag.evaluate import Expected, load_questions, ranks  # noqa: E402
from rag.relevance import (  # noqa: E402
    CALIBRATED_FULL,
    CALIBRATED_GLOSSED,
    CALIBRATED_KEYWORD,
    CALIBRATION_FULL,
    CALIBRATION_GLOSSED_FULL,
    CALIBRATION_GLOSSED_KEYWORD,
    CALIBRATION_KEYWORD,
    FULL,
    KEYWORD,
    MODEL_FULL,
    MODEL_GLOSSED,
    MODEL_KEYWORD,
    Candidate,
    Model,
    calibrated,
    calibration_inputs,
    features,
)
from rag.retrieval import Fusion, fuse  # noqa: E402
from rag.store import Hit  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SETS = (
    "sqlite3-doc",
    "gnuplot-doc",
    "debian-edu-doc-zh",
    "linuxcnc-doc-zh",
    "linuxcnc-doc-en",
    "demo",
    "gnuplot-doc-zh",
)
DEPTH = 100
Line = dict[str, Any]


def fetch(index_dir: Path, qa: Path) -> list[Line]:
    out: list[Line] = []
    with Rag(Settings(index_dir=index_dir)) as r:
        kw = r.keyword
        for q in load_questions(qa):
            vec = r.embedder.embed_query(q.question)
            dense = r.store.query(vec, DEPTH, documents=False)
            keyword = kw.search(q.question, DEPTH, texts=False)
            ids = list(dict.fromkeys([h.id for h in dense] + [h.id for h in keyword]))
            m = kw.matches(q.question, ids)
            info = kw.fetch(ids)
            cos = {h.id: h.score for h in dense}
            bm = {h.id: h.score for h in keyword}
            cands = []
            for cid in ids:
                h = info.get(cid)
                b, mass, rare = m.by_id.get(cid, (0.0, 0.0, 0.0))
                cands.append(
                    [cid, h.source if h else "", h.page if h else None, cos.get(cid), bm.get(cid), b, mass, rare]
                )
            out.append(
                {
                    "line": q.line,
                    "unanswerable": q.unanswerable,
                    "expected": [[e.source, e.page] for e in q.expected],
                    "matches": [m.total_idf, m.absent_idf, m.max_idf, m.absent_words, m.glossed],
                    "cands": cands,
                }
            )
    return out


def add_query_signals(index_dir: Path, lines: list[Line], qa_specs: Sequence[str], name: str) -> None:
    """Fill in the query-level signals of a cache from before they were kept."""
    files = dict(spec.split("=", 1) for spec in qa_specs)
    questions = {
        q.line: q.question for q in load_questions(Path(files.get(name) or REPO / "data/eval" / f"{name}.jsonl"))
    }
    with Rag(Settings(index_dir=index_dir)) as r:
        for line in lines:
            m = r.keyword.matches(questions[line["line"]], [])
            line["matches"] = line["matches"][:3] + [m.absent_words, m.glossed]


# -- per line: pools, features, labels ----------------------------------------------------------
def pool(line: Line, mode: str) -> tuple[list[Candidate], Matches, np.ndarray]:
    """The candidates ``mode`` ranks, their signals and labels (1 = from an expected location)."""
    expected = [Expected(s, p) for s, p in line["expected"]]
    cands, labels = [], []
    for cid, source, page, cos, bm_side, bm, mass, rare in line["cands"]:
        if (mode == "dense" and cos is None) or (mode == "keyword" and bm_side is None):
            continue
        cands.append(Candidate(cid, cos if mode != "keyword" else None, bm, mass, rare, bm_side))
        labels.append(any(e.matches(Hit(cid, 0.0, source, page, "")) for e in expected))
    total, absent, max_idf, absent_words, glossed = line["matches"]
    return cands, Matches(total, absent, max_idf, {}, absent_words, glossed), np.array(labels, dtype=float)


def design(lines: Sequence[Line], mode: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for line in lines:
        cands, m, y = pool(line, mode)
        if cands:
            xs.append(features(cands, m, mode != "keyword"))
            ys.append(y)
    return np.vstack(xs), np.concatenate(ys)


def fit(
    x: np.ndarray,
    y: np.ndarray,
    names: tuple[str, ...],
    l2: float = 1e-2,
    steps: int = 100,
    offset: np.ndarray | None = None,
) -> Model:
    """L2-regularised logistic regression by Newton's method, on standardised features (the penalty
    is ``l2`` per row and the same for every feature whatever its scale; next to none on the intercept),
    returned on the original scale. ``offset``: a fixed term added to every row's logit."""
    off = np.zeros(len(x)) if offset is None else offset
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    a = np.column_stack([(x - mu) / sd, np.ones(len(x))])
    w = np.zeros(a.shape[1])
    reg = np.full(a.shape[1], l2 * len(x))
    reg[-1] = 1e-6 * len(x)  # (all but none: a separable set must not make the Hessian singular)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w + off, -30, 30)))
        grad = a.T @ (p - y) + reg * w
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    coef = w[:-1] / sd
    intercept = w[-1] - float(coef @ mu)
    return Model(names, tuple(round(float(v), 4) for v in coef), round(float(intercept), 4))


def loglik(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(model.predict(x), 1e-12, 1 - 1e-12)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_calibration(x: np.ndarray, y: np.ndarray, names: tuple[str, ...]) -> Model:
    """The calibration: the logit's coefficient is held positive (a grid; the best likelihood wins)
    so that it never reorders a query's candidates; the query-level terms are fitted around it."""
    best: tuple[float, Model] | None = None
    for b in (0.1, 0.25, 0.5, 1.0, 2.0):
        rest = fit(x[:, 1:], y, names[1:], offset=b * x[:, 0])
        model = Model(names, (b, *rest.coef), rest.intercept)
        ll = loglik(model, x, y)
        if best is None or ll > best[0]:
            best = (ll, model)
    assert best is not None
    return best[1]


def calibration_design(
    lines: Sequence[Line], mode: str, passage: Model, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One row per line: the calibration features of its best candidate by the passage model
    (``calibrated`` with an identity calibration returns them... so build them the same way)."""
    dense = mode != "keyword"
    rows, ys = [], []
    for line in lines:
        cands, m, _ = pool(line, mode)
        if not cands:
            continue
        x = features(cands, m, dense)
        p = passage.predict(x)
        i = int(np.argmax(p))
        q = calibration_inputs(p, x, dense, m)
        rows.append([float(q[f][i]) for f in names])
        ys.append(0.0 if line["unanswerable"] else 1.0)
    return np.array(rows), np.array(ys)


# The weight of ``fused`` in MODEL_FULL, set rather than fitted: a pointwise fit gives the rank
# feature too little weight for the top of the ranking (hybrid hit@5 and nDCG@10 fell on sqlite3-doc
# and gnuplot-doc); with the other coefficients fitted at weight 0, weights 0/2/4/8/12/16/24 were
# tried: 16 keeps every set's hybrid hit@5 and nDCG@10 within 0.002 of the previous fusion or above.
FUSED_WEIGHT = 16.0


def fit_full(lines: Sequence[Line]) -> Model:
    x, y = design(lines, "hybrid")
    i = FULL.index("fused")
    rest = [j for j in range(len(FULL)) if j != i]
    m = fit(x[:, rest], y, tuple(FULL[j] for j in rest))
    coef = list(m.coef)
    coef.insert(i, FUSED_WEIGHT)
    return Model(FULL, tuple(coef), m.intercept)


def fit_on(lines: Sequence[Line], calibrate_on: Sequence[Line], keep: bool = False) -> dict[str, Model]:
    """Passage models fitted on ``lines`` (the glossed one on its questions looked up in English,
    ``Matches.glossed``); the calibrations of questions looked up in English on those of ``lines``,
    the others' on the rest of ``calibrate_on``. ``keep``: rag/relevance.py's models for questions
    not looked up in English."""
    full = MODEL_FULL if keep else fit_full(lines)
    keyword = MODEL_KEYWORD if keep else fit(*design(lines, "keyword"), KEYWORD)
    own = [ln for ln in calibrate_on if not ln["matches"][4]]
    glossed = [ln for ln in lines if ln["matches"][4]]
    # Its own ranking, fused weight fitted too: held out, hit@5 0.53 -> 0.69 on linuxcnc-doc-zh and
    # 0.68 -> 0.74 on gnuplot-doc-zh (a set weight, 16 as for MODEL_FULL, gained little).
    out = {"full": full, "keyword": keyword, "glossed": fit(*design(glossed, "hybrid"), FULL)}
    for key, mode, passage, names in (
        ("cal_full", "hybrid", full, CALIBRATED_FULL),
        ("cal_keyword", "keyword", keyword, CALIBRATED_KEYWORD),
        ("glossed_full", "hybrid", out["glossed"], CALIBRATED_GLOSSED),
        ("glossed_keyword", "keyword", keyword, CALIBRATED_GLOSSED),
    ):
        if keep and key in ("cal_full", "cal_keyword"):
            out[key] = CURRENT[key]
            continue
        out[key] = fit_calibration(
            *calibration_design(glossed if key.startswith("glossed") else own, mode, passage, names), names
        )
    return out


CURRENT = {
    "full": MODEL_FULL,
    "keyword": MODEL_KEYWORD,
    "glossed": MODEL_GLOSSED,
    "cal_full": CALIBRATION_FULL,
    "cal_keyword": CALIBRATION_KEYWORD,
    "glossed_full": CALIBRATION_GLOSSED_FULL,
    "glossed_keyword": CALIBRATION_GLOSSED_KEYWORD,
}


# -- scoring -------------------------------------------------------------------------------------
def scored(line: Line, mode: str, models: dict[str, Model]) -> list[tuple[Hit, float]]:
    """The candidates of ``mode`` in the order the search returns them, with their relevance."""
    cands, m, _ = pool(line, mode)
    if not cands:
        return []
    dense = mode != "keyword"
    x = features(cands, m, dense)
    passage = models[("glossed" if m.glossed else "full") if dense else "keyword"].predict(x)
    cal = models[("glossed_" if m.glossed else "cal_") + ("full" if dense else "keyword")]
    rel = calibrated(passage, x, dense, m, cal)
    info = {c[0]: c for c in line["cands"]}
    hits = [(Hit(c.id, 0.0, info[c.id][1], info[c.id][2], ""), float(p)) for c, p in zip(cands, rel, strict=True)]
    if mode == "hybrid":
        return sorted(hits, key=lambda hp: (-hp[1], hp[0].id))
    side = 3 if mode == "dense" else 4
    return sorted(hits, key=lambda hp: (-info[hp[0].id][side], hp[0].id))


def old_hybrid(line: Line) -> list[Hit]:
    dense = [Hit(c[0], c[3], c[1], c[2], "") for c in line["cands"] if c[3] is not None]
    keyword = [Hit(c[0], c[4], c[1], c[2], "") for c in line["cands"] if c[4] is not None]
    dense.sort(key=lambda h: -h.score)
    keyword.sort(key=lambda h: -h.score)
    return fuse(dense, keyword, 10, Fusion())


def quality(lines: Sequence[Line], rank_of: Any) -> tuple[float, float]:
    hit5 = ndcg = 0.0
    answerable = [ln for ln in lines if not ln["unanswerable"]]
    for line in answerable:
        first, g = ranks(rank_of(line), [Expected(s, p) for s, p in line["expected"]])
        hit5 += first is not None and first <= 5
        ndcg += g
    n = max(len(answerable), 1)
    return hit5 / n, ndcg / n


def best(lines: Sequence[Line], mode: str, models: dict[str, Model]) -> list[tuple[float, bool]]:
    out = []
    for line in lines:
        s = scored(line, mode, models)
        out.append((max((p for _, p in s), default=0.0), bool(line["unanswerable"])))
    return out


def rates(bests: Sequence[tuple[float, bool]], t: float) -> tuple[float, float]:
    un = [b < t for b, u in bests if u]
    ans = [b < t for b, u in bests if not u]
    return (sum(un) / max(len(un), 1), sum(ans) / max(len(ans), 1))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index-root", type=Path, required=True)
    ap.add_argument("--cache", type=Path, help="JSON file to keep (and reuse) the candidate lists in.")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--qa", nargs="*", default=[], metavar="NAME=FILE", help="a set's questions from FILE")
    ap.add_argument(
        "--no-calibrate",
        nargs="*",
        default=["linuxcnc-doc-zh", "gnuplot-doc-zh"],
        metavar="NAME",
        help="sets the general calibration is not fitted on (default: linuxcnc-doc-zh and gnuplot-doc-zh, "
        "Chinese questions on English text, which the glossed calibration is for)",
    )
    ap.add_argument("--current", action="store_true", help="score with rag/relevance.py's constants, no fit")
    ap.add_argument(
        "--keep", action="store_true", help="fit only the calibrations of questions looked up in English (glossed)"
    )
    args = ap.parse_args(argv)
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    data: dict[str, list[Line]] = {}
    for name in args.sets:
        if name not in cache:
            print(f"fetching candidates for {name} ...", file=sys.stderr)
            files = dict(spec.split("=", 1) for spec in args.qa)
            qa = Path(files.get(name) or REPO / "data" / "eval" / f"{name}.jsonl")
            cache[name] = fetch(args.index_root / name, qa)
            if args.cache:
                args.cache.write_text(json.dumps(cache))
        data[name] = cache[name]
        if any(len(ln["matches"]) < 5 for ln in data[name]):  # a cache from before the query-level signals
            add_query_signals(args.index_root / name, data[name], args.qa, name)
            if args.cache:
                args.cache.write_text(json.dumps(cache))
    every = [ln for name in args.sets for ln in data[name]]

    cal_sets = [n for n in args.sets if n not in args.no_calibrate]
    models = CURRENT if args.current else fit_on(every, [ln for n in cal_sets for ln in data[n]], args.keep)
    for key, const, names in (
        ("full", "MODEL_FULL", "FULL"),
        ("keyword", "MODEL_KEYWORD", "KEYWORD"),
        ("glossed", "MODEL_GLOSSED", "FULL"),
    ):
        print(f"{const} = Model({names}, {models[key].coef}, {models[key].intercept})")
    for key, const in (
        ("cal_full", "CALIBRATION_FULL"),
        ("cal_keyword", "CALIBRATION_KEYWORD"),
        ("glossed_full", "CALIBRATION_GLOSSED_FULL"),
        ("glossed_keyword", "CALIBRATION_GLOSSED_KEYWORD"),
    ):
        print(f"{const} = Model({models[key].features}, {models[key].coef}, {models[key].intercept})")
    held = {
        n: fit_on(
            [ln for m in args.sets if m != n for ln in data[m]],
            [ln for m in cal_sets if m != n for ln in data[m]],
            args.keep,
        )
        for n in args.sets
        if len(cal_sets) > 1
    }

    print(
        f"\n{'set':<18} {'lines':>5} {'unans':>5} | hit@5 / nDCG@10: {'old hybrid':>13} {'new hybrid':>13} "
        f"{'held-out':>13} {'dense':>13} {'keyword':>13}"
    )
    for name in args.sets:
        lines = data[name]
        row = [
            quality(lines, old_hybrid),
            quality(lines, lambda ln: [h for h, _ in scored(ln, "hybrid", models)][:10]),
            quality(lines, lambda ln, n=name: [h for h, _ in scored(ln, "hybrid", held.get(n, models))][:10]),
            quality(lines, lambda ln: [h for h, _ in scored(ln, "dense", models)][:10]),
            quality(lines, lambda ln: [h for h, _ in scored(ln, "keyword", models)][:10]),
        ]
        unans = sum(1 for ln in lines if ln["unanswerable"])
        print(f"{name:<18} {len(lines):>5} {unans:>5} |" + " " * 17 + "".join(f"{a:7.3f}/{b:.3f}" for a, b in row))

    grid = [round(t, 3) for t in np.arange(0.02, 0.96, 0.02)]
    for mode in ("hybrid", "keyword", "dense"):
        for label, per_set in (("fitted on all", None), ("held out", held or None)):
            if label == "held out" and per_set is None:
                continue
            print(f"\nrefusal, {mode}, {label}: refused unanswerable / wrongly refused answerable, per threshold")
            bests = {n: best(data[n], mode, per_set[n] if per_set else models) for n in args.sets}
            pooled = [b for n in cal_sets for b in bests[n]]
            print(f"{'t':>5} " + "".join(f"{n[:16]:>18}" for n in args.sets) + f"{'calibration sets':>18}   ok?")
            for t in grid:
                cells = [rates(bests[n], t) for n in args.sets] + [rates(pooled, t)]
                ok = "".join("*" if r >= 0.9 and w <= 0.05 else "." for r, w in cells)
                print(f"{t:5.2f} " + "".join(f"{r:9.2f}/{w:.2f}    " for r, w in cells) + "  " + ok)
    if not math.isfinite(sum(models["full"].coef)):
        raise SystemExit("the fit diverged")


if __name__ == "__main__":
    main()
