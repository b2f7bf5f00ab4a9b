"""Worker processes that talk to us over their stdin/stdout: the PDF parser and the Chroma writer.

A worker is a fresh interpreter (``python -c``: safe beside the caller's threads, and unlike
multiprocessing's ``spawn`` it does not re-import the caller's main module, which costs seconds)
that imports this package the way the caller did, installed or not. Messages are pickled over the
pipes (``multiprocessing.connection``); the worker points its own stdin and stdout at /dev/null
first, so a stray print cannot corrupt the channel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HERE = str(Path(__file__).resolve().parent.parent)


def spawn(module: str, *args: str, stderr: Any = None) -> tuple[subprocess.Popen[bytes], Connection, Connection]:
    """Start ``module.main()`` with ``args`` in a worker; returns it with (send, receive) ends."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-c", f"from {module} import main; main()", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    send = Connection(os.dup(proc.stdin.fileno()), readable=False)
    recv = Connection(os.dup(proc.stdout.fileno()), writable=False)
    return proc, send, recv


def channel() -> tuple[Connection, Connection]:
    """In the worker: the (receive, send) ends of its channel to the parent."""
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # stray prints must not corrupt the channel
    return Connection(rfd, writable=False), Connection(wfd, readable=False)
