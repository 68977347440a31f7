"""Signal parsing against the payloads Microsoft publishes (../shared/fixtures, when present)."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.models import MonitorCondition, SignalKind, SignalSource
from shared.signals import SignalError, is_subscription_validation, parse_alert, parse_events
from tests.shared.test_signals import _json, _only_signal_errors, _paths, _replace

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        not FIXTURES.is_dir(), reason=f"published samples not found at {FIXTURES.resolve()}"
    ),
]


def fixture(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def _wrap_fragment(name: str, monitoring_service: str, signal_type: str) -> dict:
    """A published alertContext fragment inside minimal essentials."""
    context = json.loads(fixture(f"alerts/alert_context_fragments/{name}"))["alertContext"]
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": f"/subscriptions/x/providers/Microsoft.AlertsManagement/alerts/{name}",
                "monitoringService": monitoring_service,
                "signalType": signal_type,
                "monitorCondition": "Fired",
            },
            "alertContext": context,
        },
    }


@pytest.mark.parametrize(
    "name, kind, condition, severity",
    [
        ("common_schema_metric_static_resolved.json", SignalKind.METRIC, "resolved", 3),
        ("common_schema_metric_static_fired_test_action.json", SignalKind.METRIC, "fired", 4),
        ("common_schema_log_search_v2_fired_test_action.json", SignalKind.LOG_SEARCH, "fired", 4),
        (
            "common_schema_activity_log_administrative_fired_test_action.json",
            SignalKind.ACTIVITY_ADMINISTRATIVE,
            "fired",
            4,
        ),
        (
            "common_schema_resource_health_fired_test_action.json",
            SignalKind.RESOURCE_HEALTH,
            "fired",
            4,
        ),
    ],
)
def test_published_common_schema_alerts_parse(name, kind, condition, severity):
    signal = parse_alert(fixture(f"alerts/{name}"))
    assert signal.source == SignalSource.AZURE_MONITOR
    assert signal.kind == kind
    assert signal.condition == MonitorCondition(condition)
    assert signal.severity == severity
    assert signal.rule_name and signal.resource_id and signal.occurred_at
    assert signal.dedupe_key.startswith("alert:")


def test_published_resolved_metric_alert_reads_threshold_string_and_value():
    signal = parse_alert(fixture("alerts/common_schema_metric_static_resolved.json"))
    assert signal.facts["threshold"] == 25.0 and signal.facts["metric_value"] == 7.727
    assert signal.occurred_at.isoformat().startswith("2019-03-22T14:03:16")


def test_published_sample_targets_match_no_configured_environment():
    from shared.config import load_config

    signal = parse_alert(
        fixture("alerts/common_schema_metric_static_fired_test_action.json"), config=load_config()
    )
    assert signal.environment is None


@pytest.mark.parametrize(
    "name, service, signal_type, kind",
    [
        ("metric_static_platform.json", "Platform", "Metric", SignalKind.METRIC),
        ("metric_dynamic_platform.json", "Platform", "Metric", SignalKind.METRIC_DYNAMIC),
        ("log_search_log_analytics.json", "Log Analytics", "Log", SignalKind.LOG_SEARCH),
        ("log_search_log_alerts_v2.json", "Log Alerts V2", "Log", SignalKind.LOG_SEARCH),
        (
            "activity_log_administrative.json",
            "Activity Log - Administrative",
            "Activity Log",
            SignalKind.ACTIVITY_ADMINISTRATIVE,
        ),
        (
            "activity_log_service_health_maintenance.json",
            "ServiceHealth",
            "ActivityLog",
            SignalKind.SERVICE_HEALTH,
        ),
        (
            "activity_log_resource_health.json",
            "Resource Health",
            "Activity Log",
            SignalKind.RESOURCE_HEALTH,
        ),
    ],
)
def test_published_alert_context_fragments_parse(name, service, signal_type, kind):
    signal = parse_alert(_wrap_fragment(name, service, signal_type))
    assert signal.kind == kind


def test_dynamic_fragment_threshold_is_numeric():
    signal = parse_alert(_wrap_fragment("metric_dynamic_platform.json", "Platform", "Metric"))
    assert signal.facts["threshold"] == 47658.0 and signal.facts["metric_value"] == 50101.0


def test_log_analytics_fragment_reads_result_count_and_us_time_free_fields():
    signal = parse_alert(_wrap_fragment("log_search_log_analytics.json", "Log Analytics", "Log"))
    assert signal.facts["result_count"] == 2.0
    assert signal.facts["included_search_results"] is True
    assert signal.conditions[0].threshold == 10000.0


def test_administrative_fragment_reads_claims_json_inside_a_string():
    signal = parse_alert(
        _wrap_fragment(
            "activity_log_administrative.json", "Activity Log - Administrative", "Activity Log"
        )
    )
    assert signal.facts["caller"] == "22223333-cccc-4444-dddd-5555eeee6666"
    assert signal.facts["operation_name"] == "Microsoft.Compute/virtualMachines/restart/action"


def test_service_health_fragment_reads_impacted_services_string_and_numeric_channels():
    signal = parse_alert(
        _wrap_fragment(
            "activity_log_service_health_maintenance.json", "ServiceHealth", "ActivityLog"
        )
    )
    assert signal.region == "eastus"
    assert signal.facts["incident_type"] == "Maintenance"
    assert signal.signal_type == "Activity Log"


def test_resource_health_fragment_reads_states():
    signal = parse_alert(
        _wrap_fragment("activity_log_resource_health.json", "Resource Health", "Activity Log")
    )
    assert signal.facts["current_health_status"] == "Unavailable"
    assert signal.facts["previous_health_status"] == "Available"


def test_older_metric_schema_is_recognised():
    signal = parse_alert(
        fixture("alerts/noncommon/metric_alert_static_AzureMonitorMetricAlert.json")
    )
    assert signal.kind == SignalKind.METRIC and signal.schema_id == "AzureMonitorMetricAlert"
    assert signal.severity == 3 and signal.rule_name == "test-metricAlertRule"
    assert signal.facts["metric_value"] == 100.0 and signal.condition == MonitorCondition.FIRED


def test_older_activity_log_schema_is_recognised():
    name = "alerts/noncommon/activity_log_administrative_microsoft_insights_activityLogs.json"
    signal = parse_alert(fixture(name))
    assert signal.kind == SignalKind.ACTIVITY_ADMINISTRATIVE
    assert signal.facts["caller"] == "user-email@domain.com"
    assert signal.resource_id.endswith("/virtualMachines/test-VM")


@pytest.mark.parametrize(
    "name, kind",
    [
        (
            "health_resources_availability_status_changed_eventgrid.json",
            SignalKind.AVAILABILITY_STATUS_CHANGED,
        ),
        (
            "health_resources_availability_status_changed_cloudevents.json",
            SignalKind.AVAILABILITY_STATUS_CHANGED,
        ),
        ("health_resources_resource_annotated_eventgrid.json", SignalKind.RESOURCE_ANNOTATED),
        ("resources_resource_write_success_eventgrid.json", SignalKind.RESOURCE_WRITE),
        ("resources_resource_action_success_eventgrid.json", SignalKind.RESOURCE_ACTION),
        (
            "keyvault_secret_new_version_created_eventgrid_spec_example.json",
            SignalKind.KEYVAULT_OTHER,
        ),
        (
            "keyvault_secret_new_version_created_cloudevents_spec_example.json",
            SignalKind.KEYVAULT_OTHER,
        ),
        ("keyvault_secret_new_version_created_eventgrid_docs.json", SignalKind.KEYVAULT_OTHER),
        ("storage_blob_created_cloudevents_docs.json", SignalKind.EVENT_OTHER),
    ],
)
def test_published_events_parse(name, kind):
    (signal,) = parse_events(fixture(f"eventgrid/{name}"))
    assert signal.kind == kind and signal.source == SignalSource.EVENT_GRID
    assert signal.dedupe_key.startswith("event:") and signal.occurred_at is not None


def test_event_grid_and_cloudevents_copies_of_one_event_agree():
    (grid,) = parse_events(
        fixture("eventgrid/health_resources_availability_status_changed_eventgrid.json")
    )
    (cloud,) = parse_events(
        fixture("eventgrid/health_resources_availability_status_changed_cloudevents.json")
    )
    assert grid.dedupe_key == cloud.dedupe_key
    assert grid.resource_id == cloud.resource_id and grid.condition == cloud.condition
    assert grid.condition == MonitorCondition.RESOLVED  # Unavailable -> Available


def test_docs_key_vault_sample_with_padded_key_and_value_reads_like_the_spec_sample():
    (docs,) = parse_events(
        fixture("eventgrid/keyvault_secret_new_version_created_eventgrid_docs.json")
    )
    (spec,) = parse_events(
        fixture("eventgrid/keyvault_secret_new_version_created_eventgrid_spec_example.json")
    )
    for fact in ("object_name", "version", "expires_at", "not_before", "vault_name"):
        assert docs.facts[fact] == spec.facts[fact], fact
    assert docs.facts["expires_at"] == "2019-05-28T22:21:42+00:00"


def test_derived_near_expiry_event_from_the_published_data_shape():
    event = json.loads(
        fixture("eventgrid/keyvault_secret_new_version_created_eventgrid_spec_example.json")
    )
    event["eventType"] = "Microsoft.KeyVault.SecretNearExpiry"
    (signal,) = parse_events([event])
    assert signal.kind == SignalKind.KEYVAULT_NEAR_EXPIRY and signal.severity == 3


def test_published_validation_event_is_not_a_signal():
    events = json.loads(fixture("eventgrid/subscription_validation_event_eventgrid.json"))
    assert is_subscription_validation(events[0])
    (result,) = parse_events(events)
    assert isinstance(result, SignalError)


def _published() -> list[str]:
    if not FIXTURES.is_dir():
        return ["absent"]
    names = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("alerts/*.json"))
    names += sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("alerts/noncommon/*.json"))
    return names + sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("eventgrid/*.json"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_published()), st.data())
def test_published_payloads_with_any_field_replaced_give_a_signal_or_a_signal_error(name, data):
    document = json.loads(fixture(name))
    paths = list(_paths(document))
    for _ in range(data.draw(st.integers(1, 4))):
        try:
            document = _replace(document, data.draw(st.sampled_from(paths)), data.draw(_json))
        except (KeyError, IndexError, TypeError):
            continue
    call = parse_events if name.startswith("eventgrid") else parse_alert
    _only_signal_errors(call, document)
