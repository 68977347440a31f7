"""Signal parsing on payloads written from the documented schemas (tests/shared/payloads)."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import load_config
from shared.models import MonitorCondition, SignalKind, SignalSource
from shared.signals import (
    SignalError,
    declaration_signal,
    is_subscription_validation,
    parse_alert,
    parse_event,
    parse_events,
    raw_ref,
    split_events,
)

PAYLOADS = Path(__file__).parent / "payloads"
CONFIG = load_config()


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def test_metric_alert_on_primary_resolves_environment_component_and_region():
    signal = parse_alert(payload("alert_metric_pg_cpu_fired.json"), config=CONFIG)
    assert signal.source == SignalSource.AZURE_MONITOR
    assert signal.kind == SignalKind.METRIC
    assert signal.environment == "prod-eu"
    assert signal.component == "postgres-primary"
    assert signal.region == "westeurope"
    assert signal.severity == 2
    assert signal.condition == MonitorCondition.FIRED
    assert signal.rule_name == "pg-weu-cpu-high"
    assert signal.occurred_at == datetime(2026, 11, 30, 22, 5, 11, 123456, tzinfo=UTC)


def test_threshold_written_as_string_becomes_a_number_and_keeps_its_text():
    signal = parse_alert(payload("alert_metric_pg_cpu_fired.json"), config=CONFIG)
    (condition,) = signal.conditions
    assert condition.threshold == 90.0 and condition.threshold_text == "90"
    assert condition.metric_value == 97.25
    assert signal.facts["metric_name"] == "cpu_percent"
    assert condition.dimensions == {"ResourceId": "odoo-pg-weu"}


def test_fired_and_resolved_of_one_alert_have_different_dedupe_keys():
    fired = parse_alert(payload("alert_metric_pg_cpu_fired.json"))
    resolved = parse_alert(payload("alert_metric_pg_cpu_resolved.json"))
    again = parse_alert(payload("alert_metric_pg_cpu_fired.json"))
    assert fired.dedupe_key == again.dedupe_key
    assert fired.dedupe_key != resolved.dedupe_key
    assert resolved.condition == MonitorCondition.RESOLVED
    assert resolved.occurred_at == datetime(2026, 11, 30, 22, 20, tzinfo=UTC)


def test_raw_reference_is_the_sha256_of_the_exact_bytes():
    body = payload("alert_metric_pg_cpu_fired.json")
    signal = parse_alert(body)
    assert signal.raw == raw_ref(body)
    assert signal.raw.blob.endswith(f"{signal.raw.sha256}.json") and signal.raw.size == len(body)


def test_dynamic_threshold_alert_matches_upper_case_target_id_of_the_replica():
    signal = parse_alert(payload("alert_metric_dynamic_replica_lag.json"), config=CONFIG)
    assert signal.kind == SignalKind.METRIC_DYNAMIC
    assert signal.component == "postgres-replica" and signal.region == "northeurope"
    assert signal.severity == 1  # a numeric severity
    assert signal.facts["metric_value"] == 48.0  # a metric value written as a string


def test_log_alerts_v2_carry_query_and_count():
    signal = parse_alert(payload("alert_log_v2_posting_errors.json"), config=CONFIG)
    assert signal.kind == SignalKind.LOG_SEARCH
    assert signal.component == "aks-primary"
    assert signal.facts["search_query"].startswith("ContainerLogV2")
    assert signal.facts["metric_value"] == 42.0


def test_log_analytics_v1_context_reads_top_level_fields_and_us_dates():
    signal = parse_alert(payload("alert_log_analytics_v1_context.json"), config=CONFIG)
    assert signal.kind == SignalKind.LOG_SEARCH
    assert signal.facts["result_count"] == 381
    assert signal.conditions[0].threshold == 100.0
    assert signal.facts["included_search_results"] is False
    assert signal.environment == "prod-eu" and signal.component == "resource-group"


def test_resource_health_alert_reads_health_states():
    signal = parse_alert(payload("alert_resource_health_pg_unavailable.json"), config=CONFIG)
    assert signal.kind == SignalKind.RESOURCE_HEALTH
    assert signal.facts["current_health_status"] == "Unavailable"
    assert signal.condition == MonitorCondition.FIRED
    assert signal.severity == 0


def test_service_health_with_numeric_enums_and_array_of_impacted_services():
    signal = parse_alert(payload("alert_service_health_weu_incident.json"), config=CONFIG)
    assert signal.kind == SignalKind.SERVICE_HEALTH
    assert signal.signal_type == "Activity Log"  # "ActivityLog" normalised
    assert signal.region == "westeurope"
    assert signal.environment == "prod-eu" and signal.component == "subscription"
    assert signal.facts["event_source"] == "2" and signal.facts["level"] == "3"
    assert signal.facts["incident_type"] == "Incident"


def test_impacted_services_as_json_inside_a_string_is_decoded():
    doc = json.loads(payload("alert_service_health_weu_incident.json"))
    props = doc["data"]["alertContext"]["properties"]
    props["impactedServices"] = json.dumps(props["impactedServices"])
    del props["region"]
    signal = parse_alert(doc)
    assert signal.facts["impacted_regions"] == "westeurope"


def test_security_alert_reads_caller_from_claims_inside_a_string():
    signal = parse_alert(payload("alert_activity_security_ransomware.json"), config=CONFIG)
    assert signal.kind == SignalKind.ACTIVITY_SECURITY
    assert signal.facts["caller"] == "svc-backup"
    assert signal.component == "storage"


def test_alert_with_every_essentials_field_null_still_parses():
    signal = parse_alert(payload("alert_budget_all_nulls.json"), config=CONFIG)
    assert signal.kind == SignalKind.ALERT_OTHER
    assert signal.severity is None and signal.rule_name is None and signal.environment is None
    assert signal.dedupe_key == f"raw:{signal.raw.sha256}"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"schemaId": "azureMonitorCommonAlertSchema"}', "no 'data' object"),
        (b'{"data": {"alertContext": {}}}', "no 'data.essentials'"),
        (b'{"data": {"essentials": "Sev1"}}', "'data.essentials' must be an object, not a string"),
        (b'{"data": {"essentials": null}}', "must be an object, not null"),
    ],
)
def test_payload_without_an_essentials_object_is_a_signal_error_naming_it(body, message):
    with pytest.raises(SignalError) as caught:
        parse_alert(body)
    assert message in str(caught.value)


def test_strict_mode_refuses_the_older_schemas():
    context = {"id": "/x", "name": "r", "timestamp": "2026-01-01T00:00:00Z"}
    legacy = {
        "schemaId": "AzureMonitorMetricAlert",
        "data": {"status": "Activated", "context": context},
    }
    assert parse_alert(legacy).kind == SignalKind.METRIC
    with pytest.raises(SignalError, match="data.essentials"):
        parse_alert(legacy, allow_legacy=False)


def test_oversized_alert_body_is_refused():
    with pytest.raises(SignalError, match="above the limit"):
        parse_alert(b" " * (1024 * 1024 + 1))


def test_event_grid_batch_keeps_good_events_and_names_bad_ones():
    results = parse_events(payload("events_pg_unavailable_eventgrid.json"), config=CONFIG)
    health, write, not_object, no_type = results
    assert health.kind == SignalKind.AVAILABILITY_STATUS_CHANGED
    assert health.component == "postgres-primary" and health.severity == 1
    assert health.dedupe_key == "event:aaaaaaaa-0000-4000-8000-000000000001"
    assert write.kind == SignalKind.RESOURCE_WRITE and write.facts["outcome"] == "failure"
    assert write.facts["caller"] == "Dana Deployer" and write.component == "aks-primary"
    assert isinstance(not_object, SignalError) and "event 2" in str(not_object)
    assert isinstance(no_type, SignalError) and "no 'eventType'" in str(no_type)


def test_availability_back_to_available_is_a_resolved_signal():
    events = json.loads(payload("events_pg_unavailable_eventgrid.json"))
    props = events[0]["data"]["resourceInfo"]["properties"]
    props["previousAvailabilityState"], props["availabilityState"] = "Unavailable", "Available"
    assert parse_event(events[0]).condition == MonitorCondition.RESOLVED


def test_key_vault_near_expiry_cloudevent_trims_keys_and_reads_unix_seconds():
    signal = parse_event(
        json.loads(payload("event_keyvault_near_expiry_cloudevent.json")), config=CONFIG
    )
    assert signal.kind == SignalKind.KEYVAULT_NEAR_EXPIRY
    assert signal.schema_id == "CloudEvents"
    assert signal.facts["object_name"] == "odoo-db-password"
    assert signal.facts["version"] == "0123456789abcdef"
    assert signal.facts["expires_at"] == "2026-01-01T00:00:00+00:00"
    assert signal.component == "key-vault" and signal.environment == "prod-eu"


def test_key_vault_certificate_expired_in_camel_case():
    (signal,) = parse_events(
        payload("event_keyvault_certificate_expired_eventgrid.json"), config=CONFIG
    )
    assert signal.kind == SignalKind.KEYVAULT_EXPIRED and signal.severity == 1
    assert signal.facts["object_type"] == "Certificate"
    assert signal.facts["not_before"] is None


def test_subscription_validation_is_recognised_and_never_a_signal():
    event = {
        "id": "1",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "data": {"validationCode": "x"},
    }
    assert is_subscription_validation(event)
    with pytest.raises(SignalError, match="answered by the host"):
        parse_event(event)


def test_events_body_must_be_an_object_or_array():
    with pytest.raises(SignalError, match="object or array"):
        split_events(b'"text"')


def test_declaration_signal_carries_who_and_why():
    signal = declaration_signal(
        environment="prod-eu",
        declared_by="olga",
        reason="ledger off",
        request_id="r1",
        suspected_path="database-corruption",
    )
    assert signal.kind == SignalKind.DECLARATION and signal.environment == "prod-eu"
    assert signal.facts["suspected_path"] == "database-corruption"
    assert signal.dedupe_key == "declaration:r1"


# ---------------------------------------------------------------------------------------
# Any JSON at all: the parsers answer a Signal or a SignalError, never anything else.

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
_KEYS = [
    "alertId",
    "alertRule",
    "severity",
    "signalType",
    "monitorCondition",
    "monitoringService",
    "alertTargetIDs",
    "firedDateTime",
    "resolvedDateTime",
    "configurationItems",
    "originAlertId",
    "description",
]
_essentials = st.dictionaries(st.sampled_from(_KEYS), _json, max_size=8)
_context_keys = [
    "conditionType",
    "condition",
    "properties",
    "claims",
    "SearchQuery",
    "ResultCount",
    "Threshold",
    "status",
    "level",
    "channels",
]
_context = st.dictionaries(st.sampled_from(_context_keys), _json, max_size=6)
_alerts = st.fixed_dictionaries(
    {
        "schemaId": _json,
        "data": st.fixed_dictionaries(
            {"essentials": _essentials, "alertContext": _context | _json}
        ),
    }
)
_types = st.sampled_from(
    [
        "Microsoft.ResourceNotifications.HealthResources.AvailabilityStatusChanged",
        "Microsoft.ResourceNotifications.HealthResources.ResourceAnnotated",
        "Microsoft.Resources.ResourceWriteFailure",
        "Microsoft.Resources.ResourceActionSuccess",
        "Microsoft.KeyVault.SecretNearExpiry",
        "Microsoft.KeyVault.CertificateExpired",
        "Other.Type",
    ]
)
_events = st.fixed_dictionaries(
    {
        "id": _json,
        "eventType": _types,
        "subject": _json,
        "topic": _json,
        "eventTime": _json,
        "data": st.dictionaries(
            st.sampled_from(
                [
                    "resourceInfo",
                    "resourceUri",
                    "claims",
                    "EXP",
                    "ObjectName ",
                    "exp",
                    "httpRequest",
                ]
            ),
            _json,
        ),
    }
)


def _only_signal_errors(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except SignalError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_any_json_document_gives_a_signal_or_a_signal_error(document):
    _only_signal_errors(parse_alert, document, config=CONFIG)
    _only_signal_errors(parse_event, document, config=CONFIG)
    _only_signal_errors(parse_alert, json.dumps(document).encode(), config=CONFIG)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_alerts)
def test_alert_shaped_json_gives_a_signal_or_a_signal_error(document):
    _only_signal_errors(parse_alert, document, config=CONFIG)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_events)
def test_event_shaped_json_gives_a_signal_or_a_signal_error(document):
    _only_signal_errors(parse_event, document, config=CONFIG)
    document["specversion"] = "1.0"
    document["type"] = document.pop("eventType")
    _only_signal_errors(parse_event, document, config=CONFIG)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_signal_or_a_signal_error(body):
    _only_signal_errors(parse_alert, body)
    _only_signal_errors(parse_events, body)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _replace(node, path, value):
    if not path:
        return value
    node[path[0]] = _replace(node[path[0]], path[1:], value)
    return node


_SAMPLES = sorted(p.name for p in PAYLOADS.glob("*.json"))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.data())
def test_our_payloads_with_any_field_replaced_give_a_signal_or_a_signal_error(name, data):
    document = json.loads(payload(name))
    paths = list(_paths(document))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(paths))
        try:
            document = _replace(document, path, data.draw(_json))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    call = parse_events if name.startswith("event") else parse_alert
    _only_signal_errors(call, document, config=CONFIG)


def test_activity_log_event_properties_are_not_taken_for_custom_properties():
    signal = parse_alert(payload("alert_service_health_weu_incident.json"))
    assert signal.custom_properties == {}
    assert parse_alert(payload("alert_metric_pg_cpu_fired.json")).custom_properties == {
        "team": "finance-platform"
    }


@pytest.mark.parametrize(
    "text",
    [
        b'{"data":{"essentials":{"alertId":"\\ud800"}}}',
        b'{"data":{"essentials":{"alertId":"a","alertRule":"x\\udc00y"}}}',
        b'{"data":{"essentials":{"alertId":"a"},"alertContext":{"note":"\\uDFFF"}},"x":1}',
    ],
)
def test_a_lone_surrogate_escape_is_refused_as_not_unicode(text):
    try:
        signal = parse_alert(text)
    except SignalError as exc:
        assert "not valid Unicode" in str(exc)
        return
    # Text the signal does not keep may hold it: then the signal must still be writable.
    signal.model_dump_json().encode("utf-8")


def test_a_surrogate_pair_escape_is_one_character():
    signal = parse_alert(b'{"data":{"essentials":{"alertId":"\\ud83d\\ude00"}}}')
    assert signal.dedupe_key == "alert:\U0001f600:fired"


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(constant):
    body = b'{"data":{"essentials":{"alertId":"a","severity":' + constant + b"}}}"
    with pytest.raises(SignalError, match="not JSON"):
        parse_alert(body)
