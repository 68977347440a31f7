"""``GET /api/openapi.json``: an OpenAPI 3.0 description of the product's routes."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from triggers._http import answer

bp = df.Blueprint()

_ERROR = {"$ref": "#/components/schemas/Error"}
_BEARER = [{"bearer": []}]


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


_WORDS = {
    400: "the body is not what the route takes; the error says what is wrong",
    401: "no valid bearer token (checked before anything is looked up)",
    403: "the caller lacks the role, or declared the incident it tries to approve",
    404: "no such incident",
    409: "the gate is not open, or the incident is not waiting for this",
    413: "the body is larger than the limit",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before sending it again (when storage failed)",
        "schema": {"type": "integer"},
    }
}


def _errors(*codes: int, said: dict[int, str] | None = None) -> dict:
    """The error answers of a route; ``said`` words a status the way that route means it."""
    words = {**_WORDS, **(said or {})}
    return {str(c): {"description": words[c], **_json(_ERROR)} for c in codes}


def _unavailable(description: str) -> dict:
    """A 503 answer that carries Retry-After when storage failed (Azure Monitor resends then)."""
    return {"503": {"description": description, "headers": _RETRY_AFTER, **_json(_ERROR)}}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

SPEC = {
    "openapi": "3.0.3",
    "info": {
        "title": "Odoo finance disaster recovery",
        "version": "1",
        "description": "Signals in, incidents, approvals, operator actions and reports.",
    },
    "servers": [{"url": "/api"}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "Intake": {
                "type": "object",
                "required": ["incidentId", "disposition", "reason", "statusQueryGetUri"],
                "properties": {
                    "incidentId": {"type": "string", "nullable": True},
                    "disposition": {"type": "string", "enum": ["started", "folded", "ignored"]},
                    "reason": {"type": "string"},
                    "statusQueryGetUri": {"type": "string", "nullable": True},
                    "duplicate": {"type": "boolean"},
                },
            },
            "Alert": {
                "type": "object",
                "description": "Azure Monitor common alert schema; every field may be null",
                "required": ["data"],
                "properties": {
                    "schemaId": {"type": "string", "nullable": True},
                    "data": {
                        "type": "object",
                        "required": ["essentials"],
                        "properties": {
                            "essentials": {"type": "object"},
                            "alertContext": {"type": "object", "nullable": True},
                        },
                    },
                },
            },
            "Declaration": {
                "type": "object",
                "required": ["environment", "reason"],
                "properties": {
                    "environment": {"type": "string", "minLength": 1, "maxLength": 100},
                    "path": {
                        "type": "string",
                        "enum": [
                            "regional-outage",
                            "database-corruption",
                            "failed-release",
                            "security-incident",
                            "dependency-failure",
                            "ha-handled",
                        ],
                    },
                    "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "suspected_since": {
                        "type": "string",
                        "format": "date-time",
                        "description": "ISO 8601 with an offset, e.g. 2026-12-04T09:00:00Z",
                    },
                },
            },
            "Decision": {
                "type": "object",
                "required": ["gate", "decision"],
                "properties": {
                    "gate": {
                        "type": "string",
                        "enum": ["recovery", "rpo", "fence", "cutover", "signoff"],
                    },
                    "decision": {"type": "string", "enum": ["approve", "reject"]},
                    "comment": {"type": "string", "maxLength": 2000, "nullable": True},
                },
            },
            "CardAnswer": {
                "type": "object",
                "required": ["actionToken", "responder"],
                "properties": {
                    "actionToken": {"type": "string"},
                    "responder": {"type": "string"},
                    "responderId": {"type": "string"},
                    "comment": {"type": "string", "maxLength": 2000, "nullable": True},
                },
            },
            "OperatorAction": {
                "type": "object",
                "required": ["action", "reason"],
                "properties": {
                    "action": {"type": "string", "enum": ["retry", "skip", "abort"]},
                    "step": {"type": "string"},
                    "reason": {"type": "string", "minLength": 1},
                },
            },
        },
    },
    "paths": {
        "/alerts": {
            "post": {
                "summary": "Azure Monitor action group webhook",
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/Alert"})},
                "responses": {
                    "202": {
                        "description": "the signal's disposition",
                        **_json({"$ref": "#/components/schemas/Intake"}),
                    },
                    **_errors(400, 413),
                    **_unavailable(
                        "the configuration cannot be loaded, or storage could not record the "
                        "signal (then with Retry-After: Azure Monitor resends a webhook on 503, "
                        "and a resent signal is recognised by its dedupe key)"
                    ),
                },
            }
        },
        "/incidents": {
            "get": {
                "summary": "every incident, newest first",
                "responses": {"200": {"description": "incidents", **_json({"type": "object"})}},
            },
            "post": {
                "summary": "declare an incident by hand (role DR.Operator)",
                "security": _BEARER,
                "requestBody": {
                    "required": True,
                    **_json({"$ref": "#/components/schemas/Declaration"}),
                },
                "responses": {
                    "202": {
                        "description": "declared or folded",
                        **_json({"$ref": "#/components/schemas/Intake"}),
                    },
                    **_errors(
                        400,
                        401,
                        403,
                        404,
                        413,
                        said={
                            403: "the caller lacks the role DR.Operator",
                            404: "the environment is not in the configuration",
                        },
                    ),
                    **_unavailable("storage could not record the declaration; send it again"),
                },
            },
        },
        "/incidents/{id}": {
            "get": {
                "summary": "one incident: phase, classification, evidence, plan, approvals",
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "the incident", **_json({"type": "object"})},
                    **_errors(404),
                },
            }
        },
        "/incidents/{id}/report": {
            "get": {
                "summary": "the incident report",
                "parameters": [
                    _ID,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "md", "html"]},
                    },
                ],
                "responses": {
                    "200": {"description": "the report"},
                    **_errors(
                        400,
                        404,
                        said={
                            400: "format is not json, md or html",
                            404: "no such incident, or it has not ended yet (no report)",
                        },
                    ),
                },
            }
        },
        "/incidents/{id}/approvals": {
            "post": {
                "summary": "decide an open gate",
                "security": _BEARER,
                "parameters": [_ID],
                "requestBody": {
                    "required": True,
                    **_json({"$ref": "#/components/schemas/Decision"}),
                },
                "responses": {
                    "202": {"description": "recorded", **_json({"type": "object"})},
                    **_errors(
                        400,
                        401,
                        403,
                        404,
                        409,
                        413,
                        said={
                            409: (
                                "the gate is not open, or the caller already decided otherwise "
                                "at this opening of the gate"
                            )
                        },
                    ),
                    **_unavailable(
                        "storage could not record the decision (with Retry-After; sending it "
                        "again is safe)"
                    ),
                },
            }
        },
        "/approvals/card": {
            "post": {
                "summary": "the Logic App relay for Teams card answers (role DR.ApprovalRelay)",
                "security": _BEARER,
                "requestBody": {
                    "required": True,
                    **_json({"$ref": "#/components/schemas/CardAnswer"}),
                },
                "responses": {
                    "202": {"description": "recorded", **_json({"type": "object"})},
                    **_errors(
                        400,
                        401,
                        403,
                        409,
                        413,
                        said={
                            401: (
                                "no valid bearer token for the relay, or the action token is "
                                "malformed, forged or expired"
                            ),
                            403: (
                                "the relay lacks DR.ApprovalRelay, or the responder may not "
                                "decide the gate"
                            ),
                            409: (
                                "the token's gate is not open, or the token was already used "
                                "by this responder"
                            ),
                        },
                    ),
                    **_unavailable(
                        "this app has no key to check action tokens with, or storage could not "
                        "record the decision (then with Retry-After)"
                    ),
                },
            }
        },
        "/incidents/{id}/actions": {
            "post": {
                "summary": "retry, skip or abort a parked step (role DR.Operator)",
                "security": _BEARER,
                "parameters": [_ID],
                "requestBody": {
                    "required": True,
                    **_json({"$ref": "#/components/schemas/OperatorAction"}),
                },
                "responses": {
                    "202": {"description": "sent to the plan", **_json({"type": "object"})},
                    **_errors(
                        400,
                        401,
                        403,
                        404,
                        409,
                        413,
                        said={
                            403: "the caller lacks the role DR.Operator",
                            409: "the incident is not in needs-operator, or the step is not parked",
                        },
                    ),
                },
            }
        },
        "/samples/hello": {
            "post": {
                "summary": "start the sample orchestration that shows devhost working",
                "requestBody": {
                    "required": False,
                    **_json({"type": "array", "items": {"type": "string"}}),
                },
                "responses": {
                    "202": {"description": "the durable check-status payload"},
                    **_errors(400),
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}
        },
    },
}


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI document of the routes under /api."""
    return answer(200, SPEC)
