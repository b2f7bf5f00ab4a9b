"""Issue 5: the retrieval evaluation, end to end on a slice of the real corpora (CI).

scripts/run_eval.py --slice installs sqlite3-doc and gnuplot-doc (Debian packages; .ci/run
installs them first), cuts 12 questions per set with their documents and distractors, ingests
them with the embedded default model, and runs `rag eval` for every mode. The full sets and
the figures they give are in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, clean_env

pytestmark = pytest.mark.slow


def test_eval_slice_scores_every_mode_on_both_corpora(tmp_path: Path) -> None:
    probe = subprocess.run(["bash", str(REPO / "scripts" / "eval_corpora.sh")], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"the eval corpora cannot be installed here: {probe.stderr.strip()[-300:]}")
    out = tmp_path / "report.json"
    env = clean_env(RAG_INDEX_DIR=str(tmp_path / "unused"))
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_eval.py"),
            "--slice",
            "--index-dir",
            str(tmp_path / "eval"),
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reports = json.loads(out.read_text())
    assert set(reports) == {"sqlite3-doc", "gnuplot-doc"}
    for name, report in reports.items():
        assert report["questions"] == 16 and report["chunks"] > 100, name  # 12 answerable + 4 unanswerable
        modes = report["modes"]
        assert set(modes) == {"dense", "keyword", "hybrid"}
        for m in modes.values():
            assert 0 <= m["hit@1"] <= m["hit@5"] <= m["hit@10"] <= 1 and 0 <= m["ndcg@10"] <= 1
            assert (m["questions"], m["answerable"], m["unanswerable"]) == (12, 12, 4)
            assert 0 <= m["refused"] <= 1 and 0 <= m["wrongly_refused"] <= 1
        # Real retrieval on real documents: the expected page is usually found, and fusing
        # never does worse than the weaker of its two inputs.
        assert modes["hybrid"]["hit@10"] >= 0.6, (name, modes)
        for metric in ("hit@5", "ndcg@10"):
            assert modes["hybrid"][metric] >= min(modes["dense"][metric], modes["keyword"][metric]), (name, metric)
    assert "default mode >= the better input" in run.stdout
