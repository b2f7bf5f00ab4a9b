"""Issue 6: the client code our users run against Ollama today runs unchanged against our
base URL: the openai JavaScript SDK under Node, LangChain's ChatOpenAI, LlamaIndex's
OpenAILike and AutoGen's AssistantAgent (ag2), each against a real `rag serve`.

The clients live in their own environments, installed on first use from tests/clients/
(requirements.txt into tests/clients/.venv, package.json with npm): they pin openai 2.x
while we use 3.x."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, REPO, embedded_serve

pytestmark = pytest.mark.slow

CLIENTS = REPO / "tests" / "clients"
QUESTION = "How long is the warranty on the X200?"
service = embedded_serve


@pytest.fixture(scope="module")
def python_clients() -> Path:
    venv = CLIENTS / ".venv"
    py = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = (CLIENTS / "requirements.txt").read_text()
    if not marker.exists() or marker.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        pip = subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-r", str(CLIENTS / "requirements.txt")],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert pip.returncode == 0, f"installing the Python clients failed:\n{pip.stderr[-3000:]}"
        marker.write_text(wanted)
    return py


@pytest.fixture(scope="module")
def js_client() -> Path:
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "the openai JavaScript SDK test needs Node.js and npm"
    if not (CLIENTS / "node_modules" / "openai").is_dir():
        out = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund"], cwd=CLIENTS, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, f"npm install failed:\n{out.stderr[-3000:]}"
    return CLIENTS / "js_client.mjs"


def test_openai_javascript_sdk_chat_and_streaming(service: str, js_client: Path) -> None:
    env = {**os.environ, "BASE_URL": service + "/v1", "QUESTION": QUESTION}
    out = subprocess.run(["node", str(js_client)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout)
    assert got["chat"] and got["stream"] == got["chat"]  # same seed: the stream reassembles the answer
    assert got["stream_citations"] == got["chat_citations"]
    assert got["chat_citations"] and all((DATA / c["source"]).is_file() for c in got["chat_citations"])


def test_langchain_llamaindex_and_autogen(service: str, python_clients: Path) -> None:
    script = CLIENTS / "python_clients.py"
    out = subprocess.run(
        [str(python_clients), str(script), service + "/v1", QUESTION], capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for name in ("langchain_invoke", "langchain_stream", "llamaindex_complete", "llamaindex_chat", "autogen"):
        assert isinstance(got.get(name), str) and got[name].strip(), (name, got)
