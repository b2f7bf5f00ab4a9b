"""Run llama.cpp's own OpenAI-compatible HTTP server (prebuilt, from the ``xllamacpp`` wheel) on a GGUF.

    python rag/llamacpp_serve.py --model FILE.gguf --alias NAME [--host 127.0.0.1] [--port 0]
                                 [--ctx 4096] [--parallel 8] [--threads N] [--exit-on-eof]

``xllamacpp`` has no command of its own; this script is one. The server is llama.cpp's C++ one
(continuous batching over ``--parallel`` slots, each with ``--ctx`` tokens of context, prompt cache),
so the embedded default is reached over HTTP exactly as Ollama or ``llama-server`` would be.

It prints one JSON line, ``{"url": "http://127.0.0.1:PORT"}``, once the model is loaded and the
port is listening, then serves until SIGTERM or SIGINT, or (``--exit-on-eof``, how ``rag`` runs it)
until its stdin closes: the pipe from ``rag`` closes when ``rag`` exits or is killed, so no engine is
left behind. It exits with 98 when the port is taken, 66 when the model file is missing.

Standalone on purpose: it imports nothing from this project, so it starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading

EXIT_PORT_TAKEN = 98
EXIT_NO_MODEL = 66


def port_free(host: str, port: int) -> bool:
    """llama.cpp reports a taken port only as "Failed to init server": ask first."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", required=True, help="The model name the server answers to.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed).")
    ap.add_argument("--ctx", type=int, default=4096, help="Context of each slot, in tokens.")
    ap.add_argument("--parallel", type=int, default=8, help="Answers generated at once (slots).")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: all).")
    ap.add_argument("--repeat-penalty", type=float, default=1.1)
    ap.add_argument("--exit-on-eof", action="store_true", help="Stop when stdin closes (the parent went away).")
    args = ap.parse_args(argv)
    if not os.path.isfile(args.model):
        print(f"model file not found: {args.model}", file=sys.stderr)
        return EXIT_NO_MODEL

    if args.port and not port_free(args.host, args.port):
        print(f"port {args.port} on {args.host} is taken", file=sys.stderr)
        return EXIT_PORT_TAKEN

    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = args.model
    p.model_alias = {args.alias}
    p.offline = True  # never look for a model on a hub
    p.hostnames = [args.host]
    p.port = args.port
    p.n_parallel = args.parallel
    # Slots split n_ctx between them: give each the whole context an answer may use.
    p.n_ctx = args.ctx * args.parallel
    if args.threads > 0:
        p.cpuparams.n_threads = args.threads
        p.cpuparams_batch.n_threads = args.threads
    # Off by default (a request may still ask for it): evaluating a prompt partly from the cache
    # splits it into other batches, which changes the logits slightly, so the same question and seed
    # would not give the same answer twice (measured). Grounded prompts share little but the system
    # prompt, so the cache saved little time anyway.
    p.cache_prompt = False
    # A 135M model loops without a little repetition penalty; requests may still set their own.
    p.sampling.penalty_repeat = args.repeat_penalty
    p.verbosity = 0
    try:
        server = xllamacpp.Server(p)
    except Exception as exc:
        print(f"llama.cpp server failed to start: {exc}", file=sys.stderr)
        return 1
    url = server.listening_address
    if not url:
        print("llama.cpp server did not listen (port taken?)", file=sys.stderr)
        return EXIT_PORT_TAKEN
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def wait_for_eof() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(4096):
                pass
        stop.set()

    if args.exit_on_eof:
        threading.Thread(target=wait_for_eof, daemon=True).start()
    while not stop.wait(1.0):
        pass
    del server  # stops llama.cpp's loop and frees the model
    return 0


if __name__ == "__main__":
    sys.exit(main())
