"""Approval cards validate against the published Adaptive Card 1.5 schema (when present)."""

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest
from jsonschema import Draft6Validator

from shared.cards import approval_card, outcome_card
from shared.models import Gate
from tests.shared.test_cards import request

SCHEMA = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "adaptivecards"
SCHEMA_FILE = SCHEMA / "adaptive-card-1.5.0.json"

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        not SCHEMA_FILE.exists(),
        reason=f"Adaptive Card schema not found at {SCHEMA_FILE.resolve()}",
    ),
]


@pytest.fixture(scope="module")
def validator() -> Draft6Validator:
    return Draft6Validator(json.loads(SCHEMA_FILE.read_text()))


def without_teams_keys(card: dict) -> tuple[dict, dict | None]:
    """Teams-only keys are not in the schema; they are taken out and checked apart."""
    card = copy.deepcopy(card)
    return card, card.pop("msteams", None)


def errors(validator, card) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(card)]


@pytest.mark.parametrize("action", ["submit", "execute"])
def test_approval_card_is_valid_adaptive_card_1_5(validator, action):
    card, teams = without_teams_keys(approval_card(request(action=action)))
    assert errors(validator, card) == []
    assert teams == {"width": "Full"}


def test_minimal_card_is_valid(validator):
    minimal = request(
        plan=[],
        rpo=None,
        reasons=[],
        rule_name=None,
        expires_at=None,
        estimated_rto=None,
        teams_full_width=False,
    )
    card, teams = without_teams_keys(approval_card(minimal))
    assert teams is None and errors(validator, card) == []


def test_outcome_card_is_valid(validator):
    assert (
        errors(validator, outcome_card("prod-eu.data.1", Gate.SIGNOFF, "Approved by fiona.")) == []
    )


def test_schema_catches_a_broken_card(validator):
    card, _ = without_teams_keys(approval_card(request(estimated_rto=timedelta(minutes=1))))
    card["body"][0]["size"] = "Gigantic"
    assert errors(validator, card)


@pytest.mark.parametrize("with_key", [True, False])
def test_gate_messages_are_valid(validator, with_key, monkeypatch):
    from shared.auth import ActionTokenSigner
    from shared.cards import approval_card_message
    from tests.shared.test_cards import GROUP, gate_view

    monkeypatch.delenv("DR_ACTION_TOKEN_KEY", raising=False)
    signer = ActionTokenSigner(b"s" * 32) if with_key else None
    for kind in ("request", "reminder", "escalation"):
        message = approval_card_message(gate_view(), kind=kind, group=GROUP, signer=signer)
        card, _ = without_teams_keys(message["attachments"][0]["content"])
        assert errors(validator, card) == []
