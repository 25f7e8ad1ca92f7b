"""The AMQP headers dispatcher writes on the messages it publishes: deliveries waiting on a
retry tier, deliveries sent back by `dead-letters replay`, and dead letters.

A message of kind `delivery` carries one event (its structured-mode JSON as the body,
`application/cloudevents+json`, routing key = the event type, message id = the delivery id) and
names the one subscription it is for. A dead letter of kind `invalid-event` is the original
message, headers and all, with the reason added.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import encode

KIND = "x-dispatcher-kind"  # "delivery" or "invalid-event"
REASON = "x-dispatcher-reason"  # dead letters only: one of REASONS
SUBSCRIPTION = "x-dispatcher-subscription"
TARGET_TYPE = "x-dispatcher-target-type"
DELIVERY_ID = "x-dispatcher-delivery-id"
EVENT_ID = "x-dispatcher-event-id"
ATTEMPTS = "x-dispatcher-attempts"  # tries made so far (int)
RETRIES = "x-dispatcher-retries"  # waits on a retry tier so far (int): picks the next tier
FIRST_ATTEMPT_AT = "x-dispatcher-first-attempt-at"  # RFC 3339, UTC
LAST_ATTEMPT_AT = "x-dispatcher-last-attempt-at"
LAST_ERROR = "x-dispatcher-last-error"  # secrets removed
TIER = "x-dispatcher-tier"  # the delay the delivery waited, e.g. "10m"
FAILED_AT = "x-dispatcher-failed-at"  # when it was dead-lettered
REPLAYED_AT = "x-dispatcher-replayed-at"  # set by `dead-letters replay`

KIND_DELIVERY = "delivery"
KIND_INVALID = "invalid-event"

#: why a message was dead-lettered
INVALID_EVENT = "invalid_event"
PERMANENT_FAILURE = "permanent_failure"
RETRIES_EXHAUSTED = "retries_exhausted"
EXPIRED = "expired"
TARGET_DISABLED = "target_disabled"
SUBSCRIPTION_GONE = "subscription_gone"  # its subscription was removed or disabled meanwhile
FANOUT_EXCEEDED = "fanout_exceeded"  # its event matched more than delivery.max_fanout
REASONS = (
    INVALID_EVENT,
    PERMANENT_FAILURE,
    RETRIES_EXHAUSTED,
    EXPIRED,
    TARGET_DISABLED,
    SUBSCRIPTION_GONE,
    FANOUT_EXCEEDED,
)

#: every header above: what a replay or a retry rewrites, and what is not the producer's
OWN_PREFIX = "x-dispatcher-"


def republishable(value: Any) -> Any:
    """A header value that came in, as pamqp can encode it to go out again. pamqp decodes more
    than it encodes: a long string that is not UTF-8 comes as bytes (it goes back as a byte
    array, the same bytes), and a double too large for the single float pamqp writes or a decimal
    beyond 31 bits do not fit (they go back as their text)."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, dict):
        return {key: republishable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [republishable(item) for item in value]
    try:
        encode.encode_table_value(value)
    except (TypeError, OverflowError, struct.error):  # pamqp's, and struct.pack's out of range
        return str(value)
    return value
