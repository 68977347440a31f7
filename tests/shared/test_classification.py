"""Classification rules, table-driven: one row per situation a runbook path must (not) get."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.classification import (
    DISASTER_THRESHOLD,
    classify,
    correlation_key,
    incident_id,
    scenario_family,
    split_incident_id,
)
from shared.config import load_config
from shared.models import (
    Evidence,
    EvidenceKey,
    MonitorCondition,
    RunbookPath,
    ScenarioFamily,
    Signal,
    SignalKind,
    SignalSource,
)
from shared.signals import parse_alert

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
PAYLOADS = Path(__file__).parent / "payloads"
CONFIG = load_config()


def sig(
    kind: SignalKind,
    *,
    component=None,
    rule="rule",
    description=None,
    resolved=False,
    severity=2,
    region=None,
    **facts,
) -> Signal:
    return Signal(
        source=SignalSource.AZURE_MONITOR,
        kind=kind,
        rule_name=rule,
        description=description,
        environment="prod-eu",
        component=component,
        region=region,
        severity=severity,
        resource_id=f"/subscriptions/x/{component or 'thing'}",
        condition=MonitorCondition.RESOLVED if resolved else MonitorCondition.FIRED,
        occurred_at=T0,
        dedupe_key=f"{rule}:{resolved}",
        facts=facts,
    )


def ev(key: EvidenceKey, value, detail=None, minutes=0) -> Evidence:
    return Evidence(
        key=key,
        value=value,
        observed_at=T0 + timedelta(minutes=minutes),
        source="test",
        detail=detail,
    )


def payload(name):
    return parse_alert((PAYLOADS / name).read_bytes(), config=CONFIG)


HEALTHY_DB = [ev(EvidenceKey.PRIMARY_REACHABLE, True), ev(EvidenceKey.REPLICA_HEALTHY, True)]

CASES = [
    (
        "networking incident during month-end close with PostgreSQL healthy",
        [
            sig(
                SignalKind.METRIC,
                component="aks-primary",
                rule="traefik-ingress-latency",
                description="Ingress latency above 2 s, packet loss on the node network",
            )
        ],
        [*HEALTHY_DB, ev(EvidenceKey.PERIOD_CLOSE, True)],
        RunbookPath.HA_HANDLED,
    ),
    (
        "faulty deployment that corrupts postings",
        [
            sig(SignalKind.RESOURCE_WRITE, component="aks-primary", rule="odoo deployment 17.0.5"),
            sig(
                SignalKind.LOG_SEARCH,
                component="aks-primary",
                rule="odoo-unbalanced-journal-entries",
                description="Unbalanced ledger postings after release 17.0.5",
            ),
        ],
        [
            ev(EvidenceKey.RECENT_RELEASE, "17.0.5"),
            ev(EvidenceKey.DATA_DAMAGE, True, "42 unbalanced moves"),
        ],
        RunbookPath.DATABASE_CORRUPTION,
    ),
    (
        "faulty deployment that corrupts postings while the primary is also unreachable",
        [
            sig(SignalKind.LOG_SEARCH, rule="odoo-unbalanced-journal-entries"),
            sig(
                SignalKind.RESOURCE_HEALTH,
                component="postgres-primary",
                current_health_status="Unavailable",
            ),
        ],
        [
            ev(EvidenceKey.DATA_DAMAGE, True),
            ev(EvidenceKey.PRIMARY_REACHABLE, False),
            ev(EvidenceKey.PRIMARY_REGION_AVAILABLE, False),
        ],
        RunbookPath.DATABASE_CORRUPTION,
    ),
    (
        "suspected ransomware signal",
        [
            sig(
                SignalKind.LOG_SEARCH,
                rule="defender-alert",
                description="Ransomware behaviour detected on attachment storage",
            )
        ],
        [],
        RunbookPath.SECURITY_INCIDENT,
    ),
    (
        "security alert from the activity log",
        [sig(SignalKind.ACTIVITY_SECURITY, rule="defender", description="suspicious sign-in")],
        [ev(EvidenceKey.SECURITY_COMPROMISE, True, "service principal key used from new ASN")],
        RunbookPath.SECURITY_INCIDENT,
    ),
    (
        "primary region down with the database intact",
        [
            sig(
                SignalKind.SERVICE_HEALTH,
                region="westeurope",
                incident_type="Incident",
                impacted_regions="westeurope",
            ),
            sig(
                SignalKind.RESOURCE_HEALTH,
                component="postgres-primary",
                rule="pg-health",
                current_health_status="Unavailable",
            ),
        ],
        [ev(EvidenceKey.PRIMARY_REACHABLE, False), ev(EvidenceKey.REPLICA_HEALTHY, True)],
        RunbookPath.REGIONAL_OUTAGE,
    ),
    (
        "primary server unreachable and region reported unavailable",
        [
            sig(
                SignalKind.AVAILABILITY_STATUS_CHANGED,
                component="postgres-primary",
                availability_state="Unavailable",
            )
        ],
        [ev(EvidenceKey.PRIMARY_REACHABLE, False), ev(EvidenceKey.PRIMARY_REGION_AVAILABLE, False)],
        RunbookPath.REGIONAL_OUTAGE,
    ),
    (
        "service health incident in another region",
        [
            sig(
                SignalKind.SERVICE_HEALTH,
                region="eastus",
                incident_type="Incident",
                impacted_regions="eastus",
            )
        ],
        HEALTHY_DB,
        RunbookPath.HA_HANDLED,
    ),
    (
        "planned maintenance notice in the primary region",
        [
            sig(
                SignalKind.SERVICE_HEALTH,
                region="westeurope",
                incident_type="Maintenance",
                impacted_regions="westeurope",
            )
        ],
        [],
        RunbookPath.HA_HANDLED,
    ),
    (
        "failed release with data untouched",
        [
            sig(
                SignalKind.LOG_SEARCH,
                component="aks-primary",
                rule="odoo-http-5xx",
                description="HTTP 500 error rate above 20% since the rollout of 17.0.6",
            )
        ],
        [ev(EvidenceKey.RECENT_RELEASE, "17.0.6"), ev(EvidenceKey.APP_HEALTHY, False), *HEALTHY_DB],
        RunbookPath.FAILED_RELEASE,
    ),
    (
        "redis down with PostgreSQL healthy",
        [sig(SignalKind.METRIC, component="redis", rule="redis-weu-unavailable", severity=1)],
        [*HEALTHY_DB, ev(EvidenceKey.DEPENDENCY_DOWN, "redis", "connection refused")],
        RunbookPath.DEPENDENCY_FAILURE,
    ),
    (
        "expired Key Vault certificate",
        [
            sig(
                SignalKind.KEYVAULT_EXPIRED,
                component="key-vault",
                severity=1,
                object_name="odoo-ingress-tls",
                object_type="Certificate",
            )
        ],
        [],
        RunbookPath.DEPENDENCY_FAILURE,
    ),
    (
        "a secret that expires next month is no disaster",
        [sig(SignalKind.KEYVAULT_NEAR_EXPIRY, component="key-vault", object_name="db-password")],
        [],
        RunbookPath.HA_HANDLED,
    ),
    (
        "primary unreachable alone stays below the threshold",
        [sig(SignalKind.METRIC, component="postgres-primary", rule="pg-connections-failed")],
        [ev(EvidenceKey.PRIMARY_REACHABLE, False)],
        RunbookPath.HA_HANDLED,
    ),
    (
        "outage signals that have all resolved",
        [
            sig(
                SignalKind.RESOURCE_HEALTH,
                component="postgres-primary",
                rule="pg-health",
                current_health_status="Unavailable",
            ),
            sig(
                SignalKind.RESOURCE_HEALTH,
                component="postgres-primary",
                rule="pg-health",
                resolved=True,
                current_health_status="Available",
            ),
        ],
        [],
        RunbookPath.HA_HANDLED,
    ),
    (
        "a replica that cannot be promoted rules a failover out",
        [
            sig(
                SignalKind.SERVICE_HEALTH,
                region="westeurope",
                incident_type="Incident",
                impacted_regions="westeurope",
            )
        ],
        [ev(EvidenceKey.PRIMARY_REACHABLE, False), ev(EvidenceKey.REPLICA_HEALTHY, False)],
        RunbookPath.HA_HANDLED,
    ),
]


@pytest.mark.parametrize("title, signals, evidence, expected", CASES, ids=[c[0] for c in CASES])
def test_situation_gets_its_path(title, signals, evidence, expected):
    result = classify(signals, evidence, primary_region="westeurope")
    assert result.path == expected, result.reasons
    assert result.disaster == (expected != RunbookPath.HA_HANDLED)
    assert result.reasons and all(r.endswith(".") for r in result.reasons)


def test_corruption_is_never_a_regional_failover_and_says_why():
    _, signals, evidence, _ = CASES[2]
    result = classify(signals, evidence, primary_region="westeurope")
    assert result.candidates["regional-outage"] == 0.0
    assert any("replica holds the same damage" in r for r in result.reasons)


def test_month_end_close_is_named_in_the_reasons():
    _, signals, evidence, _ = CASES[0]
    result = classify(signals, evidence, primary_region="westeurope")
    assert any("Month-end close" in r for r in result.reasons)
    assert any("primary PostgreSQL server answers" in r for r in result.reasons)


def test_below_threshold_names_the_strongest_path_and_its_score():
    _, signals, evidence, _ = CASES[13]
    result = classify(signals, evidence, primary_region="westeurope")
    assert result.confidence > 0 and not result.disaster
    assert any(
        f"below the disaster threshold {DISASTER_THRESHOLD:.2f}" in r for r in result.reasons
    )


def test_later_evidence_of_a_key_replaces_earlier_evidence():
    signals = [
        sig(
            SignalKind.SERVICE_HEALTH,
            region="westeurope",
            incident_type="Incident",
            impacted_regions="westeurope",
        )
    ]
    evidence = [
        ev(EvidenceKey.PRIMARY_REACHABLE, False, minutes=0),
        ev(EvidenceKey.PRIMARY_REACHABLE, True, minutes=5),
    ]
    assert classify(signals, evidence, primary_region="westeurope").path == RunbookPath.HA_HANDLED


def test_operator_declaration_of_a_path_counts():
    from shared.signals import declaration_signal

    signal = declaration_signal(
        environment="prod-eu",
        declared_by="olga",
        reason="bad data",
        request_id="1",
        suspected_path="database-corruption",
    )
    result = classify([signal])
    assert result.path == RunbookPath.DATABASE_CORRUPTION
    assert "olga declared a suspected database-corruption." in result.reasons


def test_classification_of_parsed_payloads():
    ransomware = payload("alert_activity_security_ransomware.json")
    assert classify([ransomware]).path == RunbookPath.SECURITY_INCIDENT
    outage = [
        payload("alert_service_health_weu_incident.json"),
        payload("alert_resource_health_pg_unavailable.json"),
    ]
    result = classify(
        outage, [ev(EvidenceKey.PRIMARY_REACHABLE, False)], primary_region="westeurope"
    )
    assert result.path == RunbookPath.REGIONAL_OUTAGE


@pytest.mark.parametrize(
    "name, family",
    [
        ("alert_activity_security_ransomware.json", ScenarioFamily.SECURITY),
        ("alert_log_v2_posting_errors.json", ScenarioFamily.DATA),
        ("alert_resource_health_pg_unavailable.json", ScenarioFamily.AVAILABILITY),
        ("alert_metric_pg_cpu_fired.json", ScenarioFamily.AVAILABILITY),
        ("alert_metric_pg_cpu_resolved.json", ScenarioFamily.AVAILABILITY),
    ],
)
def test_family_of_one_signal(name, family):
    assert scenario_family(payload(name)) == family


def test_expired_secret_folds_into_dependency_family():
    signal = sig(SignalKind.KEYVAULT_EXPIRED, component="key-vault", object_name="x")
    assert scenario_family(signal) == ScenarioFamily.DEPENDENCY


def test_correlation_key_and_incident_id_round_trip():
    key = correlation_key("prod-eu", ScenarioFamily.AVAILABILITY)
    assert key == "prod-eu.availability"
    assert incident_id(key, 3) == "prod-eu.availability.3"
    assert split_incident_id("prod-eu.availability.3") == ("prod-eu.availability", 3)
    for bad in ("prod-eu.availability", "prod-eu.weather.1", "x", "prod-eu.data.one"):
        with pytest.raises(ValueError):
            split_incident_id(bad)
    with pytest.raises(ValueError):
        incident_id(key, 0)
