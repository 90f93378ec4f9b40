"""Streamed requests to an OpenAI-compatible server (``/v1/completions``, ``/v1/chat/completions``).

HTTP client: **aiohttp** (:class:`aiohttp.ClientSession`). It is well kept, parses HTTP with its C
extension and pools keep-alive connections; measured on this 2-core machine against
``tests/fake_openai_server.py``, one 32-token stream costs ~0.8 ms of client CPU with aiohttp
against ~2.5 ms with httpx + httpx-sse, and the load generator must never be the bottleneck
(``bench/``). Server-sent events: :func:`bounded_lines` splits the body into lines (each
bounded), :func:`sse_data` applies the SSE framing rules (``data:`` fields, a blank line ends an
event). No maintained SSE library works on aiohttp's stream: ``aiohttp-sse`` is server-side,
``aiohttp-sse-client2`` (last release 2023) reconnects when a stream ends, which would send a POST
again, and ``httpx-sse`` needs httpx.

Tokens are counted from each chunk's ``token_ids`` (``return_token_ids``, vLLM) or, failing that,
from the running ``usage`` (``stream_options.continuous_usage_stats``): never from chunks or text,
since one chunk can carry several tokens. Times are ``time.perf_counter()`` seconds.

The server is not trusted: a request's count never exceeds the ``max_tokens`` it asked for (a server
claiming more is flagged, :attr:`StreamRecord.overclaimed`), an event is at most
:data:`MAX_EVENT_BYTES`, and every way an answer can go wrong ends the request with one failure
class (:data:`FailureKind`), never an exception.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import aiohttp
from pydantic import JsonValue

from llem.backends.base import RequestRecord

Endpoint = Literal["completions", "chat"]
# connection: no connection (refused, unresolvable host); http_status: an answer other than 200;
# truncated: the stream broke or ended without [DONE]; timeout: backend.request_timeout_s passed;
# protocol: an answer that is no OpenAI stream (bad JSON, an oversized event, bad bytes);
# server_error: the stream carried an error object
FailureKind = Literal[
    "connection", "http_status", "truncated", "timeout", "protocol", "server_error"
]
FAILURE_KINDS: tuple[FailureKind, ...] = get_args(FailureKind)
# a stream that broke after the server answered (before it: a connection failure)
BROKEN = (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
MAX_EVENT_BYTES = 4 * 2**20  # one event (a chunk may carry the prompt's token ids: ~2 MiB)
ERROR_BODY_BYTES = 300  # read of a non-200 answer's body, quoted in the error


class ProtocolError(Exception):
    """The server's answer is not an OpenAI-compatible stream (failure class ``protocol``)."""


PATHS: dict[Endpoint, str] = {
    "completions": "/v1/completions",
    "chat": "/v1/chat/completions",
}


@dataclass(frozen=True)
class StreamRequest:
    """One request, serialised ahead of its send time."""

    index: int  # position of the prompt in the dataset
    input_tokens: int  # counted locally with the model's tokenizer
    endpoint: Endpoint
    payload: bytes  # JSON body
    max_tokens: int  # asked for: no more output tokens are counted


def request(
    index: int,
    input_tokens: int,
    model: str,
    max_tokens: int,
    prompt: str | Sequence[int] | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    exact: bool = True,
    extra: Mapping[str, JsonValue] | None = None,
) -> StreamRequest:
    """A streamed request: a text or token-id ``prompt`` (completions) or chat ``messages`` (chat
    completions), one of the two.

    ``exact`` asks for exactly ``max_tokens`` tokens (``min_tokens = max_tokens``; ``ignore_eos``
    alone can return EOS as content). ``extra`` adds or replaces body fields (sampling, seed).
    """
    if (prompt is None) == (messages is None):
        raise ValueError("give a prompt or chat messages (one of the two)")
    body: dict[str, JsonValue] = {
        "model": model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        "return_token_ids": True,
    }
    if messages is not None:
        body["messages"] = [dict(m) for m in messages]
    elif isinstance(prompt, str):
        body["prompt"] = prompt
    elif prompt is not None:
        body["prompt"] = list(prompt)
    if exact:
        body["min_tokens"] = max_tokens
    body.update(extra or {})
    endpoint: Endpoint = "chat" if messages is not None else "completions"
    return StreamRequest(index, input_tokens, endpoint, json.dumps(body).encode(), max_tokens)


@dataclass
class StreamRecord:
    """What happened to one streamed request (perf_counter seconds)."""

    index: int
    input_tokens: int
    scheduled_s: float  # when the load wanted it sent
    sent_s: float = 0.0  # just before the request was handed to the client
    token_times_s: list[float] = field(default_factory=list)  # arrival of each output token
    end_s: float | None = None  # stream complete ([DONE]) or failed
    finish_reason: str | None = None
    usage_output_tokens: int | None = None  # the server's own count, when it sends usage
    usage_input_tokens: int | None = None
    error: str | None = None
    failure: FailureKind | None = None  # set with ``error``
    max_tokens: int | None = None  # the request's max_tokens: the most tokens counted
    overclaimed: bool = False  # the server claimed more tokens than max_tokens (capped)

    def fail(self, kind: FailureKind, error: str) -> None:
        """End the request as failed (the first failure wins)."""
        if self.error is None:
            self.failure, self.error = kind, error
        if self.end_s is None:
            self.end_s = time.perf_counter()

    def add_tokens(self, count: int, now: float) -> None:
        """``count`` more output tokens arrived at ``now``, capped at ``max_tokens``."""
        room = count if self.max_tokens is None else self.max_tokens - self.output_tokens
        if count > room:
            self.overclaimed = True
        self.token_times_s.extend([now] * max(0, min(count, room)))

    @property
    def output_tokens(self) -> int:
        return len(self.token_times_s)

    @property
    def ok(self) -> bool:
        return self.error is None and self.end_s is not None

    @property
    def send_lag_s(self) -> float:
        """Actual minus scheduled send time (includes any wait for a ``max_concurrency`` slot)."""
        return self.sent_s - self.scheduled_s

    @property
    def last_s(self) -> float:
        """The last output token's arrival, else the end of the stream, else the send."""
        if self.token_times_s:
            return self.token_times_s[-1]
        return self.end_s if self.end_s is not None else self.sent_s

    @property
    def done_s(self) -> float:
        """When the request stopped being in flight: the end of its stream (else its last token)."""
        return self.end_s if self.end_s is not None else self.last_s

    @property
    def counts_agree(self) -> bool:
        """Streamed token count equals the server's usage count (True when it sent none)."""
        return self.usage_output_tokens in (None, self.output_tokens)

    def request_record(self) -> RequestRecord:
        """As the offline metrics see a request: submitted at ``sent_s``."""
        return RequestRecord(
            index=self.index,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            start_s=self.sent_s,
            token_times_s=self.token_times_s,
            finished_s=self.end_s,
        )


async def bounded_lines(
    chunks: AsyncIterable[bytes], limit: int = MAX_EVENT_BYTES
) -> AsyncIterator[bytes]:
    """The lines (``\\n``-ended) of a body read in chunks; :class:`ProtocolError` as soon as a line
    exceeds ``limit`` bytes (memory stays bounded whatever the server sends)."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if end - start > limit:
                break
            yield bytes(buf[start : end + 1])
            start = end + 1
        del buf[:start]
        if buf.find(b"\n") > limit or (b"\n" not in buf and len(buf) > limit):
            raise ProtocolError(f"an event line longer than {limit} bytes")
    if buf:
        yield bytes(buf)


async def sse_data(lines: AsyncIterable[bytes], limit: int = MAX_EVENT_BYTES) -> AsyncIterator[str]:
    """The data of each server-sent event: its ``data:`` lines joined by newlines, ended by a blank
    line. Other fields (``event``, ``id``, ``retry``) and comments are not used by OpenAI-compatible
    streams; an event cut off by the end of the stream is dropped (as the SSE standard says). An
    event over ``limit`` bytes or not UTF-8 is a :class:`ProtocolError`."""
    data: list[str] = []
    size = 0
    async for raw in lines:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data, size = [], 0
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            size += len(value)
            if size > limit:
                raise ProtocolError(f"an event longer than {limit} bytes")
            try:
                data.append(value.removeprefix(b" ").decode())
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"an event that is not UTF-8 ({exc.reason})") from None


class StreamClient:
    """One HTTP session to one server: no connection limit (the load decides what is in flight)."""

    def __init__(self, base_url: str, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StreamClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            read_bufsize=2**20,  # a chunk may carry the prompt's token ids: lines up to ~2 MiB
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, req: StreamRequest, scheduled_s: float, on_sent: Callable[[], None] | None = None
    ) -> StreamRecord:
        """Send ``req`` now (``on_sent`` is called once its send time is stamped) and follow its
        stream to the end; a failure lands in ``record.error`` with its class."""
        assert self._session is not None, "use StreamClient as an async context manager"
        rec = StreamRecord(req.index, req.input_tokens, scheduled_s, max_tokens=req.max_tokens)
        rec.sent_s = time.perf_counter()
        if on_sent is not None:
            on_sent()
        answered = False  # the response's headers came
        try:
            async with self._session.post(
                self.base_url + PATHS[req.endpoint], data=req.payload
            ) as resp:
                answered = True
                if resp.status != 200:
                    body = await resp.content.read(ERROR_BODY_BYTES)
                    text = body.decode(errors="replace")
                    rec.fail("http_status", f"HTTP {resp.status}: {text}")
                else:
                    await _follow(rec, sse_data(bounded_lines(resp.content.iter_any())))
        except asyncio.TimeoutError:  # aiohttp's too (TimeoutError itself from Python 3.11)
            rec.fail("timeout", f"no complete answer within {self.timeout_s:g} s")
        except aiohttp.ClientConnectorError as exc:
            rec.fail("connection", f"connection failed: {exc}")
        except (
            aiohttp.ClientPayloadError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError,
        ) as exc:
            kind: FailureKind = "truncated" if answered else "connection"
            rec.fail(kind, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # an answer that breaks the protocol in any other way
            rec.fail("protocol", f"{type(exc).__name__}: {exc}"[:300])
        if rec.end_s is None:
            rec.fail("truncated", "stream ended without [DONE]")
        return rec


def _chunk(data: str) -> JsonValue:
    """One event's JSON; :class:`ProtocolError` when it is not JSON or nests too deep."""
    try:
        parsed: JsonValue = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"an event that is not JSON ({exc})"[:300]) from None
    except RecursionError:
        raise ProtocolError("an event whose JSON nests too deep") from None
    return parsed


async def _follow(rec: StreamRecord, events: AsyncIterator[str]) -> None:
    """Fill ``rec`` from a stream's events until ``[DONE]``."""
    async for data in events:
        now = time.perf_counter()
        if data == "[DONE]":
            rec.end_s = now
            return
        chunk = _chunk(data)
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            rec.fail("server_error", f"server error: {json.dumps(chunk['error'])[:300]}")
            return
        usage = chunk.get("usage")
        running = usage.get("completion_tokens") if isinstance(usage, dict) else None
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices:  # the closing usage chunk
            if isinstance(usage, dict):
                prompt = usage.get("prompt_tokens")
                rec.usage_output_tokens = running if isinstance(running, int) else None
                rec.usage_input_tokens = prompt if isinstance(prompt, int) else None
                if rec.max_tokens is not None and (rec.usage_output_tokens or 0) > rec.max_tokens:
                    rec.overclaimed = True
            continue
        choice = choices[0]
        if not isinstance(choice, dict):
            continue
        ids = choice.get("token_ids")
        if isinstance(ids, list):
            count = len(ids)
        elif isinstance(running, int):
            count = running - rec.output_tokens
        elif _has_text(choice):
            rec.fail(
                "protocol",
                "cannot count tokens: the server sends neither token_ids (return_token_ids) nor "
                "running usage (stream_options.continuous_usage_stats)",
            )
            return
        else:  # chat's role-only opening chunk
            count = 0
        rec.add_tokens(count, now)
        finish = choice.get("finish_reason")
        if finish is not None:
            rec.finish_reason = str(finish)[:100]


def _has_text(choice: dict[str, JsonValue]) -> bool:
    delta = choice.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return bool(text) or choice.get("finish_reason") is not None
