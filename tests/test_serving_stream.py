"""The stream client against a real HTTP server with programmed delays
(tests/fake_openai_server.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import JsonValue

from llem.serving.stream import StreamClient, StreamRecord, StreamRequest, request, sse_data
from tests.fake_openai_server import Program, fake_server

# 50 ms to the first token, then a chunk of 3 tokens every 20 ms
SLOW = Program(ttft_ms=50.0, chunk_gap_ms=20.0, tokens_per_chunk=3)


@pytest.fixture(scope="module")
def slow_url() -> Iterator[str]:
    with fake_server(SLOW) as url:
        yield url


def send(url: str, req: StreamRequest) -> StreamRecord:
    async def go() -> StreamRecord:
        async with StreamClient(url, timeout_s=30) as client:
            return await client.send(req, scheduled_s=0.0)

    return asyncio.run(go())


def test_request_body_asks_for_exact_streamed_tokens() -> None:
    req = request(3, 5, "tiny", 16, prompt=[1, 2, 3, 4, 5])
    body = json.loads(req.payload)
    assert req.endpoint == "completions" and (req.index, req.input_tokens) == (3, 5)
    assert body["prompt"] == [1, 2, 3, 4, 5]
    assert body["max_tokens"] == body["min_tokens"] == 16
    assert body["stream"] is True and body["return_token_ids"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    chat = request(0, 9, "tiny", 4, messages=[{"role": "user", "content": "hi"}], exact=False)
    cbody = json.loads(chat.payload)
    assert chat.endpoint == "chat" and "min_tokens" not in cbody
    assert cbody["messages"] == [{"role": "user", "content": "hi"}]
    extra: dict[str, JsonValue] = {"temperature": 0.0, "seed": 7}
    assert json.loads(request(0, 1, "m", 1, prompt="x", extra=extra).payload)["seed"] == 7
    with pytest.raises(ValueError, match="one of the two"):
        request(0, 1, "m", 1)


def test_sse_framing() -> None:
    async def lines() -> AsyncIterator[bytes]:
        for line in [
            b": a comment\n",
            b'data: {"a": 1}\r\n',
            b"\r\n",
            b"event: x\n",
            b"data: two\n",
            b"data:lines\n",
            b"\n",
            b"\n",  # a blank line with no data dispatches nothing
            b"data: [DONE]\n",
            b"\n",
            b"data: cut off by the end of the stream\n",
        ]:
            yield line

    async def collect() -> list[str]:
        return [d async for d in sse_data(lines())]

    assert asyncio.run(collect()) == ['{"a": 1}', "two\nlines", "[DONE]"]


def test_each_token_gets_its_chunks_arrival_time(slow_url: str) -> None:
    r = send(slow_url, request(0, 3, "fake", 10, prompt=[1, 2, 3]))
    assert r.ok and r.error is None and r.finish_reason == "length"
    # 10 tokens in 4 chunks (3 + 3 + 3 + 1): counted by token ids, not by chunks
    assert r.output_tokens == 10 and r.usage_output_tokens == 10 and r.counts_agree
    assert r.usage_input_tokens == 3
    t = r.token_times_s
    assert t[0] == t[1] == t[2] and t[3] == t[4] == t[5] and t[6] == t[7] == t[8]
    assert t == sorted(t)
    # the server waits 50 ms before the first token and 20 ms before each later chunk: a chunk
    # never arrives before it was sent (a late arrival can shorten the next gap, so gaps between
    # arrivals are only ordered, the bounds are from the request's send time)
    assert t[0] - r.sent_s >= 0.050
    assert t[2] < t[3] < t[6] < t[9] and t[9] - r.sent_s >= 0.050 + 3 * 0.020
    assert r.end_s is not None and r.end_s >= t[-1]
    assert r.last_s == t[-1]
    assert r.send_lag_s == r.sent_s  # scheduled at 0.0 in this test
    rr = r.request_record()
    assert (rr.start_s, rr.output_tokens, rr.token_times_s) == (r.sent_s, 10, t)


def test_chat_stream_skips_the_role_chunk(slow_url: str) -> None:
    msgs = [{"role": "user", "content": "hello"}]
    r = send(slow_url, request(1, 7, "fake", 4, messages=msgs))
    assert r.ok and r.output_tokens == 4 and r.usage_output_tokens == 4
    assert r.token_times_s[0] - r.sent_s >= 0.050


def test_without_token_ids_the_running_usage_counts_tokens() -> None:
    with fake_server(
        Program(ttft_ms=1.0, chunk_gap_ms=5.0, tokens_per_chunk=2, token_ids=False)
    ) as url:
        r = send(url, request(0, 2, "fake", 5, prompt=[1, 2]))
        assert r.ok and r.output_tokens == 5 and r.counts_agree
        t = r.token_times_s
        assert t[0] == t[1] and t[2] == t[3] and t[4] > t[3]
        # neither ids nor running usage: tokens cannot be counted, and the record says so
        plain: dict[str, JsonValue] = {"stream_options": {"include_usage": True}}
        bad = send(url, request(0, 2, "fake", 5, prompt=[1, 2], extra=plain))
        assert not bad.ok and bad.error is not None and "cannot count tokens" in bad.error
        assert bad.output_tokens == 0


def test_unreachable_server_is_a_failed_record_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    r = send(f"http://127.0.0.1:{port}", request(0, 1, "fake", 2, prompt="x"))
    assert not r.ok and r.error is not None and "Connect" in r.error
    assert r.output_tokens == 0 and r.end_s is not None


@pytest.mark.parametrize("cut", ["end", "abort"])
def test_a_stream_cut_short_is_a_failed_record_with_its_tokens(cut: str) -> None:
    with fake_server(Program(ttft_ms=1.0, chunk_gap_ms=2.0, cut_after=3, cut=cut)) as url:
        r = send(url, request(0, 2, "fake", 8, prompt=[1, 2]))
    assert not r.ok and r.error is not None
    if cut == "end":  # the response ended cleanly, but without [DONE]
        assert r.error == "stream ended without [DONE]"
    assert r.output_tokens == 3 and r.finish_reason is None and r.usage_output_tokens is None
    assert r.end_s is not None and r.end_s >= r.token_times_s[-1]
