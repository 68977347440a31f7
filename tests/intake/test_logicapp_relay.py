"""The Logic App approval relay matches the card relay endpoint: route, method, body, auth.

Reads infra/logicapp/approval-relay.workflow.json and compares it with what the app serves
(the `card_relay` function's trigger and the `CardBody` model) and with the card the app sends
(the fields the workflow reads from a card answer must be on the card).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.auth import ActionTokenSigner
from shared.cards import ApprovalCardRequest, approval_card, teams_message
from shared.models import Gate, RunbookPath
from triggers.approvals import RELAY_ROLE, CardBody

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "infra" / "logicapp" / "approval-relay.workflow.json"
WAIT_ACTION = "Post_card_and_wait_for_a_response"
RELAY_ACTION = "Relay_the_answer_to_the_app"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return json.loads(WORKFLOW.read_text())["definition"]


@pytest.fixture(scope="module")
def relay_trigger() -> dict:
    from tests.intake._app import http_triggers

    assert "card_relay" in http_triggers(), "the app has no card_relay function"
    return http_triggers()["card_relay"]


def _relay(workflow: dict) -> dict:
    return workflow["actions"][RELAY_ACTION]


def test_workflow_is_a_logic_app_definition(workflow):
    assert "Microsoft.Logic/schemas/2016-06-01/workflowdefinition.json" in workflow["$schema"]
    assert set(workflow) >= {"triggers", "actions", "parameters"}
    for name, action in workflow["actions"].items():
        for after in action.get("runAfter", {}):
            assert after in workflow["actions"], f"{name} runs after unknown action {after}"


def test_relay_calls_the_card_route_with_the_method_the_app_serves(workflow, relay_trigger):
    inputs = _relay(workflow)["inputs"]
    route = relay_trigger["route"]
    methods = {str(getattr(m, "value", m)).upper() for m in relay_trigger["methods"]}

    assert inputs["method"].upper() in methods
    assert inputs["uri"].endswith("/api/" + route)
    assert inputs["uri"].startswith("@{parameters('drAppBaseUrl')}")


def test_relay_body_is_exactly_the_card_body_model(workflow):
    body = _relay(workflow)["inputs"]["body"]
    fields = {f.alias or name for name, f in CardBody.model_fields.items()}
    required = {f.alias or name for name, f in CardBody.model_fields.items() if f.is_required()}

    assert set(body) == fields
    assert required <= set(body)


def test_relay_body_reads_the_teams_answer(workflow):
    body = _relay(workflow)["inputs"]["body"]
    answer = f"body('{WAIT_ACTION}')"

    assert f"{answer}?['data']?['actionToken']" in body["actionToken"]
    assert f"{answer}?['responder']?['userPrincipalName']" in body["responder"]
    assert f"{answer}?['responder']?['objectId']" in body["responderId"]
    assert f"{answer}?['data']?['comment']" in body["comment"]


def test_relay_authenticates_as_its_managed_identity_for_the_app_audience(workflow):
    auth = _relay(workflow)["inputs"]["authentication"]
    audience = workflow["parameters"]["drAppAudience"]

    assert auth["type"] == "ManagedServiceIdentity"
    assert auth["audience"] == "@parameters('drAppAudience')"
    assert audience["defaultValue"] == "api://odoo-finance-dr"
    assert RELAY_ROLE in audience["metadata"]["description"]
    assert "Authorization" not in _relay(workflow)["inputs"].get("headers", {})


def test_relay_waits_for_the_card_before_it_calls_the_app(workflow):
    relay = _relay(workflow)
    wait = workflow["actions"][WAIT_ACTION]

    assert relay["runAfter"] == {WAIT_ACTION: ["Succeeded"]}
    assert wait["type"] == "ApiConnectionWebhook"
    assert "gatherinput" in wait["inputs"]["path"]
    assert "attachments" in wait["inputs"]["body"]["body"]["messageBody"]


def test_trigger_accepts_the_message_the_app_sends(workflow):
    import jsonschema

    trigger = workflow["triggers"]["When_the_app_sends_an_approval_card"]
    signer = ActionTokenSigner(b"k" * 48)
    card = approval_card(_request(signer))

    assert trigger["type"] == "Request"
    jsonschema.validate(teams_message(card), trigger["inputs"]["schema"])


def test_fields_the_workflow_reads_from_an_answer_are_on_the_card(workflow):
    signer = ActionTokenSigner(b"k" * 48)
    card = approval_card(_request(signer))
    body = _relay(workflow)["inputs"]["body"]
    read = set(re.findall(r"\?\['data'\]\?\['(\w+)'\]", json.dumps(body)))
    inputs = {b["id"] for b in card["body"] if b.get("type", "").startswith("Input.")}

    assert read == {"actionToken", "comment"}
    for action in card["actions"]:
        assert read <= set(action["data"]) | inputs
        signer.verify(action["data"]["actionToken"])


def _request(signer: ActionTokenSigner) -> ApprovalCardRequest:
    now = datetime.now(UTC)
    tokens = {
        d: signer.issue("prod-eu.availability.1", Gate.RECOVERY, d, ttl=timedelta(hours=1))
        for d in ("approve", "reject")
    }
    return ApprovalCardRequest(
        incident_id="prod-eu.availability.1",
        environment="prod-eu",
        gate=Gate.RECOVERY,
        path=RunbookPath.REGIONAL_OUTAGE,
        reasons=["the primary region does not answer"],
        required_approvals=1,
        expires_at=now + timedelta(hours=1),
        approve_token=tokens["approve"],
        reject_token=tokens["reject"],
    )
