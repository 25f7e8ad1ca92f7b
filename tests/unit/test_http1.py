"""HTTP/1.1 framing for webhook POSTs: the request head, and answers read from bytes fed in any
pieces (tables; hypothesis for the splitting)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.channels.http1 import (
    Answer,
    ProtocolError,
    ResponseParser,
    check_header,
    request_head,
)

LIMIT = 16

ANSWERS: list[tuple[bytes, Answer]] = [
    (b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", Answer(204, {"server": "x"}, b"", True)),
    (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        Answer(200, {"content-length": "2"}, b"ok", True),
    ),
    (
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
        Answer(429, {"retry-after": "7", "content-length": "0"}, b"", True),
    ),
    (  # chunked, with an extension and a trailer
        b"HTTP/1.1 500 Boom\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
        Answer(500, {"transfer-encoding": "chunked"}, b"abcde", True),
    ),
    (  # 100 Continue first, then the answer
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
        Answer(202, {"content-length": "0"}, b"", True),
    ),
    (
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
        Answer(200, {"connection": "close", "content-length": "1"}, b"x", False),
    ),
    (
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx",
        Answer(200, {"content-length": "1"}, b"x", False),
    ),
    (  # more body than is kept: cut short, and the connection is not reused
        b"HTTP/1.1 500 E\r\nContent-Length: 40\r\n\r\n" + b"y" * 40,
        Answer(500, {"content-length": "40"}, b"y" * LIMIT, False),
    ),
    (  # folded header lines (obsolete) are joined
        b"HTTP/1.1 503 Busy\r\nRetry-After: \r\n  120\r\nContent-Length: 0\r\n\r\n",
        Answer(503, {"retry-after": "120", "content-length": "0"}, b"", True),
    ),
]


def feed_in(pieces: list[bytes]) -> Answer | None:
    parser = ResponseParser(LIMIT)
    answer = None
    for piece in pieces:
        assert answer is None, "bytes fed after the answer was complete"
        answer = parser.feed(piece)
    return answer


@pytest.mark.parametrize(("wire", "expected"), ANSWERS)
def test_reads_answers_whole(wire: bytes, expected: Answer) -> None:
    assert feed_in([wire]) == expected


@given(st.sampled_from(ANSWERS), st.lists(st.integers(min_value=1), max_size=6))
def test_reads_answers_in_any_pieces(case: tuple[bytes, Answer], cuts: list[int]) -> None:
    wire, expected = case
    points = sorted({c % len(wire) for c in cuts} - {0})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    parser = ResponseParser(LIMIT)
    answers = [parser.feed(piece) for piece in pieces]
    complete = [a for a in answers if a is not None]
    assert complete[:1] == [expected]


def test_a_body_until_close_ends_with_the_connection() -> None:
    parser = ResponseParser(LIMIT)
    assert parser.feed(b"HTTP/1.1 500 E\r\n\r\npart") is None
    assert parser.feed(b"ial") is None
    assert parser.eof() == Answer(500, {}, b"partial", False)


def test_extra_bytes_after_the_answer_make_it_not_reusable() -> None:
    answer = feed_in([b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n"])
    assert answer is not None
    assert not answer.reusable


@pytest.mark.parametrize(
    "wire",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
        "HTTP/1.1 2\u00b200 OK\r\n\r\n".encode("latin-1"),
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20_000,
    ],
)
def test_refuses_what_is_not_http(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser(LIMIT).feed(wire)


def test_a_connection_closed_midway_is_an_error() -> None:
    parser = ResponseParser(LIMIT)
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    with pytest.raises(ProtocolError):
        parser.eof()


def test_request_head() -> None:
    head = request_head("/hooks/x?a=1", "example.com:8080", {"X-Team": "ops"})
    assert head == b"POST /hooks/x?a=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Team: ops\r\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-A", "ok\r\nX-Injected: 1"), ("X-A", "a\nb"), ("X A", "v"), ("X:A", "v"), ("", "v")],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="invalid header"):
        check_header(name, value)
