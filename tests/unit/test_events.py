"""The CloudEvents envelope: decode tables for both content modes, reasons, and hypothesis."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.events import (
    DEFAULT_MAX_EVENT_BYTES,
    MATCH_ATTRIBUTES,
    Event,
    EventLimits,
    InvalidEvent,
    decode,
    encode,
    new_event,
)
from tests.support import json_depth

DROP = object()  # an attribute to leave out
BASE = {"specversion": "1.0", "id": "e-1", "source": "/test", "type": "deployment.failed"}
BINARY = {"ce-specversion": "1.0", "ce-id": "e-1", "ce-source": "/test", "ce-type": "x.y"}


def structured(**changes: Any) -> bytes:
    document = {**BASE, **changes}
    return orjson.dumps({name: value for name, value in document.items() if value is not DROP})


def binary(**changes: Any) -> dict[str, Any]:
    """BINARY with `ce_x=...` changing header `ce-x`."""
    headers = BINARY | {name.replace("_", "-", 1): value for name, value in changes.items()}
    return {name: value for name, value in headers.items() if value is not DROP}


def ok(result: Event | InvalidEvent) -> Event:
    assert isinstance(result, Event), result
    return result


def reason(result: Event | InvalidEvent) -> str:
    assert isinstance(result, InvalidEvent), result
    return result.reason


# Structured mode


def test_minimal_structured_event() -> None:
    body = structured()
    event = ok(decode(body))
    assert (event.id, event.source, event.type) == ("e-1", "/test", "deployment.failed")
    assert event.attributes == BASE
    assert event.data is None
    assert event.body is body
    assert event.time is None
    assert event.subject is None


def test_full_structured_event() -> None:
    extensions = {name: f"{name}-value" for name in MATCH_ATTRIBUTES}
    extras = {"retries": 3, "ratio": 0.5, "beta": True, "note": "x"}
    body = structured(
        time="2026-11-23T08:30:00.123456+01:00",
        subject="v1.4.2",
        datacontenttype="application/json",
        dataschema="https://example.com/schema",
        data={"git_ref": "0123abc", "list": [1, None]},
        **extensions,
        **extras,
    )
    event = ok(decode(body, {"x-other": 1}, "application/cloudevents+json"))
    assert event.data == {"git_ref": "0123abc", "list": [1, None]}
    assert "data" not in event.attributes
    assert event.time == "2026-11-23T08:30:00.123456+01:00"
    assert event.subject == "v1.4.2"
    assert event.attr("dataschema") == "https://example.com/schema"
    assert {name: event.attr(name) for name in MATCH_ATTRIBUTES} == extensions
    assert {name: event.attributes[name] for name in extras} == extras


def test_structured_body_bytes_are_kept_as_they_came() -> None:
    body = b' {\n "type" : "a.b", "id":"\\u00e9", "source":"/s",\t"specversion":"1.0" ,"data":[]}\n'
    event = ok(decode(body))
    assert event.body is body
    assert event.id == "\u00e9"
    assert event.data == []


def test_structured_data_base64_is_not_data() -> None:
    event = ok(decode(structured(data_base64=base64.b64encode(b"\x00\xff").decode())))
    assert event.data is None
    assert "data_base64" not in event.attributes


def test_null_attributes_are_absent() -> None:
    event = ok(decode(structured(subject=None, project=None, data=None, data_base64="AA==")))
    assert event.attributes == BASE
    assert event.data is None


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-23T08:30:00Z",
        "2026-11-23t08:30:00z",
        "2024-02-29T23:59:60.5-05:30",
        "0000-01-01T00:00:00+23:59",
        "2026-12-31T00:00:00.123456789Z",
    ],
)
def test_valid_times(time: str) -> None:
    assert ok(decode(structured(time=time))).time == time


def test_binary_headers_are_ignored_with_a_cloudevents_content_type() -> None:
    headers = binary(ce_type="other.type")
    event = ok(decode(structured(), headers, "application/cloudevents+json; charset=utf-8"))
    assert event.type == "deployment.failed"


def test_headers_without_specversion_mean_structured_mode() -> None:
    headers = {"ce-type": "other.type", "x-death": [{"count": 1}]}
    assert ok(decode(structured(), headers)).type == "deployment.failed"


# Binary mode


@pytest.mark.parametrize("prefix", ["ce-", "ce_", "cloudEvents:", "cloudEvents_", "CE-", "Ce_"])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_binary_mode_with_each_prefix(prefix: str, as_bytes: bool) -> None:
    attributes = {**BASE, "project": "web", "Subject": "v1"}
    headers = {
        prefix + name: value.encode() if as_bytes else value for name, value in attributes.items()
    }
    headers["x-unrelated"] = b"\xff"
    event = ok(decode(b'{"a": 1}', headers, "application/json"))
    assert event.attributes == {
        **BASE,
        "project": "web",
        "subject": "v1",
        "datacontenttype": "application/json",
    }
    assert event.data == {"a": 1}
    assert orjson.loads(event.body) == {**event.attributes, "data": {"a": 1}}


@pytest.mark.parametrize(
    ("body", "content_type", "data", "member"),
    [
        (b'{"a": [1, 2]}', "application/json", {"a": [1, 2]}, "data"),
        (b'{"a": 1}', "Application/JSON; charset=utf-8", {"a": 1}, "data"),
        (b"[1]", "text/json", [1], "data"),
        (b'"s"', "application/vnd.acme+json", "s", "data"),
        (b"12", None, 12, "data"),
        (b"{not json", None, "{not json", "data"),
        (b"caf\xc3\xa9", None, "caf\u00e9", "data"),
        (b'{"a": 1}', "text/plain", '{"a": 1}', "data"),
        (b"\x00\xff\xfe", None, None, "data_base64"),
        (b"\x00\xff\xfe", "application/octet-stream", None, "data_base64"),
        (b"", "application/json", None, None),
        (b"", None, None, None),
    ],
)
def test_binary_bodies(
    body: bytes, content_type: str | None, data: Any, member: str | None
) -> None:
    event = ok(decode(body, BINARY, content_type))
    assert event.data == data
    encoded = orjson.loads(event.body)
    assert encoded.get("datacontenttype") == content_type
    if member == "data_base64":
        assert base64.b64decode(encoded["data_base64"]) == body
        assert "data" not in encoded
    elif member == "data":
        assert encoded["data"] == data
    else:
        assert "data" not in encoded
        assert "data_base64" not in encoded


def test_binary_datacontenttype_header_wins_over_the_amqp_content_type() -> None:
    headers = binary(ce_datacontenttype=b"text/plain")
    event = ok(decode(b"[1]", headers, "application/json"))
    assert event.data == "[1]"
    assert event.attr("datacontenttype") == "text/plain"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=UTC), "2026-01-02T03:04:05.000600Z"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # noqa: DTZ001 AMQP timestamps are UTC
        (
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05+02:00",
        ),
    ],
)
def test_binary_timestamp_headers_become_rfc3339(value: datetime, expected: str) -> None:
    assert ok(decode(b"", binary(ce_time=value))).time == expected


def test_binary_void_header_is_absent_and_scalars_are_kept() -> None:
    headers = binary(ce_subject=None, ce_count=3, ce_ratio=0.5, ce_flag=False)
    event = ok(decode(b"", headers))
    assert event.attributes == {**BASE, "type": "x.y", "count": 3, "ratio": 0.5, "flag": False}


def test_binary_event_reencodes_to_the_same_event() -> None:
    event = ok(decode(b"\x00\xff", binary(ce_project="web", ce_n=1)))
    again = ok(decode(event.body))
    assert again.attributes == event.attributes
    assert orjson.loads(again.body)["data_base64"] == "AP8="


# Invalid messages: one row per reason


def _long(text: str) -> str:
    """How a reason shows a long piece of input."""
    return repr(text[:79] + "\u2026")


INVALID = [
    (b"", None, None, "body is empty"),
    (b"\xff{}", None, None, "body is not valid UTF-8"),
    (b"[]", None, None, "body is a JSON array, expected an object"),
    (b'"x"', None, None, "body is a JSON string, expected an object"),
    (b"1.5", None, None, "body is a JSON number, expected an object"),
    (b"true", None, None, "body is a JSON boolean, expected an object"),
    (b"null", None, None, "body is a JSON null, expected an object"),
    (
        structured(Type="a"),
        None,
        None,
        "'Type' is not a valid attribute name: use lower-case letters a-z and digits only",
    ),
    (
        structured(**{"my-ext": 1}),
        None,
        None,
        "'my-ext' is not a valid attribute name: use lower-case letters a-z and digits only",
    ),
    (structured(specversion=DROP), None, None, "missing required attribute 'specversion'"),
    (
        structured(specversion=1.0),
        None,
        None,
        "attribute 'specversion' must be the string '1.0', got float",
    ),
    (
        structured(specversion="0.3"),
        None,
        None,
        "unsupported specversion '0.3', expected '1.0'",
    ),
    (structured(id=DROP), None, None, "missing required attribute 'id'"),
    (structured(source=None), None, None, "missing required attribute 'source'"),
    (structured(type=DROP), None, None, "missing required attribute 'type'"),
    (structured(id=7), None, None, "attribute 'id' must be a non-empty string, got int"),
    (
        structured(source=""),
        None,
        None,
        "attribute 'source' must be a non-empty string, got an empty string",
    ),
    (
        structured(type=["a"]),
        None,
        None,
        "attribute 'type' must be a non-empty string, got array",
    ),
    (
        structured(type="deployment failed"),
        None,
        None,
        "attribute 'type' must not contain whitespace or control characters: 'deployment failed'",
    ),
    (
        structured(type="a\nb"),
        None,
        None,
        "attribute 'type' must not contain whitespace or control characters: 'a\\nb'",
    ),
    (
        structured(type="a\u00a0b"),
        None,
        None,
        "attribute 'type' must not contain whitespace or control characters: 'a\\xa0b'",
    ),
    (
        structured(type="a\x7fb"),
        None,
        None,
        "attribute 'type' must not contain whitespace or control characters: 'a\\x7fb'",
    ),
    (
        structured(type="x" * 256),
        None,
        None,
        "attribute 'type' is 256 bytes long, the limit is 255 bytes",
    ),
    (
        structured(type="\u00e9" * 128),
        None,
        None,
        "attribute 'type' is 256 bytes long, the limit is 255 bytes",
    ),
    (
        structured(time=1700000000),
        None,
        None,
        "attribute 'time' must be an RFC 3339 timestamp string, got int",
    ),
    (
        structured(subject=1),
        None,
        None,
        "attribute 'subject' must be a string, got int",
    ),
    (
        structured(datacontenttype=True),
        None,
        None,
        "attribute 'datacontenttype' must be a string, got bool",
    ),
    (
        structured(dataschema={}),
        None,
        None,
        "attribute 'dataschema' must be a string, got object",
    ),
    (structured(project=1), None, None, "attribute 'project' must be a string, got int"),
    (structured(envtype=[]), None, None, "attribute 'envtype' must be a string, got array"),
    (structured(actor=False), None, None, "attribute 'actor' must be a string, got bool"),
    (
        structured(ext={"a": 1}),
        None,
        None,
        "attribute 'ext' must be a string, number or boolean, got object",
    ),
    (
        structured(ext=[1]),
        None,
        None,
        "attribute 'ext' must be a string, number or boolean, got array",
    ),
    (
        structured(data=1, data_base64="AA=="),
        None,
        None,
        "event has both 'data' and 'data_base64', expected at most one",
    ),
    (
        structured(data_base64=5),
        None,
        None,
        "'data_base64' must be a base64 string, got int",
    ),
    (structured(data_base64="not base64!"), None, None, "'data_base64' is not valid base64"),
    (structured(data_base64="\u00e9"), None, None, "'data_base64' is not valid base64"),
    (
        b"",
        binary(ce_type=b"\xff"),
        None,
        "header 'ce-type' is not valid UTF-8",
    ),
    (
        b"",
        binary(**{"ce_my-ext": "x"}),
        None,
        "header 'ce-my-ext' does not name a valid attribute: "
        "use lower-case letters a-z and digits only",
    ),
    (
        b"",
        binary(ce_data="x"),
        None,
        "header 'ce-data' is not allowed: in binary mode the body is the data",
    ),
    (
        b"",
        {**BINARY, "cloudEvents:ID": "e-2"},
        None,
        "attribute 'id' is set twice: 'ce-id', 'cloudEvents:ID'",
    ),
    (b"", binary(ce_specversion=None), None, "missing required attribute 'specversion'"),
    (
        b"",
        binary(ce_specversion=b"0.3"),
        None,
        "unsupported specversion '0.3', expected '1.0'",
    ),
    (b"", binary(ce_id=1), None, "attribute 'id' must be a non-empty string, got int"),
    (
        b"",
        binary(ce_datacontenttype=5),
        None,
        "attribute 'datacontenttype' must be a string, got int",
    ),
    (b"", binary(ce_project=[]), None, "attribute 'project' must be a string, got array"),
    (
        b"",
        binary(ce_x=Decimal("1.5")),
        None,
        "attribute 'x' must be a string, number or boolean, got Decimal",
    ),
    (
        b"",
        binary(ce_x={"a": 1}),
        None,
        "attribute 'x' must be a string, number or boolean, got object",
    ),
    (b"", binary(ce_x=float("nan")), None, "attribute 'x' must be a finite number, got nan"),
    (
        structured(type="a " + "x" * 200),
        None,
        None,
        "attribute 'type' must not contain whitespace or control characters: "
        + _long("a " + "x" * 200),
    ),
    (
        structured(**{"X" * 100: 1}),
        None,
        None,
        f"{_long('X' * 100)} is not a valid attribute name: "
        "use lower-case letters a-z and digits only",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "content_type", "expected"),
    INVALID,
    ids=[f"{i}:{row[3][:60]}" for i, row in enumerate(INVALID)],
)
def test_invalid_reason(
    body: bytes, headers: dict[str, Any] | None, content_type: str | None, expected: str
) -> None:
    assert reason(decode(body, headers, content_type)) == expected


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-23T08:30:00",
        "2026-11-23",
        "2026-11-23 08:30:00Z",
        "2026-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:00+0100",
        "2026-01-01T00:00:00.Z",
        "\uff12026-01-01T00:00:00Z",  # a full-width digit
        "yesterday",
    ],
)
def test_invalid_time(time: str) -> None:
    expected = f"attribute 'time' must be an RFC 3339 timestamp with an offset or Z, got {time!r}"
    assert reason(decode(structured(time=time))) == expected
    assert reason(decode(b"", binary(ce_time=time.encode()))) == expected


@pytest.mark.parametrize(
    ("body", "headers", "content_type", "prefix"),
    [
        (b"{", None, None, "body is not valid JSON: "),
        (b'{"a": 1} x', None, None, "body is not valid JSON: "),
        (b"{", BINARY, "application/json", "body is not valid JSON ('application/json'): "),
        (b"\xff", BINARY, "text/json", "body is not valid JSON ('text/json'): "),
        (b"", binary(ce_x=2**64), None, "event cannot be encoded as JSON: "),
        (b"", binary(ce_subject="\ud800"), None, "event cannot be encoded as JSON: "),
    ],
)
def test_invalid_reason_with_parser_message(
    body: bytes, headers: dict[str, Any] | None, content_type: str | None, prefix: str
) -> None:
    text = reason(decode(body, headers, content_type))
    assert text.startswith(prefix)
    assert len(text) > len(prefix)


def test_size_limit_is_checked_before_parsing() -> None:
    assert reason(decode(b"\xff" * 11, limits=EventLimits(max_event_bytes=10))) == (
        "message of 11 bytes exceeds the limit of 10 bytes (broker.max_event_bytes)"
    )
    body = structured()
    assert ok(decode(body, limits=EventLimits(max_event_bytes=len(body)))).body is body
    assert reason(decode(body, BINARY, limits=EventLimits(max_event_bytes=len(body) - 1))) == (
        f"message of {len(body)} bytes exceeds the limit of {len(body) - 1} bytes"
        " (broker.max_event_bytes)"
    )
    too_big = b" " * DEFAULT_MAX_EVENT_BYTES + body
    assert reason(decode(too_big)).startswith(f"message of {len(too_big)} bytes exceeds")


def _nested(depth: int) -> bytes:
    """An event whose document is `depth` levels deep: itself, then `depth - 1` levels of data."""
    inner = depth - 1
    return structured(data=DROP)[:-1] + b',"data":' + b"[" * inner + b"]" * inner + b"}"


def test_data_nested_deeper_than_json_encodes_is_refused() -> None:
    # found by fuzz/fuzz_events_structured.py (corpus: deep-data.json): orjson decodes 1024
    # levels but encodes 254, and rendering such data for Slack, email or the log recursed past
    # Python's limit. broker.max_data_depth refuses it (64 by default, at most 200 allowed).
    deepest = EventLimits(max_data_depth=200)
    event = ok(decode(_nested(201), limits=deepest))
    assert encode({**event.attributes, "data": event.data})  # what renderers and tiers do
    for depth in (255, 1000):
        assert reason(decode(_nested(depth), limits=deepest)) == (
            "data is nested more than 200 levels deep (broker.max_data_depth)"
        )
    wide = structured(data=[[]] * 300)  # many brackets, shallow: decoded as ever
    assert ok(decode(wide)).data == [[]] * 300


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\xff" * 900, BINARY),  # base64 makes data 4/3 as long
        (b"", binary(ce_note="\x00" * 200)),  # headers do not count in the body, and escape
    ],
)
def test_a_binary_event_must_fit_the_limit_in_the_form_it_is_kept(
    body: bytes, headers: dict[str, Any]
) -> None:
    # found by fuzz/fuzz_events_binary.py (corpus: grows-past-the-limit): the event was taken,
    # then refused as too large when a retry tier handed its structured form back
    text = reason(decode(body, headers, limits=EventLimits(max_event_bytes=1024)))
    assert text.startswith("event of ")
    assert text.endswith(
        " bytes as structured JSON exceeds the limit of 1024 bytes (broker.max_event_bytes)"
    )
    event = ok(decode(body, headers, limits=EventLimits(max_event_bytes=2048)))
    assert (
        ok(
            decode(
                event.body,
                None,
                "application/cloudevents+json",
                limits=EventLimits(max_event_bytes=2048),
            )
        )
        == event
    )


# Producers: new_event and encode


@pytest.mark.parametrize(
    "event",
    [
        new_event("deployment.failed", "urn:acme:deployer"),
        new_event(
            "deployment.failed",
            "urn:acme:deployer",
            data={"git_ref": "0123abc", "duration": 40},
            subject="v1.4.2",
            id="0b6f1c1e",
            time=datetime(2026, 11, 23, 8, 30, tzinfo=UTC),
            organization="acme",
            project="web",
            envtype="PRODUCTION",
            actor=None,  # type: ignore[arg-type]  # None extensions are left out
        ),
        new_event(
            "parameter.created",
            "/svc",
            data=["a"],
            time=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-3))),
        ),
    ],
)
def test_new_event_round_trips(event: dict[str, Any]) -> None:
    body = encode(event)
    decoded = ok(decode(body))
    assert decoded.body == body
    assert decoded.data == event.get("data")
    assert dict(decoded.attributes) == {k: v for k, v in event.items() if k != "data"}


# Hypothesis: decode never raises


def _header_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.text(st.characters(categories=["Cs", "Cc", "Zs", "Lu", "Nd"])),
        st.binary(),
        st.sampled_from(["1.0", b"1.0", "a.b", "2026-01-01T00:00:00Z", "application/json"]),
        st.decimals(),
        st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5))])),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=5,
    )


HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "ce-specversion",
            "ce_specversion",
            "cloudEvents:specversion",
            "ce-id",
            "ce_source",
            "cloudEvents_type",
            "CE-Time",
            "ce-datacontenttype",
            "ce-project",
            "ce-ext",
            "ce-data",
            "ce-",
            "ce-Bad-Name",
            "x-death",
        ]
    ),
    st.text(max_size=20),
)
CONTENT_TYPES = (
    st.none()
    | st.text(max_size=30)
    | st.sampled_from(
        ["application/json", "text/plain", "application/cloudevents+json", "x+json; a=b"]
    )
)


def _check_result(result: Event | InvalidEvent) -> None:
    assert isinstance(result, Event | InvalidEvent)
    if isinstance(result, InvalidEvent):
        assert result.reason
        assert "\n" not in result.reason
        return
    again = ok(decode(result.body, limits=EventLimits(max_event_bytes=len(result.body))))
    assert (again.id, again.source, again.type) == (result.id, result.source, result.type)
    assert again.attributes == result.attributes


@settings(deadline=None)
@given(
    body=st.binary(max_size=200) | st.sampled_from([structured(), b"{}", b"[]", b"\xff"]),
    headers=st.none() | st.dictionaries(HEADER_NAMES, _header_values(), max_size=8),
    content_type=CONTENT_TYPES,
)
def test_decode_never_raises(
    body: bytes, headers: dict[str, Any] | None, content_type: str | None
) -> None:
    _check_result(decode(body, headers, content_type))


@settings(deadline=None)
@given(
    body=st.binary(max_size=100) | st.sampled_from([b'{"a": 1}', b"text", b"[1"]),
    extra=st.dictionaries(HEADER_NAMES, _header_values(), max_size=4),
    content_type=CONTENT_TYPES,
)
def test_decode_never_raises_in_binary_mode(
    body: bytes, extra: dict[str, Any], content_type: str | None
) -> None:
    _check_result(decode(body, {**BINARY, **extra}, content_type))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
ATTRIBUTE_NAMES = st.sampled_from(
    [*BASE, "time", "subject", "data", "data_base64", *MATCH_ATTRIBUTES, "ext", "Bad"]
) | st.text(max_size=10)


@settings(deadline=None)
@given(changes=st.dictionaries(ATTRIBUTE_NAMES, JSON_VALUES, max_size=4))
def test_structured_documents_decode_to_their_attributes(changes: dict[str, Any]) -> None:
    body = structured(**changes)
    result = decode(body)
    _check_result(result)
    if isinstance(result, Event):
        document = orjson.loads(body)
        assert result.body is body
        assert result.data == document.get("data")
        assert result.attributes == {
            name: value
            for name, value in document.items()
            if value is not None and name not in ("data", "data_base64")
        }


# Hypothesis: the limits (EventLimits) hold for every event decode lets through


LIMITS = st.builds(
    EventLimits,
    max_event_bytes=st.integers(1, 2048),
    max_attributes=st.integers(1, 10),
    max_attribute_bytes=st.integers(1, 40),
    max_data_depth=st.integers(1, 5),
)
ATTRIBUTE_VALUES = st.one_of(
    st.text(max_size=50),
    st.text(alphabet="\u00e9\U0001f680a", max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
)
LIMIT_KEYS = (
    "broker.max_event_bytes",
    "broker.max_attributes",
    "broker.max_attribute_bytes",
    "broker.max_data_depth",
)


def _within(result: Event | InvalidEvent, size: int, limits: EventLimits) -> None:
    """An event is within every limit; a refusal is one line, short, and names a limit when it
    is about one."""
    if isinstance(result, InvalidEvent):
        assert "\n" not in result.reason
        assert len(result.reason) < 300
        fixed = "the limit is 255 bytes" in result.reason  # the type's: AMQP's, not a setting
        if not fixed and any(word in result.reason for word in ("limit", "nested more than")):
            assert any(key in result.reason for key in LIMIT_KEYS), result.reason
        return
    assert size <= limits.max_event_bytes
    assert len(result.attributes) <= limits.max_attributes
    for name, value in result.attributes.items():
        if isinstance(value, str):
            assert len(value.encode("utf-8", "surrogatepass")) <= limits.max_attribute_bytes, name
        assert len(name) <= limits.max_attribute_bytes
    assert json_depth(result.data) <= limits.max_data_depth


@settings(deadline=None)
@given(
    changes=st.dictionaries(ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, max_size=12),
    data=JSON_VALUES,
    limits=LIMITS,
)
def test_structured_events_are_within_the_limits_or_refused_saying_which(
    changes: dict[str, Any], data: Any, limits: EventLimits
) -> None:
    body = structured(**{**changes, "data": data})
    _within(decode(body, limits=limits), len(body), limits)


@settings(deadline=None)
@given(
    extra=st.dictionaries(
        st.sampled_from(["subject", "project", "ext", "n", "a1", "zz"]), ATTRIBUTE_VALUES
    ),
    data=JSON_VALUES,
    limits=LIMITS,
)
def test_binary_events_are_within_the_limits_or_refused_saying_which(
    extra: dict[str, Any], data: Any, limits: EventLimits
) -> None:
    body = orjson.dumps(data)
    headers = {**BINARY, **{f"ce-{name}": value for name, value in extra.items()}}
    _within(decode(body, headers, "application/json", limits=limits), len(body), limits)


@settings(deadline=None)
@given(value=JSON_VALUES)
def test_default_limits_let_every_ordinary_event_through(value: Any) -> None:
    """The defaults refuse nothing hypothesis calls ordinary (small, shallow, few attributes)."""
    ok(decode(structured(data=value)))
    ok(decode(orjson.dumps(value), BINARY, "application/json"))
