"""GET /api/openapi.json is an OpenAPI 3 document and names every HTTP route the app serves."""

from __future__ import annotations

import re

import jsonschema
import pytest

from tests.plugins.stack import Stack

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

# The parts of the OpenAPI 3.0 structure this document relies on, as a JSON Schema.
STRUCTURE = {
    "type": "object",
    "required": ["openapi", "info", "paths"],
    "properties": {
        "openapi": {"type": "string", "pattern": r"^3\.\d+\.\d+$"},
        "info": {
            "type": "object",
            "required": ["title", "version"],
            "properties": {"title": {"type": "string"}, "version": {"type": "string"}},
        },
        "servers": {
            "type": "array",
            "items": {"type": "object", "required": ["url"]},
        },
        "paths": {
            "type": "object",
            "propertyNames": {"pattern": "^/"},
            "additionalProperties": {
                "type": "object",
                "propertyNames": {
                    "enum": [*sorted(METHODS), "parameters", "summary", "description", "servers"]
                },
                "additionalProperties": True,
            },
        },
        "components": {"type": "object"},
    },
}
OPERATION = {
    "type": "object",
    "required": ["responses"],
    "properties": {
        "responses": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": r"^([1-5][0-9X]{2}|default)$"},
            "additionalProperties": {"type": "object", "required": ["description"]},
        },
        "parameters": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "in"],
                "properties": {"in": {"enum": ["path", "query", "header", "cookie"]}},
            },
        },
        "security": {"type": "array"},
    },
}


@pytest.fixture(scope="module")
def document(stack: Stack) -> dict:
    r = stack.request("GET", "/api/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_document_has_the_openapi_3_structure(document):
    jsonschema.validate(document, STRUCTURE)
    for _path, _method, operation in _operations(document):
        jsonschema.validate(operation, OPERATION)


def test_every_path_parameter_is_declared(document):
    for path, method, operation in _operations(document):
        named = set(re.findall(r"\{(\w+)\}", path))
        params = operation.get("parameters", []) + document["paths"][path].get("parameters", [])
        declared = {p["name"] for p in params if p.get("in") == "path"}
        assert named == declared, (method, path)
        assert all(p.get("required") for p in params if p.get("in") == "path")


def test_every_reference_resolves(document):
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        assert ref.startswith("#/"), ref
        node = document
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_bearer_routes_name_the_security_scheme(document):
    schemes = document["components"]["securitySchemes"]
    for path, method, operation in _operations(document):
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), (method, path)


def test_every_http_route_of_the_app_is_named():
    from tests.intake._app import http_triggers
    from triggers.openapi import SPEC

    served = set()
    for name, trigger in http_triggers().items():
        route = trigger.get("route") or name
        for method in trigger.get("methods") or ["GET", "POST"]:
            served.add((str(getattr(method, "value", method)).lower(), "/" + route))
    named = {(m, p) for p, m, _ in _operations(SPEC)}

    missing = {(m, p) for m, p in served if (m, p) not in named and p != "/openapi.json"}
    assert not missing, f"routes the document does not name: {sorted(missing)}"


def test_served_document_is_the_one_in_the_code(document):
    from triggers.openapi import SPEC

    assert set(document["paths"]) == set(SPEC["paths"])


# What each route answers, as docs/intake.md and docs/routes.md describe it (and the code does).
ANSWERS = {
    ("post", "/alerts"): {"202", "400", "413", "503"},
    ("get", "/incidents"): {"200"},
    ("post", "/incidents"): {"202", "400", "401", "403", "404", "413", "503"},
    ("get", "/incidents/{id}"): {"200", "404"},
    ("get", "/incidents/{id}/report"): {"200", "400", "404"},
    ("post", "/incidents/{id}/approvals"): {"202", "400", "401", "403", "404", "409", "413", "503"},
    ("post", "/approvals/card"): {"202", "400", "401", "403", "409", "413", "503"},
    ("post", "/incidents/{id}/actions"): {"202", "400", "401", "403", "404", "409", "413"},
    ("post", "/samples/hello"): {"202", "400"},
    ("get", "/openapi.json"): {"200"},
}


def test_every_route_lists_the_answers_it_gives():
    from triggers.openapi import SPEC

    listed = {(m, p): set(op["responses"]) for p, m, op in _operations(SPEC)}

    assert listed == ANSWERS


@pytest.mark.parametrize(
    "path", ["/alerts", "/incidents", "/incidents/{id}/approvals", "/approvals/card"]
)
def test_storage_failure_503_names_retry_after(path):
    from triggers.openapi import SPEC

    unavailable = SPEC["paths"][path]["post"]["responses"]["503"]

    assert "Retry-After" in unavailable["headers"]
    assert unavailable["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
