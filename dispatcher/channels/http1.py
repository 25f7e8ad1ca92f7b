"""HTTP/1.1 on the wire, for webhook POSTs: the request's bytes, and a parser that reads one
answer from bytes fed as they arrive, keeping at most `max_body` bytes of its body.

Pure: no sockets. `dispatcher.channels.httpclient` runs it over pooled keep-alive connections.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

MAX_HEAD_BYTES = 64 * 1024
_MAX_LINE_BYTES = 8 * 1024
_NO_BODY = frozenset({204, 304})
_FORBIDDEN = frozenset("\r\n\x00")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.1 answer we can read."""


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes  # at most `max_body` bytes of it
    reusable: bool  # the connection may carry another request


def check_header(name: str, value: str) -> None:
    """Refuse what would break the request's framing (a header smuggling another one in)."""
    if not name or not name.isascii() or any(c in _FORBIDDEN or c in " :" for c in name):
        raise ValueError("invalid header name")
    if any(c in _FORBIDDEN for c in value):
        raise ValueError("invalid header value")


def request_head(target: str, host: str, headers: dict[str, str]) -> bytes:
    """`POST target HTTP/1.1` and these headers, each line ending in CRLF: the head's fixed
    part. The sender adds its per-request headers, `Content-Length`, a blank line, the body."""
    lines = [f"POST {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8")


class ResponseParser:
    """Reads one answer. `feed` returns it once complete (None until then); `eof` says the peer
    closed the connection. Either raises ProtocolError on bytes that are not HTTP/1.1."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buffer = bytearray()
        self._head: tuple[int, dict[str, str], bool] | None = None
        self._body = bytearray()
        self._left = 0  # bytes of the current body or chunk still to come
        self._oversized = False  # a Content-Length beyond max_body
        self._mode = "head"  # head | length | chunk-size | chunk | chunk-end | trailer | close
        self.started = False  # any byte of an answer arrived

    def feed(self, data: bytes) -> Answer | None:
        """Take the next bytes; the answer once it is complete, else None."""
        self.started = True
        self._buffer += data
        while True:  # each step consumes input or changes mode; False: it needs more bytes
            done = _STEPS[self._mode](self)
            if done is not None:
                return done if isinstance(done, Answer) else None

    def eof(self) -> Answer:
        if self._mode == "close" and self._head is not None:
            return self._answer(reusable=False)
        raise ProtocolError("the connection closed before the answer ended")

    def _answer(self, *, reusable: bool) -> Answer:
        assert self._head is not None
        status, headers, keep_alive = self._head
        body = bytes(self._body[: self._max_body])
        return Answer(status, headers, body, reusable and keep_alive and not self._buffer)

    def _keep(self, piece: bytes | bytearray) -> None:
        room = self._max_body - len(self._body)
        if room > 0:
            self._body += piece[:room]

    def _full(self) -> bool:
        return len(self._body) >= self._max_body

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_LINE_BYTES:
                raise ProtocolError("a line of the answer is too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _read_head(self) -> Answer | bool | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("the answer's headers are too large")
            return False
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        status, version, headers = _parse_head(raw)
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("unexpected 101 Switching Protocols")
            return None  # informational: the real answer follows
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = version == "1.1" and "close" not in tokens
        self._head = (status, headers, keep_alive)
        coding = headers.get("transfer-encoding", "").lower()
        if status in _NO_BODY:
            return self._answer(reusable=True)
        if coding:
            chunked = coding.rsplit(",", 1)[-1].strip() == "chunked"
            self._mode = "chunk-size" if chunked else "close"
            return None
        length = headers.get("content-length")
        if length is None:
            self._mode = "close"
            return None
        if not _is_number(length.strip()):
            raise ProtocolError("invalid Content-Length")
        self._left = int(length)
        self._oversized = self._left > self._max_body
        self._mode = "length"
        return None

    def _read_length(self) -> Answer | bool:
        piece = self._buffer[: self._left]
        del self._buffer[: len(piece)]
        self._keep(piece)
        self._left -= len(piece)
        if self._oversized and self._full():  # the rest is not worth reading
            return self._answer(reusable=False)
        return self._answer(reusable=True) if not self._left else False

    def _read_to_close(self) -> Answer | bool:
        self._keep(self._buffer)
        self._buffer.clear()
        return self._answer(reusable=False) if self._full() else False

    def _read_chunk_size(self) -> Answer | bool | None:
        line = self._line()
        if line is None:
            return False
        size = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size):  # int(x, 16) would take "-2", "+5", "0x5" and "1_0"
            raise ProtocolError("invalid chunk size")
        self._left = int(size, 16)
        self._mode = "chunk" if self._left else "trailer"
        return None

    def _read_chunk(self) -> Answer | bool | None:
        piece = self._buffer[: self._left]
        del self._buffer[: len(piece)]
        self._keep(piece)
        self._left -= len(piece)
        if self._full():
            return self._answer(reusable=False)
        if self._left:
            return False
        self._mode = "chunk-end"
        return None

    def _read_chunk_end(self) -> bool | None:
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] != b"\r\n":
            raise ProtocolError("a chunk does not end with CRLF")
        del self._buffer[:2]
        self._mode = "chunk-size"
        return None

    def _read_trailer(self) -> Answer | bool | None:
        line = self._line()
        if line is None:
            return False
        return self._answer(reusable=True) if not line else None


_STEPS: dict[str, Callable[[ResponseParser], Answer | bool | None]] = {
    "head": ResponseParser._read_head,
    "length": ResponseParser._read_length,
    "close": ResponseParser._read_to_close,
    "chunk-size": ResponseParser._read_chunk_size,
    "chunk": ResponseParser._read_chunk,
    "chunk-end": ResponseParser._read_chunk_end,
    "trailer": ResponseParser._read_trailer,
}


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def _parse_head(raw: bytes) -> tuple[int, str, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3:
        raise ProtocolError("not an HTTP/1.x status line")
    if not _is_number(parts[1]):
        raise ProtocolError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and name:  # an obsolete folded continuation
            headers[name] = f"{headers[name]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError("a header line without a colon")
        name = name.strip().lower()
        headers[name] = value.strip()
    return int(parts[1]), parts[0][5:], headers
