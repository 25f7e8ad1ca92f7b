"""The subscriptions API, `/api/v1` on the admin server, on when `admin.token` is set.

Every request carries `Authorization: Bearer <admin.token>` (compared in constant time; 401
otherwise). Bodies are the YAML subscription shape, validated by the same models as the config
file: 422 lists every problem with its field path, 409 says a name is taken, 413 a body is too
large, 404 an id or name is unknown. A target URL whose host is an address the network guard
refuses (`delivery.allowed_networks`; a literal address or localhost) is a 422 that names the
rule; a name is judged each time it is resolved, at send time. A secret (a token, a signing
key, a webhook URL, a custom header value) is never returned: it shows as `****` and its last
4 characters, and a PATCH that leaves it out (or sends that same mask back) keeps it.

    POST   /api/v1/subscriptions               create (201, with its id)
    GET    /api/v1/subscriptions               list: ?event_type= &target_type= &enabled=
                                               &label=key=value &owner= &limit= &cursor=
    GET    /api/v1/subscriptions/{id}          one, by id or unique name
    PATCH  /api/v1/subscriptions/{id}          a JSON merge patch of its body (RFC 7386)
    DELETE /api/v1/subscriptions/{id}          204
    POST   /api/v1/subscriptions/{id}/test     one real attempt with a sample event
    POST   /api/v1/events/match                which subscriptions an event reaches, and why not
    GET    /api/v1/openapi.json                this API as an OpenAPI 3.1 document

Writes need a store that people edit (`store.url`); with the config file's subscriptions they
answer 405 and say so. Every running process sees a change within `store.poll_every`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, get_args
from urllib.parse import urlsplit

import orjson
import structlog
from aiohttp import web
from pydantic import ValidationError

from dispatcher.channels.base import SendFailed, SendResult
from dispatcher.errors import DispatcherError
from dispatcher.events import DEFAULT_LIMITS, EventLimits, InvalidEvent, decode
from dispatcher.netguard import NetworkGuard
from dispatcher.settings import API_MAX_BODY_BYTES, API_MAX_PAGE
from dispatcher.subscriptions.bodies import join_secrets, split_secrets
from dispatcher.subscriptions.explain import explain
from dispatcher.subscriptions.models import Subscription, Target
from dispatcher.subscriptions.store import FileSubscription

log = structlog.get_logger(__name__)

#: Slack's incoming-webhook hosts: a `slack_webhook` target elsewhere is refused (as Scalingo)
SLACK_WEBHOOK_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
MASK = "****"
#: the `type` of each kind of target (pydantic names it in a validation error's path)
TARGET_TYPES = frozenset(
    get_args(field.annotation)[0]
    for model in get_args(get_args(Target)[0])
    for name, field in model.model_fields.items()
    if name == "type"
)

Tester = Callable[[Subscription], Awaitable[SendResult]]


class Stored(Protocol):
    """A subscription as a store keeps it (read-only)."""

    @property
    def id(self) -> str: ...

    @property
    def subscription(self) -> Subscription: ...

    @property
    def owner(self) -> str | None: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def created_at(self) -> Any: ...

    @property
    def updated_at(self) -> Any: ...


def masked(secret: str) -> str:
    """`****` and the last 4 characters (fewer of a short secret)."""
    return MASK + secret[-4:] if len(secret) >= 12 else MASK


def body_of(subscription: Subscription) -> dict[str, Any]:
    """The subscription in its YAML shape (the fields it was given), each secret masked."""
    body, secrets = split_secrets(subscription)
    shown: dict[str, Any] = join_secrets(body, {at: masked(v) for at, v in secrets.items()})
    return shown


def view(stored: Stored) -> dict[str, Any]:
    """A subscription as the API (and `dispatcher subscriptions -o json`) shows it: id, body
    (secrets masked), owner, labels, times."""
    return {
        "id": stored.id,
        **body_of(stored.subscription),
        "owner": stored.owner,
        "labels": dict(stored.labels),
        "created_at": stored.created_at,
        "updated_at": stored.updated_at,
    }


def problems_of(exc: ValidationError) -> list[dict[str, str]]:
    """Each problem with its field path (`target.url`, as the body is written: without the
    target type pydantic puts in the path), never the rejected value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = list(error["loc"])
        if len(loc) > 1 and loc[0] == "target" and loc[1] in TARGET_TYPES:
            del loc[1]
        field = ".".join(str(part) for part in loc) or "(body)"
        problems.append({"field": field, "message": error["msg"]})
    return problems


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=status, dumps=lambda v: orjson.dumps(v).decode())


def _slack_problem(body: Mapping[str, Any]) -> str | None:
    target = body.get("target")
    if isinstance(target, Mapping) and target.get("type") == "slack_webhook":
        url = target.get("url")
        if isinstance(url, str) and not url.startswith(MASK):
            parts = urlsplit(url)
            if parts.scheme != "https" or parts.hostname not in SLACK_WEBHOOK_HOSTS:
                return "a slack_webhook URL must be https://hooks.slack.com/..."
    return None


def _drop_masks(patch: Any, current: Any) -> Any:
    """A patch with every value that is the current value's mask left out (a client that sends
    back what GET showed keeps the secret)."""
    if isinstance(patch, dict) and isinstance(current, dict):
        out = {}
        for key, value in patch.items():
            if isinstance(value, str) and value.startswith(MASK) and value == current.get(key):
                continue
            out[key] = _drop_masks(value, current.get(key))
        return out
    return patch


def target_url_refusal(body: Mapping[str, Any], guard: NetworkGuard) -> str | None:
    """Why a body's `target.url` may not be stored: its host is an address the guard refuses
    (a literal one, or localhost), as the config loader refuses it. A name is judged when
    delivery resolves it. Shared by the API and `dispatcher subscriptions`."""
    target = body.get("target")
    url = target.get("url") if isinstance(target, Mapping) else None
    refused = guard.host_refusal(url) if isinstance(url, str) else None
    return None if refused is None else f"refused: {refused}"


class Api:
    def __init__(
        self,
        store: Any,
        *,
        token: str,
        tester: Tester,
        limits: EventLimits = DEFAULT_LIMITS,
        max_body_bytes: int = API_MAX_BODY_BYTES,
        max_page: int = API_MAX_PAGE,
        target_types: frozenset[str] = TARGET_TYPES,
        guard: NetworkGuard | None = None,
    ) -> None:
        """`target_types`: the kinds of target this deployment can deliver to (email needs the
        config's `smtp:`); a subscription to another is refused, or the daemons would refuse the
        whole set on their next reload. `limits` are the broker's: `match` decodes an event as
        the consumer would. `guard`: where targets may connect (default: public addresses
        only)."""
        self._guard = guard or NetworkGuard()
        self._store = store
        self._target_types = target_types
        self._token = hashlib.sha256(token.encode()).digest()  # equal lengths: no length leak
        self._tester = tester
        self._limits = limits
        self._max_body_bytes = max_body_bytes
        self._max_page = max_page
        self._editable = hasattr(store, "create")

    @web.middleware
    async def auth(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        digest = hashlib.sha256(token.encode()).digest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, self._token):
            response = _error(
                401, "unauthorized", "a valid `Authorization: Bearer` token is needed"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="dispatcher"'
            return response
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            limit = self._max_body_bytes
            why = f"the body is larger than {limit} bytes (admin.max_body_bytes)"
            return _error(413, "too_large", why)

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.auth])  # bodies: `_body`
        app.router.add_post("/subscriptions", self.create)
        app.router.add_get("/subscriptions", self.list)
        app.router.add_get("/subscriptions/{id}", self.get)
        app.router.add_patch("/subscriptions/{id}", self.patch)
        app.router.add_delete("/subscriptions/{id}", self.delete)
        app.router.add_post("/subscriptions/{id}/test", self.test)
        app.router.add_post("/events/match", self.match)
        app.router.add_get("/openapi.json", self.openapi)
        return app

    async def openapi(self, _request: web.Request) -> web.Response:
        from dispatcher.admin.openapi import document

        return web.json_response(document(self._max_page), dumps=_dumps)

    # --- the routes

    async def create(self, request: web.Request) -> web.Response:
        if not self._editable:
            return self._read_only()
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        if not isinstance(body, dict):
            return _error(422, "invalid", "the body must be a JSON object (a subscription)")
        owner, labels = body.pop("owner", None), body.pop("labels", None)
        problem = (
            self._meta_problem(owner, labels) or _slack_problem(body) or self._type_problem(body)
        )
        if problem:
            return _error(422, "invalid", problem)
        if refused := self._host_refusal(body):
            return refused
        try:
            stored = await self._store.create(body, owner=owner, labels=labels)
        except ValidationError as exc:
            return _error(
                422, "invalid", "the subscription is not valid", problems=problems_of(exc)
            )
        except DispatcherError as exc:
            return self._store_error(exc)
        return web.json_response(view(stored), status=201, dumps=_dumps)

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            return _error(422, "invalid", "limit must be a number", field="limit")
        if not 1 <= limit <= self._max_page:
            why = f"limit must be 1 to {self._max_page} (admin.max_page_size)"
            return _error(422, "invalid", why, field="limit")
        enabled: bool | None = None
        if "enabled" in query:
            if query["enabled"] not in ("true", "false"):
                return _error(422, "invalid", "enabled must be true or false", field="enabled")
            enabled = query["enabled"] == "true"
        label: tuple[str, str] | None = None
        if "label" in query:
            key, sep, value = query["label"].partition("=")
            if not sep or not key:
                return _error(422, "invalid", "label must be key=value", field="label")
            label = (key, value)
        if not self._editable:
            return await self._list_loaded(query, enabled, label, limit)
        try:
            items, cursor = await self._store.list(
                event_type=query.get("event_type"),
                target_type=query.get("target_type"),
                enabled=enabled,
                label=label,
                owner=query.get("owner"),
                after=query.get("cursor"),
                limit=limit,
            )
        except ValueError as exc:
            return _error(422, "invalid", str(exc), field="cursor")
        views = [view(item) for item in items]
        return web.json_response({"items": views, "next_cursor": cursor}, dumps=_dumps)

    async def get(self, request: web.Request) -> web.Response:
        found = await self._find(request.match_info["id"])
        if found is None:
            return self._not_found(request)
        return web.json_response(view(found), dumps=_dumps)

    async def patch(self, request: web.Request) -> web.Response:
        if not self._editable:
            return self._read_only()
        patch = await self._json(request)
        if isinstance(patch, web.Response):
            return patch
        if not isinstance(patch, dict):
            return _error(422, "invalid", "a merge patch must be a JSON object")
        ident = request.match_info["id"]
        current = await self._store.get(ident)
        if current is None:
            return self._not_found(request)
        patch = _drop_masks(patch, body_of(current.subscription))
        meta: dict[str, Any] = {}
        for key in ("owner", "labels"):
            if key in patch:
                meta[key] = patch.pop(key)
        problem = (
            self._meta_problem(meta.get("owner"), meta.get("labels"))
            or _slack_problem(patch)
            or self._type_problem(patch)
        )
        if problem:
            return _error(422, "invalid", problem)
        if refused := self._host_refusal(patch):
            return refused
        try:
            stored = await self._store.update(current.id, patch, **meta)
        except ValidationError as exc:
            return _error(
                422, "invalid", "the subscription is not valid", problems=problems_of(exc)
            )
        except DispatcherError as exc:
            return self._store_error(exc)
        return web.json_response(view(stored), dumps=_dumps)

    async def delete(self, request: web.Request) -> web.Response:
        if not self._editable:
            return self._read_only()
        found = await self._store.get(request.match_info["id"])
        if found is None or not await self._store.delete(found.id):
            return self._not_found(request)
        return web.Response(status=204)

    async def test(self, request: web.Request) -> web.Response:
        found = await self._find(request.match_info["id"])
        if found is None:
            return self._not_found(request)
        result = await self._tester(found.subscription)
        body: dict[str, Any] = {"subscription": found.subscription.name}
        if isinstance(result, SendFailed):
            body.update(ok=False, retryable=result.retryable, reason=result.reason)
        else:
            body.update(ok=True, detail=result.detail)
        return web.json_response(body, dumps=_dumps)

    async def match(self, request: web.Request) -> web.Response:
        raw = await self._body(request)
        event = decode(raw, limits=self._limits)
        if isinstance(event, InvalidEvent):
            return _error(422, "invalid_event", event.reason)
        explanations = explain(await self._store.load(), event)
        return web.json_response(
            {
                "event": {"id": event.id, "type": event.type},
                "reached": [e.subscription for e in explanations if e.reached],
                "subscriptions": [e.record() for e in explanations],
            },
            dumps=_dumps,
        )

    # --- helpers

    async def _body(self, request: web.Request) -> bytes:
        """The request body; 413 (through `auth`) past `admin.max_body_bytes`. Read here, not
        with `request.read()`: that applies the root application's `client_max_size`, never
        this mounted one's."""
        limit = self._max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise web.HTTPRequestEntityTooLarge(limit, declared)
        body = bytearray()
        while chunk := await request.content.readany():
            body += chunk
            if len(body) > limit:
                raise web.HTTPRequestEntityTooLarge(limit, len(body))
        return bytes(body)

    async def _json(self, request: web.Request) -> Any:
        raw = await self._body(request)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, "bad_json", f"the body is not JSON: {exc}")

    async def _find(self, ident: str) -> Stored | None:
        if self._editable:
            found: Stored | None = await self._store.get(ident)
            return found
        for sub in await self._store.load():  # the config file's: the name is the id
            if sub.name == ident:
                return FileSubscription(sub)
        return None

    async def _list_loaded(
        self,
        query: Mapping[str, str],
        enabled: bool | None,
        label: tuple[str, str] | None,
        limit: int,
    ) -> web.Response:
        from dispatcher.subscriptions.matcher import compile_glob

        items: Sequence[Subscription] = await self._store.load()
        event_type, target_type = query.get("event_type"), query.get("target_type")
        chosen = [
            sub
            for sub in items
            if (enabled is None or sub.enabled == enabled)
            and (target_type is None or sub.target.type == target_type)
            and (event_type is None or any(compile_glob(p)(event_type) for p in sub.events))
            and label is None  # config-file subscriptions carry no labels or owner
            and query.get("owner") is None
        ]
        after = query.get("cursor")
        if after is not None:
            chosen = [sub for sub in chosen if sub.name > after]
        chosen.sort(key=lambda sub: sub.name)
        page = chosen[:limit]
        cursor = page[-1].name if len(chosen) > limit else None
        views = [view(FileSubscription(sub)) for sub in page]
        return web.json_response({"items": views, "next_cursor": cursor}, dumps=_dumps)

    def _type_problem(self, body: Mapping[str, Any]) -> str | None:
        target = body.get("target")
        kind = target.get("type") if isinstance(target, Mapping) else None
        if isinstance(kind, str) and kind in TARGET_TYPES and kind not in self._target_types:
            return f"{kind} targets cannot be delivered here: the config has no `smtp:` section"
        return None

    def _host_refusal(self, body: Mapping[str, Any]) -> web.Response | None:
        """A 422 when the body's target URL names an address the guard refuses."""
        refused = target_url_refusal(body, self._guard)
        return None if refused is None else _error(422, "invalid", refused, field="target.url")

    @staticmethod
    def _meta_problem(owner: Any, labels: Any) -> str | None:
        if owner is not None and not isinstance(owner, str):
            return "owner must be a string"
        if labels is not None and not (
            isinstance(labels, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
        ):
            return "labels must be an object of strings"
        return None

    @staticmethod
    def _not_found(request: web.Request) -> web.Response:
        ident = request.match_info["id"]
        return _error(404, "not_found", f"no subscription with the id or name {ident!r}")

    @staticmethod
    def _read_only() -> web.Response:
        message = "the subscriptions are in the config file: edit it, or set store.url"
        return _error(405, "read_only", message)

    @staticmethod
    def _store_error(exc: DispatcherError) -> web.Response:
        from dispatcher.subscriptions.sql import DuplicateName, NotFound

        if isinstance(exc, DuplicateName):
            return _error(409, "conflict", str(exc))
        if isinstance(exc, NotFound):
            return _error(404, "not_found", str(exc))
        raise exc


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
