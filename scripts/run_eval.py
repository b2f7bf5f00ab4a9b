"""Install the eval corpora, ingest them, and run `rag eval` on both question sets.

    .venv/bin/python scripts/run_eval.py [--slice] [--index-dir DIR] [--json OUT.json]

1. scripts/eval_corpora.sh installs sqlite3-doc and gnuplot-doc (apt-get) and lays them out;
2. with --slice, scripts/eval_slice.py cuts a small slice of both (what CI runs: ~800 chunks);
3. `rag ingest` puts each corpus in its own collection (sqlite3-doc, gnuplot-doc) of the index
   directory (default ~/.cache/rag/eval-index, or eval-slice); reruns only redo what changed;
4. `rag eval QA.jsonl --json` scores dense, keyword and hybrid on it.

Prints one table per set and whether the default mode (hybrid) reaches the better of dense and
keyword on hit@5 and nDCG@10. Uses whatever models RAG_* configure (the embedded default if none).
The full run embeds ~26,000 chunks: about 30 minutes with the embedded model on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def corpora() -> dict[str, Path]:
    out = subprocess.run(["bash", str(HERE / "eval_corpora.sh")], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit("scripts/eval_corpora.sh could not install the corpora (see above)")
    return {k: Path(v) for k, v in (line.split("=", 1) for line in out.stdout.split())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice", action="store_true", help="a small slice of both sets (CI)")
    ap.add_argument("--index-dir", type=Path, help="where to build the indexes")
    ap.add_argument("--json", type=Path, help="also write every report to this file")
    ap.add_argument("--rag", default=str(Path(sys.executable).parent / "rag"), help="the rag command")
    a = ap.parse_args()
    index = a.index_dir or Path.home() / ".cache" / "rag" / ("eval-slice" if a.slice else "eval-index")
    found = corpora()
    if a.slice:
        sys.path.insert(0, str(HERE))
        from eval_slice import gnuplot_slice, sqlite_slice

        work = index / "corpora"
        sets = {
            "sqlite3-doc": sqlite_slice(found["sqlite3-doc"], work, 12),
            "gnuplot-doc": gnuplot_slice(found["gnuplot-doc"], work, 12),
        }
    else:
        sets = {
            name: (found[name], REPO / "data" / "eval" / f"{name}.jsonl") for name in ("sqlite3-doc", "gnuplot-doc")
        }

    reports: dict[str, Any] = {}
    ok = True
    for name, (corpus, qa) in sets.items():
        base = [a.rag, "--index-dir", str(index), "--collection", name]
        print(f"== {name}: ingesting {corpus}", file=sys.stderr, flush=True)
        ing = subprocess.run([*base, "ingest", str(corpus)])
        if ing.returncode not in (0, 3):
            sys.exit(f"rag ingest failed for {name} (exit {ing.returncode})")
        out = subprocess.run([*base, "eval", str(qa), "--json"], stdout=subprocess.PIPE, text=True)
        if out.returncode != 0:
            sys.exit(f"rag eval failed for {name} (exit {out.returncode})")
        report = reports[name] = json.loads(out.stdout)
        modes = report["modes"]
        print(f"\n{name}: {report['questions']} questions, {report['chunks']} chunks")
        print(f"{'mode':<8} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {'MRR':>6} {'nDCG@10':>8}")
        for m in modes.values():
            scores = " ".join(f"{m[x]:6.3f}" for x in ("hit@1", "hit@5", "hit@10", "mrr"))
            print(f"{m['mode']:<8} {scores} {m['ndcg@10']:8.3f}")
        for metric in ("hit@5", "ndcg@10"):
            best = max(modes["dense"][metric], modes["keyword"][metric])
            met = modes["hybrid"][metric] >= best - 1e-9
            ok &= met
            print(
                f"hybrid {metric} {modes['hybrid'][metric]:.3f} vs best input {best:.3f}: {'met' if met else 'NOT met'}"
            )
    if a.json:
        a.json.write_text(json.dumps(reports, indent=2))
    print(f"\ndefault mode >= the better input on hit@5 and nDCG@10 on every set: {'yes' if ok else 'NO'}")


if __name__ == "__main__":
    main()
