"""The short form of the load benchmark (benchmarks/load.py) against a real ``rag serve`` with
API keys on: no errors but the deliberate 429/503, every /query stream ends with ``done``, and
the backend killed mid-stream gives an ``error`` event, then the next request works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_load_short_form(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "load.py"), "--short", "--json", "--work", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)

    assert result["no_key_status"] == 401  # auth is on
    assert result["index"]["chunks"] >= 2000
    for name in ("query", "limits", "search", "overhead"):
        s = result[name]
        assert s["errors"] == {}, (name, s)
        assert set(s["deliberate"]) <= {"429", "503"}, (name, s)
        assert s["ok"] + sum(s["deliberate"].values()) == s["requests"], (name, s)
    for name in ("query", "limits", "overhead"):  # every stream that was let in ends with done
        s = result[name]
        assert s["ends"] == {"done": s["ok"]}, (name, s)
    assert result["query"]["ok"] == result["query"]["requests"] == 8 * 3  # nothing refused at the limit
    assert result["limits"]["deliberate"].get("429", 0) >= 1  # the limit is visible beyond it
    assert result["search"]["ok"] > 0

    faults = result["faults"]
    assert faults["mid_stream"]["killed"]
    assert faults["mid_stream"]["end"] == "error", faults
    assert "done" not in faults["mid_stream"]["events"], faults
    assert faults["while_down"]["status"] in (502, 503), faults
    assert "127.0.0.1" not in str(faults["while_down"]["detail"])  # no internal address
    assert faults["after_restart"]["end"] == "done", faults
    assert faults["search_after_restart"] == 200
    assert faults["passed"]
