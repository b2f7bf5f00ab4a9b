"""The bad-file battery (issue 4): every bad file is reported by name with its
reason, the rest of the folder is ingested, and the exit status says which.

Fast tests use the deterministic embeddings server (benchmarks/instant_embeddings.py);
one slow end-to-end run uses the real embedded default. Root ignores file
permissions, so the permission-denied runs drop to uid 65534 with setpriv.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfWriter

from rag import Rag, Settings
from tests.conftest import BIN, DATA, REPO, ServerProcess, clean_env, invoke_cli, stored_metadata

DEEP = "/".join(["d"] * 120) + "/deep.md"
GOOD = ["returns-policy.md", "x200-user-guide.pdf", "z10-release-notes.txt"]
# name -> (status, reason that must be shown)
EXPECTED = {
    "encrypted.pdf": ("failed", "encrypted"),
    # pypdf recovers nothing from a PDF cut in the middle ("Stream has ended unexpectedly"): failed.
    "truncated.pdf": ("failed", "unreadable PDF"),
    "junk.txt": ("failed", "binary"),
    "big.txt": ("failed", "RAG_MAX_FILE_MB"),
    "scan.pdf": ("failed", "no text layer"),
    "a.txt": ("failed", "symlink loop"),
    "b.txt": ("failed", "symlink loop"),
    "empty.txt": ("skipped", "empty file"),
    "sub/up": ("skipped", "symlink loop: points to an enclosing folder"),
    "image.png": ("skipped", "unsupported file type"),
    "latin1.txt": ("added", ""),
    DEEP: ("added", ""),
}
FAILED = {name: why for name, (status, why) in EXPECTED.items() if status == "failed"}


def make_battery(folder: Path, unreadable: bool = False) -> None:
    """All the bad files of issue 4 beside a few good ones from data/."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in GOOD:
        shutil.copy(DATA / name, folder / name)
    pdf = (DATA / "x200-user-guide.pdf").read_bytes()
    writer = PdfWriter(clone_from=str(DATA / "x200-user-guide.pdf"))
    writer.encrypt("secret", algorithm="RC4-128")
    writer.write(folder / "encrypted.pdf")
    (folder / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    scan = FPDF()
    scan.add_page()
    scan.rect(20, 20, 120, 80, style="F")  # a drawing, no text
    scan.output(str(folder / "scan.pdf"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "junk.txt").write_bytes(random.Random(4).randbytes(8192))
    (folder / "latin1.txt").write_bytes("Le café crème du matin coûte deux euros à la brûlerie.\n".encode("latin-1"))
    with open(folder / "big.txt", "wb") as f:  # 50 MB, one line
        for _ in range(50):
            f.write(b"a" * (1 << 20))
    os.symlink("b.txt", folder / "a.txt")
    os.symlink("a.txt", folder / "b.txt")
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "up")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / DEEP).parent.mkdir(parents=True)
    (folder / DEEP).write_text("# Deep\n\nThe deepest note in the tree mentions a lighthouse.\n")
    if unreadable:
        (folder / "secret.txt").write_text("nobody may read this\n")
        (folder / "secret.txt").chmod(0)


@pytest.fixture
def server(instant_embeddings: ServerProcess) -> ServerProcess:
    return instant_embeddings


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp folder any user can write (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="rag-badfiles-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unprivileged(env: dict[str, str]) -> list[str]:
    """The argv prefix that runs `rag` as a user file permissions apply to."""
    if os.geteuid() != 0:
        return [str(BIN / "rag")]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: cannot drop privileges to test 'permission denied'")
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    # The venv's base interpreter may sit where uid 65534 cannot exec it again (here: under /root, 0700),
    # and the PDF worker re-executes sys.executable; try it, then a system Python of the same version
    # with the venv's packages on PYTHONPATH.
    probe = "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-c', 'import rag.cli, pypdf']))"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for py in dict.fromkeys([sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]):
        if (
            os.path.exists(py)
            and subprocess.run([*drop, py, "-c", probe], env=env, cwd=REPO, capture_output=True).returncode == 0
        ):
            return [*drop, py, "-c", "import sys; from rag.cli import main; sys.argv[0] = 'rag'; main()"]
    pytest.skip("no Python interpreter with this venv's packages is executable by uid 65534")


def unprivileged_env(base: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]])
    return clean_env(HOME=str(base), PYTHONPATH=path, RAG_INDEX_DIR=str(base / "index"), **extra)


def run_as(prefix: list[str], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *args], env=env, capture_output=True, text=True, timeout=600, cwd=REPO)


def instant(tmp_path: Path, server: ServerProcess) -> Settings:
    return Settings(index_dir=tmp_path / "index", embed_base_url=server.url + "/v1", embed_model="instant")


def documents(r: Rag, source: str) -> list[str]:
    return [c.text for c in r.store.get_chunks(list(stored_metadata(r, {"source": source})))]


def test_help_documents_the_exit_status() -> None:
    proc = invoke_cli("ingest", "--help", env=clean_env())
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "Exit status: 0 every file ingested" in text
    assert "3 some files failed" in text and "1 the run could not proceed" in text


def test_battery_each_file_reported_and_the_rest_ingested(tmp_path: Path, server: ServerProcess) -> None:
    folder = tmp_path / "docs"
    make_battery(folder)
    with Rag(instant(tmp_path, server)) as r:
        report = r.ingest([folder])
        by = {f.source: f for f in report.files}
        for name, (status, why) in EXPECTED.items():
            assert by[name].status == status, (name, by[name])
            assert why in (by[name].error or ""), (name, by[name].error)
        assert "too large" in (by["big.txt"].error or "")
        assert "Latin-1" in (by["latin1.txt"].warning or "")
        assert any("café crème" in d for d in documents(r, "latin1.txt"))
        assert documents(r, DEEP) and "lighthouse" in documents(r, DEEP)[0]
        assert all(by[name].status == "added" for name in GOOD)
        assert len(report.files) == len(EXPECTED) + len(GOOD)
        # Failures are kept in the manifest, with no chunks; skipped files are not failures.
        failures = {f["source"]: f["error"] for f in r.status()["failures"]}
        assert set(failures) == set(FAILED)
        assert all(why in failures[name] for name, why in FAILED.items())
        stored = {m["source"] for m in stored_metadata(r, {}).values()}
        assert stored == {*GOOD, "latin1.txt", DEEP}


def test_file_deleted_while_the_run_is_in_progress(tmp_path: Path, server: ServerProcess) -> None:
    folder = tmp_path / "docs"
    shutil.copytree(DATA, folder, ignore=shutil.ignore_patterns("eval"))  # eval sets: not documents
    victim = folder / "zz-last.md"
    victim.write_text("# Doomed\n\nThis file disappears mid-run.\n")
    seen: list[str] = []
    deleted = threading.Lock()  # held for good by the one call that deletes the victim
    with Rag(instant(tmp_path, server)) as r:
        ingestor = r._ingestor()

        def before_read(cand: object) -> None:
            # Called by both parse threads at once: only the first call deletes. (exists() then
            # unlink() raced: both saw the file, the second unlink raised FileNotFoundError.)
            seen.append(cand.source)  # type: ignore[attr-defined]
            if deleted.acquire(blocking=False):
                victim.unlink()

        ingestor.before_read = before_read
        report = ingestor.ingest([folder])
        by = {f.source: f for f in report.files}
        assert seen[0] != "zz-last.md"  # deleted by the read of an earlier file
        assert by["zz-last.md"].error == "deleted while the run was in progress"
        assert by["zz-last.md"].status != "added" and not report.failed
        assert {s for s, f in by.items() if f.status == "added"} == set(by) - {"zz-last.md"}
        stored = {m["source"] for m in stored_metadata(r, {}).values()}
        assert "zz-last.md" not in stored and len(stored) == 6
        assert r.manifest.get(str(victim)) is None


def test_unreadable_file_is_permission_denied(server: ServerProcess, shared_tmp: Path) -> None:
    folder = shared_tmp / "docs"
    folder.mkdir()
    for name in GOOD:
        shutil.copy(DATA / name, folder / name)
    (folder / "secret.txt").write_text("nobody may read this\n")
    (folder / "secret.txt").chmod(0)
    env = unprivileged_env(shared_tmp, RAG_EMBED_BASE_URL=server.url + "/v1", RAG_EMBED_MODEL="instant")
    proc = run_as(unprivileged(env), "ingest", str(folder), env=env)
    assert proc.returncode == 3, proc.stderr
    assert "  secret.txt: permission denied" in proc.stderr
    assert "3 added" in proc.stderr and "1 failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_file_whose_permission_is_fixed_is_retried(server: ServerProcess, shared_tmp: Path) -> None:
    folder = shared_tmp / "docs"
    folder.mkdir()
    secret = folder / "secret.txt"
    secret.write_text("the vault code is 4711\n")
    secret.chmod(0)
    env = unprivileged_env(shared_tmp, RAG_EMBED_BASE_URL=server.url + "/v1", RAG_EMBED_MODEL="instant")
    rag = unprivileged(env)
    assert "secret.txt: permission denied" in run_as(rag, "ingest", str(folder), env=env).stderr
    secret.chmod(0o644)  # what the message asks the user to do; size and mtime stay the same
    proc = run_as(rag, "ingest", str(folder), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "1 added" in proc.stderr


@pytest.mark.slow
def test_whole_battery_cli_with_the_embedded_default(shared_tmp: Path) -> None:
    """Every bad file in one folder, the real bundled embedder, the CLI as an unprivileged user."""
    folder = shared_tmp / "docs"
    make_battery(folder, unreadable=True)
    env = unprivileged_env(shared_tmp)
    rag = unprivileged(env)
    failed = FAILED | {"secret.txt": "permission denied"}

    first = run_as(rag, "ingest", str(folder), env=env)
    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    listed = first.stderr.split("file(s) failed:")[1]
    for name, why in failed.items():
        assert f"  {name}: " in listed and why in listed.split(f"  {name}: ")[1].splitlines()[0], name
    for name, (status, why) in EXPECTED.items():
        if status == "skipped" and name != "image.png":
            assert f"  skipped   {name} ({why}" in first.stderr
    assert "skipped 1 files of unsupported types (.png 1)" in first.stderr
    assert "latin1.txt (1 chunks)  warning: not UTF-8; read as Latin-1" in first.stderr
    assert f"5 added, 0 updated, 0 unchanged, 0 removed, {len(failed)} failed, 3 skipped" in first.stderr

    status = run_as(rag, "status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert {f["source"]: f["error"] for f in info["failures"]}.keys() == failed.keys()
    assert all(why in f["error"] for f in info["failures"] for name, why in failed.items() if f["source"] == name)
    assert {s["source"] for s in info["sources"]} == {*GOOD, "latin1.txt", DEEP}
    text = run_as(rag, "status", env=env).stdout
    assert f"{len(failed)} file(s) failed:" in text and "  junk.txt: binary" in text

    # The index holds the Latin-1 text, searchable by its accented words.
    with Rag(Settings(index_dir=shared_tmp / "index")) as r:
        hits = r.search("café crème", k=3)
        assert any(h.source == "latin1.txt" and "café" in h.text for h in hits)

    # A rerun with nothing changed reports the same failures from the manifest, without re-reading:
    # junk.txt becomes good text of the same size and mtime, and still shows its cached failure.
    junk = folder / "junk.txt"
    st = junk.stat()
    junk.write_bytes(b"now plain text. " * (st.st_size // 16))
    os.utime(junk, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = run_as(rag, "ingest", str(folder), env=env)
    assert again.returncode == 3, again.stderr
    assert "0 added, 0 updated, 5 unchanged" in again.stderr
    assert "  junk.txt: binary" in again.stderr
    listed = again.stderr.split("file(s) failed:")[1]
    assert all(f"  {name}: " in listed for name in failed)
