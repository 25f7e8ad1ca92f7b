"""HTTP/1.1 framing for webhook POSTs: the request head, and answers read from bytes fed in any
pieces (tables; hypothesis for the splitting)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatcher.channels.http1 import (
    MAX_HEAD_BYTES,
    Answer,
    ProtocolError,
    ResponseParser,
    check_header,
    request_head,
)
from tests.framing import OVERLONG, REFUSED

LIMIT = 16

ANSWERS: list[tuple[bytes, Answer]] = [
    (b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", Answer(204, {"server": "x"}, b"", True)),
    (  # 304 has no body, whatever its Content-Length says
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        Answer(304, {"content-length": "5"}, b"", True),
    ),
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
    (  # a 1xx answer's headers are not the answer's
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        Answer(204, {}, b"", True),
    ),
    (  # HTTP/1.0 keeps the connection when the server offers it
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
        Answer(200, {"connection": "keep-alive", "content-length": "1"}, b"x", True),
    ),
    (  # an encoded body is kept as sent: nothing is decompressed
        b"HTTP/1.1 500 E\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
        Answer(500, {"content-encoding": "gzip", "content-length": "4"}, b"\x1f\x8b\x08\x00", True),
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


@pytest.mark.parametrize("wire", OVERLONG.values(), ids=OVERLONG.keys())
def test_an_answer_followed_by_more_bytes_is_read_but_not_reusable(wire: bytes) -> None:
    answer = ResponseParser(LIMIT).feed(wire)
    assert answer is not None
    assert (answer.status, answer.body, answer.reusable) == (200, b"ok", False)


@pytest.mark.parametrize("wire", REFUSED.values(), ids=REFUSED.keys())
def test_ambiguous_framing_is_refused(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser(LIMIT).feed(wire)


@given(st.sampled_from(sorted(REFUSED.values())), st.lists(st.integers(min_value=1), max_size=6))
def test_ambiguous_framing_is_refused_in_any_pieces(wire: bytes, cuts: list[int]) -> None:
    points = sorted({c % len(wire) for c in cuts} - {0})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    with pytest.raises(ProtocolError):  # and no answer before it
        feed_in(pieces)


@given(st.sampled_from(ANSWERS), st.integers(min_value=0), st.integers(0, 8), st.binary(max_size=8))
def test_any_bytes_are_an_answer_or_a_protocol_error(
    case: tuple[bytes, Answer], at: int, cut: int, insert: bytes
) -> None:
    """An answer with a few bytes replaced anywhere: read, refused with ProtocolError, or still
    incomplete; never another exception."""
    wire, _ = case
    at %= len(wire)
    mutated = wire[:at] + insert + wire[at + cut :]
    parser = ResponseParser(LIMIT)
    try:
        if parser.feed(mutated) is None:
            parser.eof()
    except ProtocolError:
        pass


def test_a_body_beyond_the_limit_is_not_waited_for() -> None:
    parser = ResponseParser(LIMIT)
    answer = parser.feed(b"HTTP/1.1 500 E\r\nContent-Length: 1000000\r\n\r\n" + b"y" * LIMIT)
    assert answer == Answer(500, {"content-length": "1000000"}, b"y" * LIMIT, False)


def test_headers_too_large_in_many_pieces_are_refused() -> None:
    pads = [b"X-Pad: " + b"p" * 991 + b"\r\n"] * (MAX_HEAD_BYTES // 1000 + 1)
    with pytest.raises(ProtocolError, match="too large"):
        feed_in([b"HTTP/1.1 200 OK\r\n", *pads])


def test_one_parser_reads_answer_after_answer_on_a_kept_connection() -> None:
    """What a pooled connection does: `reset` between answers. Empty lines between answers carry
    nothing and are skipped (RFC 9112 2.2), as llhttp does."""
    parser = ResponseParser(LIMIT)
    first = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    parser.reset()
    second = parser.feed(b"\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb")
    assert first == Answer(200, {"content-length": "1"}, b"a", True)
    assert second == Answer(201, {"content-length": "1"}, b"b", True)


@pytest.mark.parametrize(
    "first",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"y" * 40,  # cut short
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP",  # bytes after it
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
    ],
)
def test_after_an_answer_that_was_not_reusable_reset_starts_afresh(first: bytes) -> None:
    parser = ResponseParser(LIMIT)
    answer = parser.feed(first)
    assert answer is not None
    assert not answer.reusable
    parser.reset()
    assert parser.feed(b"HTTP/1.1 204 No Content\r\n\r\n") == Answer(204, {}, b"", True)


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b"HTTP/1.1 500 E\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b", b"\x1f\x8b"),
        (b"HTTP/1.1 500 E\r\nTransfer-Encoding: chunked, gzip\r\n\r\nab", b"ab"),
        (b"HTTP/1.1 500 E\r\nConnection: close\r\n\r\n", b""),
    ],
)
def test_a_body_without_length_or_chunks_ends_with_the_connection(wire: bytes, body: bytes) -> None:
    parser = ResponseParser(LIMIT)
    assert parser.feed(wire) is None
    answer = parser.eof()
    assert (answer.status, answer.body, answer.reusable) == (500, body, False)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ],
)
def test_a_connection_closed_before_the_answer_ended_is_an_error(wire: bytes) -> None:
    parser = ResponseParser(LIMIT)
    assert parser.feed(wire) is None
    with pytest.raises(ProtocolError):
        parser.eof()


@pytest.mark.parametrize(
    "wire",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/0.9 200 OK\r\n\r\n",
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
