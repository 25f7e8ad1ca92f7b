"""HTTP/1.1 on the wire, for webhook POSTs: the request's bytes, and a reader of one answer from
bytes fed as they arrive, keeping at most `max_body` bytes of its body.

The answer's framing is llhttp's (through httptools, the parser uvicorn uses): parsing HTTP is
security-sensitive, and llhttp refuses what RFC 9112 tells a client not to guess at (two
Content-Lengths, Content-Length with Transfer-Encoding, a bad chunk, a folded header line),
where a guess would leave the connection out of step and a later request reading an earlier
one's answer. Pure: no sockets. `dispatcher.channels.httpclient` runs it over pooled
keep-alive connections.
"""

from __future__ import annotations

from typing import NamedTuple, NoReturn

import httptools

MAX_HEAD_BYTES = 64 * 1024  # llhttp sets no bound of its own on a head's size
_FORBIDDEN = frozenset("\r\n\x00")
_VERSIONS = frozenset({"1.0", "1.1"})  # llhttp also reads "HTTP/0.9" and "HTTP/2.0" lines


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


class _Stop(Exception):
    """Raised in a callback to stop llhttp where it is; the parser's state says why."""


class ResponseParser:
    """Reads one answer. `feed` returns it once complete (None until then, and for bytes fed
    after it); `eof` says the peer closed the connection. Either raises ProtocolError on bytes
    that are not HTTP/1.1. An answer is `reusable` only when the server offered keep-alive,
    its framing was exact and no byte followed it.

    The `on_*` methods are llhttp's callbacks, not for callers."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._llhttp = httptools.HttpResponseParser(self)
        self._answer: Answer | None = None
        self.started = False  # any byte of an answer arrived
        self.reset()

    def reset(self) -> None:
        """Ready to read the next answer on the same connection. llhttp carries on from an
        answer that left the connection reusable; after any other, it starts afresh."""
        if self.started and (self._answer is None or not self._answer.reusable):
            self._llhttp = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._head_bytes = 0  # fed while no final answer's head was complete
        self._head_done = False  # a final (not 1xx) answer's head
        self._answer = None
        self._refused = ""  # why a callback refused the answer, when one did
        self.started = False

    def feed(self, data: bytes) -> Answer | None:
        """Take the next bytes; the answer once it is complete, else None."""
        self.started = True
        if self._answer is not None:
            return None  # bytes after the answer: the caller closes the connection
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._answer is None:
                raise ProtocolError(self._refused or str(exc)) from None
            self._answer = self._answer._replace(reusable=False)  # something followed it
            return self._answer
        if self._answer is None:
            if not self._head_done:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    raise ProtocolError("the answer's headers are too large")
            elif len(self._body) >= self._max_body:  # the rest is not worth waiting for
                self._answer = self._make(reusable=False)
        return self._answer

    def eof(self) -> Answer:
        """The peer closed the connection: the answer, if its body was to end that way."""
        if self._answer is None and self._head_done:
            coding = self._headers.get("transfer-encoding", "")
            chunked = coding.rsplit(",", 1)[-1].strip().lower() == "chunked"
            if not chunked and "content-length" not in self._headers:
                return self._make(reusable=False)
        raise ProtocolError("the connection closed before the answer ended")

    def _make(self, *, reusable: bool) -> Answer:
        return Answer(self._status, self._headers, bytes(self._body), reusable)

    def _refuse(self, reason: str) -> NoReturn:
        self._refused = reason
        raise _Stop

    def on_message_begin(self) -> None:
        if self._answer is not None:  # a second answer to one request: out of step
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # a trailer after a chunked body: not merged into the head (RFC 9110 6.5)
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip(" \t")

    def on_headers_complete(self) -> None:
        if self._llhttp.get_http_version() not in _VERSIONS:
            self._refuse("not an HTTP/1.x answer")
        status = self._llhttp.get_status_code()
        if status == 101:
            self._refuse("unexpected 101 Switching Protocols")
        if status < 200:
            return  # informational: the answer follows
        self._status = status
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        room = self._max_body - len(self._body)
        self._body += body[:room]
        if len(body) > room:  # cut short: the rest is not worth reading
            self._answer = self._make(reusable=False)
            raise _Stop

    def on_message_complete(self) -> None:
        if self._head_done:
            self._answer = self._make(reusable=self._llhttp.should_keep_alive())
        else:
            self._headers = {}  # a 1xx answer's headers are not the answer's
