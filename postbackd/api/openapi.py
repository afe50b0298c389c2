"""The admin API described as an OpenAPI 3.1 document: served at ``GET /v1/openapi.json`` and
committed as docs/openapi.json (``python -m postbackd.api.openapi > docs/openapi.json``).

This module is the one source. The verbs' request bodies come from the table their handlers
read them with (`postbackd.api.verbs.BODY_FIELDS`); the response schemas are checked against
real answers of every route by tests/api/test_openapi.py, which also fails for a route the
document does not describe. The web UI's pages (``/ui/…``: HTML behind their own login) are
not part of this API.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from postbackd import __version__
from postbackd.api.verbs import BODY_FIELDS, REQUIRED, BodyField
from postbackd.spool.model import DeliveryState

JSON = "application/json"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str | list[str]) -> Schema:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"]}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """A closed object: a key the code adds without describing it fails the response test."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


STATE = {"type": "string", "enum": [str(state) for state in DeliveryState]}
TIME_VALUE: Schema = {
    "oneOf": [
        {"type": "number", "description": "epoch seconds"},
        {"type": "string", "description": 'a duration back from now ("7d") or an ISO time'},
    ]
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "Every 4xx/5xx answer. `field` names the input at fault (null when none).",
        "properties": {
            "error": {"type": "string"},
            "field": nullable("string"),
            "matches": {
                "type": "array",
                "items": {"type": "string"},
                "description": "409 for an ambiguous id prefix: the ids it starts",
            },
            "more": {"type": "boolean", "description": "more ids start it than are listed"},
        },
        "required": ["error", "field"],
        "additionalProperties": False,
    },
    "Health": obj({"status": {"const": "ok"}}),
    "Readiness": obj(
        {
            "ready": {"type": "boolean"},
            "spool": {"type": "boolean", "description": "the spool takes writes"},
            "generation": {"type": "integer"},
            "sources": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "source_errors": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    ),
    "DeliverySummary": obj(
        {
            "id": {"type": "string"},
            "event_id": {"type": "string"},
            "order_id": nullable("string"),
            "customer": {"type": "string"},
            "trigger": {"type": "string"},
            "event_type": {"type": "string"},
            "plugin": {"type": "string"},
            "state": STATE,
            "attempts": {"type": "integer", "description": "attempts in the request log"},
            "created_at": {"type": "number"},
            "next_attempt_at": nullable("number"),
            "last_status": nullable("integer"),
            "last_error": nullable("string"),
            "destination": nullable("string"),
            "held_reason": nullable("string"),
            "updated_at": nullable("number"),
            "finished_at": nullable("number"),
        }
    ),
    "DeliveryList": obj(
        {
            "deliveries": {"type": "array", "items": ref("DeliverySummary")},
            "next_cursor": {
                **nullable("string"),
                "description": "give it as `cursor` for the next page; null at the end",
            },
        }
    ),
    "Timer": obj(
        {
            "id": {"type": "string", "description": "the delay alert's event id (rule + order)"},
            "rule": {"type": "string", "description": "the `[[sla]]` rule's name"},
            "customer": {"type": "string"},
            "order_id": {"type": "string"},
            "emit": {"type": "string", "description": "the event type the alert will have"},
            "started_by": {"type": "string", "description": "the event that started it"},
            "started_at": {"type": "number", "description": "epoch seconds"},
            "due_at": {"type": "number", "description": "epoch seconds"},
            "state": {"type": "string", "enum": ["pending", "fired", "cancelled"]},
            "finished_at": nullable("number"),
            "note": {**nullable("string"), "description": "how it ended"},
        }
    ),
    "TimerList": obj({"timers": {"type": "array", "items": ref("Timer")}}),
    "Attempt": obj(
        {
            "number": {"type": "integer"},
            "node": nullable("string"),
            "started_at": {"type": "number"},
            "duration": {"type": "number"},
            "outcome": {"type": "string", "enum": ["ok", "retry", "fail"]},
            "status": nullable("integer"),
            "error": nullable("string"),
            "request": {**nullable("object"), "description": "the final request, secrets masked"},
            "response": {**nullable("object"), "description": "the system's response"},
        }
    ),
    "DeliveryDetail": obj(
        {
            "delivery": ref("DeliverySummary"),
            "event": {"type": "object", "description": "the event as stored"},
            "template": obj(
                {
                    "format": {"type": "string"},
                    "content_type": {"type": "string"},
                    "subject": nullable("string"),
                    "body": nullable("string"),
                    "render_error": nullable("string"),
                }
            ),
            "attempts": {"type": "array", "items": ref("Attempt")},
        }
    ),
    "VerbResult": obj(
        {
            "action": {"type": "string", "enum": ["retry", "resend", "hold", "release", "purge"]},
            "count": {
                "type": "integer",
                "description": "deliveries changed (or, dry run, that would be)",
            },
            "dry_run": {"type": "boolean"},
        }
    ),
    "BackfillResult": obj(
        {
            "trigger": {"type": "string"},
            "since": {"type": "number"},
            "until": nullable("number"),
            "matched": {"type": "integer", "description": "stored events the trigger matches"},
            "existing": {"type": "integer", "description": "of them, with its delivery already"},
            "added": {"type": "integer", "description": "deliveries created (dry run: to be)"},
            "dry_run": {"type": "boolean"},
            "unreadable": {"type": "integer", "description": "stored events skipped"},
        }
    ),
    "Erased": obj(
        {
            "order": {"type": "string"},
            "events": {"type": "integer"},
            "deliveries": {"type": "integer"},
            "attempts": {"type": "integer"},
        }
    ),
    "RenderRequest": {
        "type": "object",
        "properties": {
            "template": {"type": "string"},
            "event": {"type": "object", "description": "an event (else `sample`)"},
            "sample": {"type": "string", "description": "a sample event type"},
            "customer": {"type": "string"},
        },
        "required": ["template"],
    },
    "Rendered": obj(
        {
            "body": {"type": "string"},
            "subject": nullable("string"),
            "content_type": {"type": "string"},
            "warnings": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "RenderFailure": obj(
        {
            "error": {"type": "string"},
            "line": nullable("integer"),
            "column": nullable("integer"),
            "variable": nullable("string"),
        }
    ),
    "ReloadResult": obj(
        {"ok": {"type": "boolean"}, "generation": {"type": "integer"}, "error": nullable("string")}
    ),
    "ConfigStatus": obj(
        {
            "node": {"type": "string"},
            "generation": {"type": "integer"},
            "fingerprint": {"type": "string"},
            "loaded_at": {"type": "string"},
            "last_error": nullable("string"),
            "customers": {"type": "array", "items": {"type": "string"}},
            "triggers": {
                "type": "object",
                "additionalProperties": obj(
                    {
                        "customer": {"type": "string"},
                        "status": {"type": "string", "enum": ["active", "inactive"]},
                        "delivery": {"type": "string"},
                        "events": {"type": "array", "items": {"type": "string"}},
                    }
                ),
            },
            "nodes": {"type": "array", "items": ref("Node")},
            "nodes_warning": nullable("string"),
        }
    ),
    "Node": obj(
        {
            "node": {"type": "string"},
            "generation": {"type": "integer"},
            "fingerprint": {"type": "string"},
            "started_at": {"type": "number"},
            "last_seen": {"type": "number"},
            "triggers": {"type": "array", "items": {"type": "string"}},
        }
    ),
    "Intake": obj(
        {
            "accepted": {"type": "array", "items": {"type": "string"}},
            "duplicates": {"type": "array", "items": {"type": "string"}},
        }
    ),
}
for _done in ("retried", "resent", "held", "released"):
    SCHEMAS[_done.capitalize()] = obj({_done: {"type": "string"}, "at": {"type": "number"}})


def body_schema(verb: str) -> Schema:
    """A verb's request body, from the table its handler reads it with."""
    return {
        "type": "object",
        "properties": {field.name: _field_schema(field) for field in BODY_FIELDS[verb]},
        "required": list(REQUIRED.get(verb, ())),
        "additionalProperties": False,
    }


def _field_schema(field: BodyField) -> Schema:
    if field.kind == "time":
        return {**TIME_VALUE, "description": field.description}
    if field.kind == "ids":
        return {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 100},
            "minItems": 1,
            "maxItems": 10_000,
            "description": field.description,
        }
    if field.name == "state":
        return {**STATE, "description": field.description}
    if field.kind == "boolean":
        return {"type": "boolean", "description": field.description}
    return {"type": "string", "minLength": 1, "maxLength": 1000, "description": field.description}


def answer(description: str, schema: Schema | None = None, media: str = JSON) -> Schema:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {media: {"schema": schema}}}


def error(description: str) -> Schema:
    return answer(description, ref("Error"))


UNAUTHORIZED = {"401": error("missing or wrong bearer token (`[daemon] admin_token`)")}
ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "a delivery id, or its first 4+ characters",
}
ID_ERRORS = {
    "404": error("no delivery has this id"),
    "409": error("an ambiguous id prefix (with `matches`), or a state the verb cannot change"),
}


def operation(
    summary: str,
    responses: dict[str, Schema],
    *,
    parameters: list[Schema] | None = None,
    body: Schema | None = None,
    public: bool = False,
    description: str | None = None,
) -> Schema:
    op: Schema = {"summary": summary}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": body}}}
    op["responses"] = responses if public else {**responses, **UNAUTHORIZED}
    if public:
        op["security"] = []
    return op


def query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def filter_verb(verb: str, summary: str, description: str) -> Schema:
    return {
        "post": operation(
            summary,
            {
                "200": answer("what was done (or, dry run, would be)", ref("VerbResult")),
                "400": error(
                    "a malformed body, an unknown key, no selector, or a state the "
                    "verb cannot act on"
                ),
                "404": error("an id in `ids` names no delivery"),
            },
            body=body_schema(verb),
            description=description,
        )
    }


def one_verb(verb: str, done: str, summary: str) -> Schema:
    return {
        "post": operation(
            summary,
            {
                "200": answer(f"{done}", ref(done.capitalize())),
                "400": error("a bad body"),
                **ID_ERRORS,
            },
            parameters=[ID_PARAMETER],
            body=body_schema(f"{verb}_one"),
        )
    }


SELECTING = (
    "Give `ids`, or filters (they combine with AND; times are epoch seconds, a duration back "
    'like "7d", or an ISO time), or `"all": true`. `"dry_run": true` only counts.'
)


def openapi_document() -> Schema:
    """The whole document (a fresh dict each call)."""
    paths: dict[str, Schema] = {
        "/healthz": {
            "get": operation(
                "the process answers", {"200": answer("alive", ref("Health"))}, public=True
            )
        },
        "/readyz": {
            "get": operation(
                "ready for events: configuration loaded, sources up, spool writable",
                {
                    "200": answer("ready", ref("Readiness")),
                    "503": answer("not ready (what is not, in the body)", ref("Readiness")),
                },
                public=True,
            )
        },
        "/metrics": {
            "get": operation(
                "Prometheus metrics",
                {"200": answer("text exposition format", {"type": "string"}, "text/plain")},
            )
        },
        "/v1/events": {
            "post": {
                **operation(
                    "submit events (one, or a JSON array of up to 1000)",
                    {
                        "202": answer("stored durably (duplicates by event id)", ref("Intake")),
                        "400": error("an event that is not valid, with the field at fault"),
                        "401": error("missing or wrong bearer token (`[sources.http] token`)"),
                        "413": error("a body larger than `[sources.http] max_body`"),
                        "503": error("the spool cannot take writes now: retry (Retry-After)"),
                    },
                    public=True,
                    description="Served by the HTTP source; its token is `[sources.http] token`.",
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": {"type": ["object", "array"]}}},
                },
                "security": [{"bearer": []}],
            }
        },
        "/v1/deliveries": {
            "get": operation(
                "the request log, newest first",
                {
                    "200": answer("a page of deliveries", ref("DeliveryList")),
                    "400": error("a bad filter, limit or cursor"),
                },
                parameters=[
                    query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "page size (default 50)",
                    ),
                    query("since", {"type": "number"}, "created at or after (epoch seconds)"),
                    query("until", {"type": "number"}, "created before (epoch seconds)"),
                    query("state", STATE, "only this state"),
                    query("customer", {"type": "string"}, "only this customer"),
                    query("trigger", {"type": "string"}, "only this trigger"),
                    query("order", {"type": "string"}, "only this order id"),
                    query("event_type", {"type": "string"}, "only this event type"),
                    query("cursor", {"type": "string"}, "`next_cursor` of the previous page"),
                ],
            )
        },
        "/v1/deliveries/{id}": {
            "get": operation(
                "one delivery: event, template processing, requests and responses",
                {"200": answer("the delivery", ref("DeliveryDetail")), **ID_ERRORS},
                parameters=[ID_PARAMETER],
            )
        },
        "/v1/deliveries/{id}/retry": {
            "post": operation(
                "make one delivery due now (dead, failed, cancelled: a fresh schedule)",
                {"200": answer("retried", ref("Retried")), **ID_ERRORS},
                parameters=[ID_PARAMETER],
            )
        },
        "/v1/deliveries/{id}/resend": one_verb("resend", "resent", "send a done delivery again"),
        "/v1/deliveries/{id}/hold": one_verb("hold", "held", "hold a pending delivery"),
        "/v1/deliveries/{id}/release": one_verb("release", "released", "release a held one"),
        "/v1/deliveries/retry": filter_verb(
            "retry",
            "make deliveries due now, by ids or filter",
            "Dead, failed and cancelled ones start a fresh schedule. With no `state`: pending, "
            "dead and failed ones. " + SELECTING,
        ),
        "/v1/deliveries/resend": filter_verb(
            "resend",
            "send done deliveries again, by ids or filter",
            "Same delivery id and payload, or `rerender` with the current template. Ids or a "
            "filter are required. " + SELECTING,
        ),
        "/v1/deliveries/hold": filter_verb("hold", "pending → held, by ids or filter", SELECTING),
        "/v1/deliveries/release": filter_verb(
            "release", "held → pending (due now), by ids or filter", SELECTING
        ),
        "/v1/deliveries/purge": filter_verb(
            "purge",
            "delete deliveries and their request log, by ids, state or customer",
            "At least one selector is required.",
        ),
        "/v1/backfill": {
            "post": operation(
                "create a trigger's deliveries for stored events it matches now",
                {
                    "200": answer("what was found and created", ref("BackfillResult")),
                    "400": error("a bad body or an empty window"),
                    "404": error("no trigger has this name"),
                    "409": error("the trigger is inactive"),
                },
                body=body_schema("backfill"),
                description="Idempotent: the delivery id is derived from event and trigger, so "
                "events that already have the trigger's delivery are skipped.",
            )
        },
        "/v1/erase": {
            "post": operation(
                "erase an order's events, deliveries and request log (personal data)",
                {"200": answer("what was erased", ref("Erased")), "400": error("a bad body")},
                body=body_schema("erase"),
            )
        },
        "/v1/render": {
            "post": {
                **operation(
                    "render a template with an event or a sample",
                    {
                        "200": answer("the rendered payload", ref("Rendered")),
                        "400": error("malformed JSON, or no event nor known sample"),
                        "404": error("no template has this name"),
                        "422": answer("the template failed", ref("RenderFailure")),
                    },
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("RenderRequest")}},
                },
            }
        },
        "/v1/reload": {
            "post": operation(
                "reload the configuration (as SIGHUP does)",
                {
                    "200": answer("applied", ref("ReloadResult")),
                    "422": answer("rejected; the running configuration stays", ref("ReloadResult")),
                },
            )
        },
        "/v1/config": {
            "get": operation(
                "the loaded configuration's generation, fingerprint, customers and triggers, "
                "and the fleet's live nodes (a warning when their configurations differ)",
                {"200": answer("the configuration", ref("ConfigStatus"))},
            )
        },
        "/v1/timers": {
            "get": operation(
                "`[[sla]]` delay timers: pending ones by due time, others newest first",
                {
                    "200": answer("the timers", ref("TimerList")),
                    "400": error("a bad state or limit"),
                },
                parameters=[
                    query(
                        "state",
                        {"type": "string", "enum": ["pending", "fired", "cancelled", "all"]},
                        "which timers (default pending)",
                    ),
                    query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "at most this many (default 100; more is capped at 1000)",
                    ),
                ],
            )
        },
        "/v1/openapi.json": {
            "get": operation("this document", {"200": answer("OpenAPI 3.1", {"type": "object"})})
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "postbackd admin API",
            "version": __version__,
            "description": "Health, the request log, the operator's verbs, backfill, erase, "
            "render and reload of a postbackd daemon. Every route but /healthz and /readyz "
            "needs `Authorization: Bearer <[daemon] admin_token>` when a token is set.",
        },
        "servers": [
            {"url": "http://127.0.0.1:8787", "description": "the example configuration's listener"}
        ],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    """The document as committed in docs/openapi.json."""
    return json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
