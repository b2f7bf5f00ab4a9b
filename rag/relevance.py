"""Calibrated relevance: the probability that a retrieved passage is relevant to the query.

Search scores do not mean the same from one query to the next (a cosine of 0.85 is strong for one
question and weak for another; BM25 is unbounded; the old hybrid score was min-max normalised per
query, so its best hit always scored 1). ``relevance`` does: a logistic model over features that
are comparable across queries and corpora, fitted on labelled candidates built from the eval sets
(a candidate is relevant when it comes from an expected source and page; every candidate of an
unanswerable question is irrelevant). It is what hybrid search ranks by and what a refusal
threshold (``Settings.min_relevance``) compares.

Features of a candidate (``FULL``; ``KEYWORD`` when there is no query vector, keyword mode):

- ``cos``: cosine similarity of query and passage embeddings. A keyword-only candidate (not in
  the dense top ``depth``) gets the lowest cosine of the dense candidates: its own is below it.
- ``cos_gap``: the query's best cosine minus this one (how far behind the best candidate).
- ``cov``: query-term coverage, the idf-weighted share of the query's distinct terms (as the
  keyword index analyses them: stems, identifiers, Chinese bigrams) that the passage holds.
- ``bm25n``: BM25 over its largest possible value, ``(k1 + 1) * sum(idf)`` of the query's terms.
- ``rare``: the largest idf among the query terms the passage holds, over ``ln(2N + 1)`` (the
  idf of a term in no chunk): near 1 for an exact match of a rare term (an identifier, an error
  code, a part number).
- ``absent``: the idf-weighted share of the query's terms that no chunk holds (same for every
  candidate of the query: off-topic words lower every candidate's chance).
- ``cov_gap``, ``bm25n_gap``: the query's best ``cov`` / ``bm25n`` minus this one's.
- ``fused``: the issue-5 fusion score, ``0.6 * minmax(cos) + 0.4 * minmax(BM25)``, each side
  normalised over the candidates it returned, 0 for the others (keyword mode: ``minmax(BM25)``).
  A rank feature, relative to the query by design: it keeps what the per-query fusion got right
  (it was tuned on the eval sets); the absolute features above and the calibration stage carry
  what it cannot (how good the best one is, a rare exact match). In ``MODEL_FULL`` its weight is
  not fitted but set (``FUSED_WEIGHT`` in benchmarks/relevance_fit.py, 16: a pointwise fit gives
  it too little weight for the top of the ranking, and hybrid hit@5 / nDCG@10 fell on two sets;
  16 keeps every set within +-0.002 of the previous fusion or better) and the rest is fitted
  around it.

Two stages. The *passage model* (``MODEL_FULL`` / ``MODEL_KEYWORD``) is fitted on every candidate
(label: from an expected location): it ranks. The *calibration* (``CALIBRATION_*``) maps its
logit, plus query-level signals (``absent``, the query's best ``cov`` and best ``cos``, and
``absent_words``: how many of its word terms, up to 2, no chunk holds), to the
probability that the question is answered by the passage, fitted on each question's best candidate
(label: the question is answerable, i.e. not an unanswerable line). The query-level terms shift
every candidate of a query alike and the logit's coefficient is positive, so the calibration never
reorders a query's candidates; it makes the best hit's ``relevance`` mean the same across queries,
which is what a refusal threshold needs.

A Chinese question on documents that do not say it in Chinese (``Matches.glossed``: its words were
looked up in English, ``rag.glossary``) has its own passage model (``MODEL_GLOSSED``: the same
features, ``fused`` weight fitted too) and calibration (``CALIBRATION_GLOSSED_*``: the logit and
``absent``, the share of its terms, dictionary senses included, that no chunk holds), fitted on
such questions alone (linuxcnc-doc-zh, gnuplot-doc-zh and the few of the other sets). Its cosines
run lower and its coverage counts dictionary senses: the general models ranked its right page
lower and refused 80% of the answerable ones.

The coefficients below were fitted by
``.venv/bin/python benchmarks/relevance_fit.py --index-root /work/evalidx --cache /work/evalidx/cands.json
--sets sqlite3-doc gnuplot-doc debian-edu-doc-zh linuxcnc-doc-zh demo --qa sqlite3-doc=SUBSET.jsonl``
and the glossed calibrations, keeping those, by ``... --sets (the same) linuxcnc-doc-en gnuplot-doc-zh
--no-calibrate linuxcnc-doc-zh gnuplot-doc-zh --keep`` (L2-regularised logistic regression, numpy
Newton steps; the figures are in docs/benchmarks.md, sections "Calibrated relevance and refusal
thresholds" and "Chinese questions on English documents: their own calibration").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.bm25 import K1, Matches

FULL = ("cos", "cos_gap", "cov", "bm25n", "rare", "absent", "cov_gap", "bm25n_gap", "fused")
KEYWORD = ("cov", "bm25n", "rare", "absent", "cov_gap", "bm25n_gap", "fused")
CALIBRATED_FULL = ("logit", "absent", "best_cov", "best_cos", "absent_words")
CALIBRATED_KEYWORD = ("logit", "absent", "best_cov", "absent_words")
CALIBRATED_GLOSSED = ("logit", "absent")


@dataclass(frozen=True)
class Model:
    """A logistic model: p = sigmoid(intercept + sum(coef * feature))."""

    features: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0)
        return 1.0 / (1.0 + np.exp(-np.clip(x @ np.asarray(self.coef) + self.intercept, -50, 50)))


# Fitted by benchmarks/relevance_fit.py (see the module docstring); refit when the features change.
MODEL_FULL = Model(FULL, (18.4283, -7.5912, 0.0319, 4.889, 2.3021, -0.4764, 1.4618, 0.5269, 16.0), -20.3002)
MODEL_KEYWORD = Model(KEYWORD, (-0.1349, 4.5934, 2.6675, -0.8186, 2.2036, -0.2846, 1.6773), -5.3305)
MODEL_GLOSSED = Model(FULL, (1.9264, -6.6068, 1.6278, 6.5789, 1.2213, -0.9375, 0.0826, 0.2834, 3.16), -6.6001)
CALIBRATION_FULL = Model(CALIBRATED_FULL, (0.25, -3.4342, 3.159, 18.2843, -1.2427), -17.8167)
CALIBRATION_KEYWORD = Model(CALIBRATED_KEYWORD, (0.5, -2.9026, 3.7953, -1.7245), 1.8505)
CALIBRATION_GLOSSED_FULL = Model(CALIBRATED_GLOSSED, (0.5, -6.6644), 4.1518)
CALIBRATION_GLOSSED_KEYWORD = Model(CALIBRATED_GLOSSED, (0.1, -7.4957), 3.6236)
# (query vector?, looked up in English?) -> passage model, calibration
PASSAGE_MODELS = {
    (True, False): MODEL_FULL,
    (False, False): MODEL_KEYWORD,
    (True, True): MODEL_GLOSSED,
    (False, True): MODEL_KEYWORD,
}
CALIBRATIONS = {
    (True, False): CALIBRATION_FULL,
    (False, False): CALIBRATION_KEYWORD,
    (True, True): CALIBRATION_GLOSSED_FULL,
    (False, True): CALIBRATION_GLOSSED_KEYWORD,
}


@dataclass(frozen=True)
class Candidate:
    """The raw signals of one candidate passage: cosine similarity if the dense side scored it,
    and how the query's terms meet it (BM25, idf mass of the terms it holds, their largest idf)."""

    id: str
    cos: float | None
    bm25: float = 0.0
    matched_idf: float = 0.0
    rare_idf: float = 0.0
    keyword: float | None = None  # BM25 if the keyword side returned it (a top-depth keyword hit)


def candidates(
    ids: Sequence[str], cosines: dict[str, float], matches: Matches, keyword: dict[str, float] | None = None
) -> list[Candidate]:
    """One ``Candidate`` per id, from the dense side's cosines, the keyword side's BM25 scores and
    the keyword index's matches."""
    out = []
    for cid in ids:
        bm, mass, rare = matches.by_id.get(cid, (0.0, 0.0, 0.0))
        out.append(Candidate(cid, cosines.get(cid), bm, mass, rare, (keyword or {}).get(cid)))
    return out


def features(cands: Sequence[Candidate], matches: Matches, dense: bool) -> np.ndarray:
    """The feature matrix (rows: ``cands``; columns: ``FULL`` if ``dense`` else ``KEYWORD``)."""
    n = len(cands)
    total = matches.total_idf
    cov = np.array([c.matched_idf / total if total > 0 else 0.0 for c in cands]).reshape(n)
    bm25n = np.array([c.bm25 / ((K1 + 1) * total) if total > 0 else 0.0 for c in cands]).reshape(n)
    rare = np.array([c.rare_idf / matches.max_idf for c in cands]).reshape(n)
    absent = np.full(n, matches.absent_idf / total if total > 0 else 1.0)
    cols = {
        "cov": cov,
        "bm25n": bm25n,
        "rare": rare,
        "absent": absent,
        "cov_gap": (cov.max() - cov) if n else cov,
        "bm25n_gap": (bm25n.max() - bm25n) if n else bm25n,
    }
    if dense:
        known = [c.cos for c in cands if c.cos is not None]
        floor = min(known) if known else 0.0
        cos = np.array([c.cos if c.cos is not None else floor for c in cands]).reshape(n)
        cols["cos"] = cos
        cols["cos_gap"] = (cos.max() - cos) if n else cos
    kw = _side([c.keyword for c in cands])
    cols["fused"] = kw if not dense else 0.6 * _side([c.cos for c in cands]) + 0.4 * kw
    names = FULL if dense else KEYWORD
    return np.column_stack([cols[f] for f in names]) if n else np.zeros((0, len(names)))


def calibration_inputs(passage: np.ndarray, x: np.ndarray, dense: bool, matches: Matches) -> dict[str, np.ndarray]:
    """Every calibration feature (a calibration model uses some of them), one value per candidate:
    passage-model probabilities ``passage`` of the candidates whose feature rows are ``x`` (one
    query's, whose query-level signals are in ``matches``)."""
    col = dict(zip(FULL if dense else KEYWORD, x.T, strict=True))
    p = np.clip(passage, 1e-9, 1 - 1e-9)
    n = len(x)
    q = {"logit": np.log(p / (1 - p)), "absent": col["absent"], "best_cov": np.full(n, col["cov"].max())}
    q["absent_words"] = np.full(n, float(min(matches.absent_words, 2)))
    if dense:
        q["best_cos"] = np.full(n, col["cos"].max())
    return q


def calibrated(
    passage: np.ndarray, x: np.ndarray, dense: bool, matches: Matches, calibration: Model | None = None
) -> np.ndarray:
    """The calibration stage: passage-model probabilities ``passage`` of the candidates whose
    feature rows are ``x`` (one query's, whose query-level signals are in ``matches``), to relevance."""
    if len(x) == 0:
        return np.zeros(0)
    cal = calibration or CALIBRATIONS[dense, matches.glossed]
    q = calibration_inputs(passage, x, dense, matches)
    return cal.predict(np.column_stack([q[f] for f in cal.features]))


def _side(scores: Sequence[float | None]) -> np.ndarray:
    """One side's scores min-max normalised over the candidates it returned; 0 for the others."""
    have = [x for x in scores if x is not None]
    if not have:
        return np.zeros(len(scores))
    lo, hi = min(have), max(have)
    return np.array([0.0 if x is None else ((x - lo) / (hi - lo) if hi - lo > 1e-12 else 1.0) for x in scores])


def score(cands: Sequence[Candidate], matches: Matches, dense: bool) -> list[float]:
    """Calibrated relevance of each candidate, 0..1, in the order given."""
    x = features(cands, matches, dense)
    passage = PASSAGE_MODELS[dense, matches.glossed].predict(x)
    return [float(p) for p in calibrated(passage, x, dense, matches)]
