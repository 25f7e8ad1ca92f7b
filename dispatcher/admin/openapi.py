"""The OpenAPI 3.1 document of the subscriptions API (`GET /api/v1/openapi.json`, and
`docs/openapi.json` through `scripts/docs`), built from the same models that validate the
bodies, so it cannot drift from them. The tests run schemathesis against the live API with it."""

from __future__ import annotations

import copy
from typing import Any

from dispatcher import __version__
from dispatcher.settings import API_MAX_PAGE
from dispatcher.subscriptions.models import Subscription

_REF = "#/components/schemas/{model}"


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def document(max_page: int = API_MAX_PAGE) -> dict[str, Any]:
    """The whole document; `servers` is relative, so it holds wherever the API is mounted.
    `max_page`: the deployment's `admin.max_page_size`, the most `limit` it takes."""
    subscription = Subscription.model_json_schema(ref_template=_REF, mode="validation")
    schemas: dict[str, Any] = subscription.pop("$defs", {})
    schemas["Subscription"] = subscription
    create = copy.deepcopy(subscription)
    create["title"] = "NewSubscription"
    create["properties"]["owner"] = {"type": ["string", "null"]}
    create["properties"]["labels"] = {
        "type": ["object", "null"],
        "additionalProperties": {"type": "string"},
    }
    schemas["NewSubscription"] = create
    schemas["Stored"] = {
        "type": "object",
        "description": "A subscription in its body's shape, secrets as `****` + last 4, and "
        "id, owner, labels, created_at, updated_at",
        "required": ["id", "name", "events", "target"],
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    }
    schemas["Page"] = {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Stored"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    }
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    }
    ident = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "the id or the unique name",
        "schema": {"type": "string", "minLength": 1},
    }
    errors = {
        "401": _error_response("no token, or a wrong one"),
        "422": _error_response("invalid: each problem with its field path"),
    }
    found = {**errors, "404": _error_response("no subscription with that id or name")}
    return {
        "openapi": "3.1.0",
        "info": {"title": "dispatcher subscriptions API", "version": __version__},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/subscriptions": {
                "post": {
                    "operationId": "createSubscription",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/NewSubscription"}
                            }
                        },
                    },
                    "responses": {
                        "201": _ok("created", "Stored"),
                        "400": _error_response("not JSON"),
                        "405": _error_response("the subscriptions are in the config file"),
                        "409": _error_response("the name is taken"),
                        "413": _error_response("the body is too large"),
                        **errors,
                    },
                },
                "get": {
                    "operationId": "listSubscriptions",
                    "parameters": [
                        _query("event_type", {"type": "string"}),
                        _query("target_type", {"type": "string"}),
                        _query("enabled", {"type": "string", "enum": ["true", "false"]}),
                        _query("label", {"type": "string", "pattern": "^[^=]+=.*$"}),
                        _query("owner", {"type": "string"}),
                        _query("limit", {"type": "integer", "minimum": 1, "maximum": max_page}),
                        _query("cursor", {"type": "string"}),
                    ],
                    "responses": {"200": _ok("a page", "Page"), **errors},
                },
            },
            "/subscriptions/{id}": {
                "parameters": [ident],
                "get": {
                    "operationId": "getSubscription",
                    "responses": {"200": _ok("the subscription", "Stored"), **found},
                },
                "patch": {
                    "operationId": "patchSubscription",
                    "requestBody": {
                        "required": True,
                        "content": {"application/merge-patch+json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "200": _ok("patched", "Stored"),
                        "400": _error_response("not JSON"),
                        "405": _error_response("the subscriptions are in the config file"),
                        "409": _error_response("the new name is taken"),
                        **found,
                    },
                },
                "delete": {
                    "operationId": "deleteSubscription",
                    "responses": {"204": {"description": "removed"}, **found},
                },
            },
            "/subscriptions/{id}/test": {
                "parameters": [ident],
                "post": {
                    "operationId": "testSubscription",
                    "description": "one real attempt with a sample event",
                    "responses": {"200": {"description": "what the target answered"}, **found},
                },
            },
            "/events/match": {
                "post": {
                    "operationId": "matchEvent",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {"200": {"description": "reached, and why not"}, **errors},
                },
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}
