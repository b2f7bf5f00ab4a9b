"""The import structure (issue 13): rag's core modules load without the web stack, the model SDK
or Chroma, `rag --help` loads none of them, and nothing new in rag imports ingest."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HEAVY = ("fastapi", "uvicorn", "starlette", "openai", "chromadb", "httpx")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_core_modules_import_without_the_web_stack_the_sdk_or_chroma() -> None:
    core = "import rag.settings, rag.errors, rag.store, rag.keyword, rag.bm25, rag.retrieval, rag.prompt, rag.citations"
    assert not loaded_after(core) & set(HEAVY)


def test_cli_help_loads_none_of_them() -> None:
    code = "\n".join(
        [
            "import sys",
            "sys.argv = ['rag', '--help']",
            "from rag.cli import cli",
            "try:",
            "    cli()",
            "except SystemExit:",
            "    pass",
        ]
    )
    assert not loaded_after(code) & set(HEAVY)


def test_only_the_composition_point_imports_ingest() -> None:
    """ingest depends on rag's core; in rag only the composition point (rag/indexing.py) imports
    ingest, and the facade and the CLI load that module only when an index is written or inspected,
    so importing rag, or running `rag ask`, never imports ingest."""
    importers: dict[str, bool] = {}
    for path in sorted((REPO / "rag").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "ingest" or n.startswith("ingest.") for n in names):
                top_level = node in tree.body
                importers[Path(path).name] = importers.get(Path(path).name, False) or top_level
    assert set(importers) == {"indexing.py"}, importers
    assert "ingest" not in loaded_after("import rag.engine, rag.cli, rag.cli_index, rag.cli_query")
