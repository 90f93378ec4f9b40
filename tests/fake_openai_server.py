"""A fake OpenAI-compatible server for tests and the load-generator benchmark: a real HTTP server on
127.0.0.1 (a free port) that streams tokens with programmed delays.

Per request (``/v1/completions`` or ``/v1/chat/completions``, ``stream: true``): wait ``ttft_ms``,
then send ``max_tokens`` tokens, ``tokens_per_chunk`` per chunk, one chunk every ``chunk_gap_ms``;
the last token's chunk carries ``finish_reason: length``; then a usage chunk
(``stream_options.include_usage``) and ``data: [DONE]``. Token ids ride on each chunk when the
request asks ``return_token_ids`` (as vLLM does); running usage when it asks
``continuous_usage_stats``. ``cut_after`` stops streams early (a server shut down mid-stream). At
most ``max_running`` requests stream at once (the rest wait, as in an engine's queue).

``mode`` makes every ``every``-th request (1: all) misbehave: ``status500`` (HTTP 500),
``no_done`` (the whole stream, no ``[DONE]``), ``hang`` (headers, then nothing), ``long_line`` (one
10 MB event line), ``deep_json`` (an event nested 200,000 deep), ``bad_json``, ``error_event`` (an
error object in the stream), ``overclaim`` (no token ids; running usage claims ``overclaim``
tokens). ``bad_metrics``: ``GET /metrics`` answers garbage.

``GET /metrics``: vLLM's gauges in the Prometheus text format; ``GET /requests``: the receive time
(``time.perf_counter``, the same clock as the client's on Linux) and body of each request;
``GET /cpu``: the server's CPU time (s); ``GET /health``: 200.

Run ``python tests/fake_openai_server.py [--ttft-ms ...]``: it prints ``PORT <n>`` once listening
and serves until stdin closes or SIGTERM (with ``--port``: until SIGTERM, as a server llem starts
with ``backend.launch=command``; ``--die-after-ms`` exits with status 3, a server that crashes).
:func:`fake_server` does that in a subprocess for a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

Body = dict[str, object]


@dataclass(frozen=True)
class Program:
    """What the server does with every request (times in ms)."""

    ttft_ms: float = 20.0
    chunk_gap_ms: float = 2.0
    tokens_per_chunk: int = 1
    max_running: int = 1_000_000
    token_ids: bool = True  # honour return_token_ids (False: behave like a server without it)
    cut_after: int = 0  # > 0: stop each stream after this many tokens (see ``cut``)
    cut: str = (
        "end"  # end: finish the response without [DONE] (vLLM on SIGTERM); abort: drop the TCP
    )
    mode: str = "normal"  # one of MODES: how every ``every``-th request misbehaves
    every: int = 1
    overclaim: int = 10**9  # mode overclaim: the completion_tokens claimed
    bad_metrics: bool = False  # GET /metrics answers text that is not the Prometheus format

    def args(self) -> list[str]:
        return [
            f"--ttft-ms={self.ttft_ms}",
            f"--chunk-gap-ms={self.chunk_gap_ms}",
            f"--tokens-per-chunk={self.tokens_per_chunk}",
            f"--max-running={self.max_running}",
            *([] if self.token_ids else ["--no-token-ids"]),
            f"--cut-after={self.cut_after}",
            f"--cut={self.cut}",
            f"--mode={self.mode}",
            f"--every={self.every}",
            f"--overclaim={self.overclaim}",
            *(["--bad-metrics"] if self.bad_metrics else []),
        ]


MODES = (
    "normal", "status500", "no_done", "hang", "long_line", "deep_json", "bad_json", "error_event",
    "overclaim",
)  # fmt: skip


@dataclass
class _State:
    program: Program
    slots: asyncio.Semaphore
    running: int = 0
    waiting: int = 0
    received: list[tuple[float, Body]] = field(default_factory=list)


def _sse(data: object) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _choice(chat: bool, ids: list[int], body: Body, finish: str | None) -> Body:
    text = "".join(f" t{i}" for i in ids)
    choice: Body = {"index": 0, "finish_reason": finish}
    if chat:
        choice["delta"] = {"content": text}
    else:
        choice["text"] = text
    if body.get("return_token_ids") and STATE.program.token_ids:
        choice["token_ids"] = ids
    return choice


async def _stream(request: web.Request) -> web.StreamResponse:
    state = STATE
    received = time.perf_counter()
    body: Body = await request.json()
    state.received.append((received, body))
    p = state.program
    mode = p.mode if len(state.received) % p.every == 0 else "normal"
    if mode == "status500":
        return web.json_response({"error": {"message": "fake failure"}}, status=500)
    if mode in _BROKEN or mode == "hang":
        return await _broken(request, mode)
    chat = request.path.endswith("/chat/completions")
    max_tokens = body.get("max_tokens")
    n = max_tokens if isinstance(max_tokens, int) else 16
    options = body.get("stream_options")
    options = options if isinstance(options, dict) else {}
    prompt = body.get("prompt")
    prompt_tokens = len(prompt) if isinstance(prompt, list) else 8
    base: Body = {
        "id": "cmpl-fake",
        "object": "chat.completion.chunk" if chat else "text_completion",
    }
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    state.waiting += 1
    async with state.slots:
        state.waiting -= 1
        state.running += 1
        try:
            if chat:
                role = {"index": 0, "delta": {"role": "assistant", "content": ""}}
                await response.write(_sse({**base, "choices": [role]}))
            await asyncio.sleep(p.ttft_ms / 1000)
            sent = 0
            while sent < n:
                if sent:
                    await asyncio.sleep(p.chunk_gap_ms / 1000)
                ids = list(range(sent, min(n, sent + p.tokens_per_chunk)))
                sent += len(ids)
                chunk: Body = {
                    **base,
                    "choices": [_choice(chat, ids, body, "length" if sent == n else None)],
                }
                if options.get("continuous_usage_stats"):
                    claimed = p.overclaim if mode == "overclaim" else sent
                    chunk["usage"] = _usage(prompt_tokens, claimed)
                if mode == "overclaim":
                    for choice in chunk["choices"]:  # type: ignore[attr-defined]
                        choice.pop("token_ids", None)
                await response.write(_sse(chunk))
                if p.cut_after and sent >= p.cut_after:
                    if p.cut == "abort" and request.transport is not None:
                        request.transport.abort()
                        return response
                    break
            else:
                if options.get("include_usage"):
                    usage = _usage(prompt_tokens, n)
                    await response.write(_sse({**base, "choices": [], "usage": usage}))
                if mode != "no_done":
                    await response.write(b"data: [DONE]\n\n")
        finally:
            state.running -= 1
    await response.write_eof()
    return response


_BROKEN = {
    "long_line": b"data: " + b"x" * (10 * 2**20) + b"\n\n",
    "deep_json": b"data: " + b"[" * 200_000 + b"]" * 200_000 + b"\n\n",
    "bad_json": b"data: {not json\n\n",
    "error_event": b'data: {"error": {"message": "fake engine error", "code": 500}}\n\n',
}


async def _broken(request: web.Request, mode: str) -> web.StreamResponse:
    """A 200 stream that is broken in the way ``mode`` says (``hang``: never sends a byte)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if mode == "hang":
        await asyncio.sleep(3600)
    await response.write(_BROKEN[mode])
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _usage(prompt_tokens: int, completion_tokens: int) -> Body:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def _metrics(_: web.Request) -> web.Response:
    s = STATE
    if s.program.bad_metrics:
        return web.Response(text="vllm:num_requests_running{{{ not a metric\n")
    lines = [
        "# HELP vllm:num_requests_running Number of requests in model execution batches.",
        "# TYPE vllm:num_requests_running gauge",
        f'vllm:num_requests_running{{engine="0",model_name="fake"}} {float(s.running)}',
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
        "# TYPE vllm:num_requests_waiting gauge",
        f'vllm:num_requests_waiting{{engine="0",model_name="fake"}} {float(s.waiting)}',
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="fake"}} {s.running / 100:.4f}',
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        "# TYPE vllm:generation_tokens_total counter",
        'vllm:generation_tokens_total{engine="0",model_name="fake"} 0.0',
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def _requests(_: web.Request) -> web.Response:
    return web.json_response([{"received_s": t, "body": b} for t, b in STATE.received])


async def _cpu(_: web.Request) -> web.Response:
    return web.json_response({"cpu_s": time.process_time()})


async def _health(_: web.Request) -> web.Response:
    return web.Response(text="ok")


STATE: _State  # one server per process


async def _serve(program: Program, port: int = 0, die_after: int = 0) -> None:
    global STATE
    STATE = _State(program, asyncio.Semaphore(program.max_running))
    app = web.Application()
    app.router.add_post("/v1/completions", _stream)
    app.router.add_post("/v1/chat/completions", _stream)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/requests", _requests)
    app.router.add_get("/health", _health)
    app.router.add_get("/cpu", _cpu)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def stdin_readable() -> None:  # only at EOF: nobody writes to it
        if not os.read(sys.stdin.fileno(), 1024):
            stop.set()

    if not port:  # started by fake_server(): ends with its stdin
        loop.add_reader(sys.stdin.fileno(), stdin_readable)
    if die_after:
        loop.call_later(die_after / 1000, os._exit, 3)
    await stop.wait()
    await runner.cleanup()


@contextlib.contextmanager
def fake_server(program: Program | None = None) -> Iterator[str]:
    """Start the server in a subprocess; yield its base URL (``http://127.0.0.1:<port>``); stop
    it."""
    args = (program or Program()).args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "" when the server died before listening
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttft-ms", type=float, default=Program.ttft_ms)
    parser.add_argument("--chunk-gap-ms", type=float, default=Program.chunk_gap_ms)
    parser.add_argument("--tokens-per-chunk", type=int, default=Program.tokens_per_chunk)
    parser.add_argument("--max-running", type=int, default=Program.max_running)
    parser.add_argument("--no-token-ids", action="store_true")
    parser.add_argument("--cut-after", type=int, default=0)
    parser.add_argument("--cut", choices=["end", "abort"], default="end")
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--every", type=int, default=1, help="mode applies to every k-th request")
    parser.add_argument("--overclaim", type=int, default=Program.overclaim)
    parser.add_argument("--bad-metrics", action="store_true")
    parser.add_argument(
        "--port", type=int, default=0, help="listen here and ignore stdin (a server llem starts)"
    )
    parser.add_argument("--die-after-ms", type=int, default=0, help="exit with status 3 then")
    a = parser.parse_args()
    program = Program(
        a.ttft_ms,
        a.chunk_gap_ms,
        a.tokens_per_chunk,
        a.max_running,
        not a.no_token_ids,
        a.cut_after,
        a.cut,
        a.mode,
        a.every,
        a.overclaim,
        a.bad_metrics,
    )
    asyncio.run(_serve(program, a.port, a.die_after_ms))


if __name__ == "__main__":
    main()
