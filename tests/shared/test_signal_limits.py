"""Payloads that parse but could not be stored, or that trip Python's own number handling.

Each case here was once answered 500 or refused by storage on every resend: a field too long
for a table row, a superscript digit as the severity, an integer of hundreds of digits, an
incident id spelled with a leading zero. The signal must either fit what storage takes, saying
what it shortened, or be refused with a message naming the field.
"""

import copy
import json
from pathlib import Path

import pytest

from shared.auth import Unauthenticated, principal_from_claims
from shared.classification import split_incident_id
from shared.config import load_config
from shared.signals import (
    MAX_STORED_SIGNAL_CHARS,
    SignalError,
    declaration_signal,
    parse_alert,
    parse_event,
)

PAYLOADS = Path(__file__).parent / "payloads"
CONFIG = load_config()
ALERT = json.loads((PAYLOADS / "alert_metric_pg_cpu_fired.json").read_text())
KEY_VAULT = json.loads((PAYLOADS / "event_keyvault_near_expiry_cloudevent.json").read_text())


def _alert(**essentials) -> dict:
    doc = copy.deepcopy(ALERT)
    doc["data"]["essentials"].update(essentials)
    return doc


def _stored_size(signal) -> int:
    return len(signal.model_dump_json().encode("utf-16-le")) // 2


def test_a_long_description_is_shortened_to_fit_one_row_and_says_so():
    signal = parse_alert(json.dumps(_alert(description="d" * 200_000)), config=CONFIG)
    assert _stored_size(signal) <= MAX_STORED_SIGNAL_CHARS
    assert signal.description.startswith("d" * 100)
    assert "more characters in the raw payload" in signal.description
    assert signal.facts["shortened"] == "description"
    assert signal.environment == "prod-eu"  # the rest is what it was


def test_many_custom_properties_are_cut_to_fit():
    doc = _alert()
    doc["data"]["customProperties"] = {f"k{i}": "v" * 300 for i in range(2000)}
    signal = parse_alert(json.dumps(doc), config=CONFIG)
    assert _stored_size(signal) <= MAX_STORED_SIGNAL_CHARS
    assert "custom_properties" in signal.facts["shortened"]


def test_a_small_alert_is_stored_as_it_came():
    signal = parse_alert(json.dumps(ALERT), config=CONFIG)
    assert "shortened" not in signal.facts
    assert signal.description == "CPU above 90% on the primary"


@pytest.mark.parametrize(
    ("essentials", "named"),
    [
        ({"alertId": "/subscriptions/x/alerts/" + "a" * 40_000}, "alert or event id"),
        ({"alertRule": "r" * 5000}, "alert rule name"),
        ({"alertTargetIDs": ["/subscriptions/" + "s" * 9000]}, "target resource id"),
    ],
)
def test_an_identifier_longer_than_any_real_one_is_refused_naming_it(essentials, named):
    with pytest.raises(SignalError, match=named):
        parse_alert(json.dumps(_alert(**essentials)), config=CONFIG)


def test_an_event_id_too_long_to_store_is_a_signal_error():
    event = copy.deepcopy(KEY_VAULT)
    event["id"] = "e" * 70_000
    with pytest.raises(SignalError, match="alert or event id"):
        parse_event(event, config=CONFIG)


@pytest.mark.parametrize("severity", ["Sev²", "²", "Sev١", "sev 9", "03x"])
def test_a_severity_that_is_not_an_ascii_digit_0_to_4_is_unknown_not_an_error(severity):
    assert parse_alert(json.dumps(_alert(severity=severity)), config=CONFIG).severity is None


def test_integers_of_hundreds_of_digits_are_not_numbers_here():
    doc = _alert()
    criterion = doc["data"]["alertContext"]["condition"]["allOf"][0]
    criterion["threshold"] = int("9" * 400)
    criterion["metricValue"] = -int("9" * 400)
    (condition,) = parse_alert(json.dumps(doc), config=CONFIG).conditions
    assert condition.threshold is None and condition.metric_value is None
    event = copy.deepcopy(KEY_VAULT)
    event["data"]["EXP"] = int("9" * 400)
    assert parse_event(event, config=CONFIG).facts["expires_at"] is None


def test_a_declaration_by_a_name_too_long_to_store_is_a_signal_error():
    with pytest.raises(SignalError, match="alert rule name"):
        declaration_signal(
            environment="prod-eu", declared_by="n" * 5000, reason="drill", request_id="r1"
        )


@pytest.mark.parametrize(
    "alias",
    ["prod-eu.availability.01", "prod-eu.availability.\u0661", "prod-eu.availability.\uff11",
     "prod-eu.availability.0", "prod-eu.availability.+1"],
)  # fmt: skip
def test_an_incident_id_has_one_spelling(alias):
    assert split_incident_id("prod-eu.availability.1") == ("prod-eu.availability", 1)
    with pytest.raises(ValueError, match="not an incident id"):
        split_incident_id(alias)


def test_a_roles_claim_that_is_not_a_list_is_unauthenticated_and_names_are_text():
    with pytest.raises(Unauthenticated, match="roles claim"):
        principal_from_claims({"oid": "u1", "roles": 5})
    principal = principal_from_claims(
        {"oid": "u1", "preferred_username": {"x": 1}, "name": "Alice", "roles": ["DR.Approver"]}
    )
    assert principal.name == "Alice" and principal.roles == ("DR.Approver",)
    assert principal_from_claims({"oid": "u2", "name": 7}).name == "u2"
