"""The Channel role and what a send can come back with.

A channel makes one attempt and classifies the result; deciding whether and when to try again is
the deliverer's job (`dispatcher.delivery`). Channels never raise for a failed send: every
failure comes back as `SendFailed`, retryable or not, with any Retry-After the target asked for.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Protocol

from dispatcher.events import Event
from dispatcher.rates import Rate
from dispatcher.subscriptions.models import Subscription


def error_text(err: BaseException) -> str:
    """A one-line cause built from the OS/TLS error: the socket layer names addresses, not URLs."""
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return str(err.verify_message)
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason)
    if isinstance(err, socket.gaierror) and err.strerror:
        return err.strerror
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    if isinstance(err, OSError) and str(err):
        return " ".join(str(err).split())
    return type(err).__name__


def delivery_id(event: Event, subscription_name: str) -> str:
    """A delivery's stable id: the same for every retry and redelivery of this event to this
    subscription, so receivers can drop duplicates (Standard Webhooks' `webhook-id`)."""
    digest = hashlib.sha256(
        f"{event.source}\x00{event.id}\x00{subscription_name}".encode()
    ).hexdigest()
    return f"dlv_{digest[:32]}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one subscription's target, with its history so far: tries
    made, waits on a retry tier, when the first try was (epoch seconds) and what failed last.
    A delivery fresh from an event has none; one back from a retry tier carries them."""

    event: Event
    subscription: Subscription
    id: str
    attempts: int = 0
    retries: int = 0
    first_attempt_at: float | None = None
    last_error: str | None = None

    @classmethod
    def of(cls, event: Event, subscription: Subscription) -> Delivery:
        return cls(event, subscription, delivery_id(event, subscription.name))


@dataclass(frozen=True, slots=True)
class SendOk:
    """The target accepted the notification. `detail` is what it answered, for logs and
    `test-target` (a status line, never a secret)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The target did not accept it. `retryable` says whether trying again may help;
    `retry_after_s` carries the delay the target asked for, if any; `timed_out` says the target
    did not answer in time (a hanging target: not worth another try in process)."""

    reason: str
    retryable: bool
    retry_after_s: float | None = None
    timed_out: bool = False


SendResult = SendOk | SendFailed


#: `delivery.max_message_bytes`: the largest message a channel sends
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024


def too_large(where: str, size: int, max_bytes: int) -> SendFailed:
    """A message over `delivery.max_message_bytes`: permanent, since the same event and
    subscription render it the same way every time."""
    reason = f"{where}: the message is {size} bytes, more than delivery.max_message_bytes"
    return SendFailed(f"{reason} ({max_bytes})", retryable=False)


def text_bytes(*texts: str) -> int:
    """The UTF-8 size of texts (a lone surrogate counts as its 3 bytes)."""
    return sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)


def target_key(kind: str, secret: str) -> str:
    """A target's key built from what names it (a URL, a token and channel), hashed so that the
    key, which metrics and logs may see, holds no secret."""
    return f"{kind}:{hashlib.sha256(secret.encode()).hexdigest()[:32]}"


class Channel(Protocol):
    """Sends deliveries to one type of target, and says how the deliverer tells its targets
    apart (rate limits, in-flight caps and circuit breakers are per target) and how fast a
    target takes deliveries unless a subscription says otherwise."""

    def target_key(self, delivery: Delivery) -> str:
        """The key of the delivery's target (no secret in it): a Slack channel, a webhook URL,
        an SMTP server."""
        ...

    def default_rate(self, delivery: Delivery) -> Rate | None:
        """How fast the target takes messages (None: no limit), e.g. Slack's 1/s a channel."""
        ...

    async def send(self, delivery: Delivery) -> SendResult:
        """Make one attempt. Never raises for a failed send (it returns SendFailed)."""
        ...

    async def close(self) -> None:
        """Release connections; called once at shutdown."""
        ...
