"""Answers whose framing RFC 9112 tells a client not to guess at, for the parser's unit tests and
the client's tests against a raw server: after any of them the connection must not carry another
request, or a later request could read the rest of this answer as its own."""

from __future__ import annotations

#: not an answer a client may read: refused whole
REFUSED: dict[str, bytes] = {
    "two Content-Lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\nok",
    "one Content-Length twice": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"
    ),
    "a Content-Length list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
    "Content-Length and Transfer-Encoding": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "Transfer-Encoding and Content-Length": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    "a chunk size that is not hex": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"
    ),
    "a chunk size with trailing space": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n"
    ),
    "a chunk longer than its size": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n0\r\n\r\n"
    ),
    "a folded header line (obs-fold)": (
        b"HTTP/1.1 200 OK\r\nX-Note: a\r\n b\r\nContent-Length: 2\r\n\r\nok"
    ),
    "a space before the colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "bare LF line ends": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "an HTTP/2.0 status line": b"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
}

#: an answer "ok", then bytes nobody asked for: read, and the connection closed
OVERLONG: dict[str, bytes] = {
    "a body longer than declared, forging a second answer": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
    ),
    "a body longer than declared": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokay",
    "a chunked body with bytes after its end": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1"
    ),
}
