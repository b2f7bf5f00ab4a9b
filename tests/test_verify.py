"""Issue 14 item 3: the standalone check, ``rag verify TEXT`` and ``POST /verify``, on a real Chroma
index of data/ in a temporary directory (deterministic embeddings from a real server process; the
route also with the in-memory FakeEmbedder)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATA, ServerProcess, clean_env, instant_settings, invoke_cli
from fakes import FakeEmbedder
from fastapi.testclient import TestClient

from api.app import create_app
from rag import Rag, Settings

TEXT = (
    "Hello! Error code E42 means fan failure. "
    "The X200 is covered by a limited warranty of 3 years (36 months) from the date of purchase. "
    "The restocking fee for opened items is 40% of the purchase price."
)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, instant_embeddings: ServerProcess) -> Iterator[Settings]:
    docs = tmp_path_factory.mktemp("verify") / "docs"
    shutil.copytree(DATA, docs)
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("RAG_")]:
            env.delenv(key)
        settings = instant_settings(tmp_path_factory.mktemp("verify") / "index", instant_embeddings)
    with Rag(settings) as r:
        r.ingest([docs])
    yield settings


def cli_env(settings: Settings) -> dict[str, str]:
    return clean_env(
        RAG_INDEX_DIR=str(settings.index_dir),
        RAG_EMBED_BASE_URL=str(settings.embed_base_url),
        RAG_EMBED_MODEL=str(settings.embed_model),
    )


def test_cli_marks_each_sentence(index: Settings) -> None:
    proc = invoke_cli("verify", TEXT, "-k", "5", env=cli_env(index))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("✓ Error code E42") for line in lines), proc.stdout
    assert any(line.startswith("✗ The restocking fee") for line in lines), proc.stdout
    assert "number 40 not in the sources" in proc.stdout
    assert "x200-user-guide.pdf, page 4" in proc.stdout  # the passage backing E42
    assert "Hello!" in proc.stdout and "2 of 3 checked sentences supported" in proc.stderr


def test_cli_json_from_stdin(index: Settings) -> None:
    proc = invoke_cli("verify", "-", "--json", env=cli_env(index), input=TEXT)
    assert proc.returncode == 0, proc.stderr
    claims = json.loads(proc.stdout)["claims"]
    assert [c["supported"] for c in claims] == [True, True, True, False]
    assert claims[0]["checked"] is False and claims[0]["sources"] == []
    e42 = claims[1]
    assert e42["sources"] == [1] and e42["passages"][0]["source"] == "x200-user-guide.pdf"
    assert TEXT[e42["start"] : e42["end"]] == "Error code E42 means fan failure."
    assert claims[3]["passages"] and claims[3]["reason"] == "number 40 not in the sources"


def test_cli_empty_text_is_an_error(index: Settings) -> None:
    proc = invoke_cli("verify", "  ", env=cli_env(index))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: Nothing to verify")


def test_http_verify(index: Settings, tmp_path: Path) -> None:
    with Rag(index) as rag, TestClient(create_app(index, rag)) as client:
        r = client.post("/verify", json={"text": TEXT, "k": 5})
        assert r.status_code == 200, r.text
        claims = r.json()["claims"]
        assert [c["supported"] for c in claims] == [True, True, True, False]
        assert claims[1]["passages"][0]["page"] == 4
        for body in ({"text": " "}, {"text": "x", "k": 0}, {"text": "x", "k": 101}):
            r = client.post("/verify", json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", body


def test_http_verify_with_a_fake_embedder(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "index")
    with Rag(settings, embedder=FakeEmbedder(settings.embed_model_name)) as rag:
        rag.ingest([DATA / "zh"])
        with TestClient(create_app(settings, rag)) as client:
            text = "Q7 的保修期为两年，自购买之日起计算。Q7 的保修期为五年。"
            claims = client.post("/verify", json={"text": text}).json()["claims"]
    assert [c["supported"] for c in claims] == [True, False]
    assert claims[0]["passages"][0]["source"] == "q7-air-purifier.md"
