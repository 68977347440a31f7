"""Azure Monitor alerts as an action group sends them (common alert schema), for the demo.

Written from the documented schema: ``essentials`` with the routing fields, and the
``alertContext`` of the monitoring service (resource health, platform metrics, log search).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _essentials(
    *,
    alert_guid: str,
    rule: str,
    severity: str,
    signal_type: str,
    service: str,
    target: str,
    fired_at: datetime,
    resolved: bool,
    description: str,
) -> dict[str, Any]:
    essentials = {
        "alertId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.AlertsManagement/alerts/"
        f"{alert_guid}",
        "alertRule": rule,
        "severity": severity,
        "signalType": signal_type,
        "monitorCondition": "Resolved" if resolved else "Fired",
        "monitoringService": service,
        "alertTargetIDs": [target.lower()],
        "configurationItems": [target.rsplit("/", 1)[-1]],
        "originAlertId": alert_guid,
        "firedDateTime": _iso(fired_at),
        "description": description,
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if resolved:
        essentials["resolvedDateTime"] = _iso(datetime.now(UTC))
    return essentials


def resource_health(
    target: str, rule: str, *, fired_at: datetime, alert_guid: str | None = None, resolved=False
) -> dict[str, Any]:
    """A Resource Health activity log alert: the resource became Unavailable (or Available)."""
    status = "Available" if resolved else "Unavailable"
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                alert_guid=alert_guid or str(uuid.uuid4()),
                rule=rule,
                severity="Sev0",
                signal_type="Activity Log",
                service="Resource Health",
                target=target,
                fired_at=fired_at,
                resolved=resolved,
                description=f"Resource health of {target.rsplit('/', 1)[-1]} is {status}",
            ),
            "alertContext": {
                "channels": "Admin, Operation",
                "eventSource": "ResourceHealth",
                "eventTimestamp": _iso(fired_at),
                "level": "Critical" if not resolved else "Informational",
                "operationName": "Microsoft.Resourcehealth/healthevent/Activated/action",
                "status": "Resolved" if resolved else "Active",
                "properties": {
                    "title": f"{target.rsplit('/', 1)[-1]} is {status.lower()}",
                    "details": None,
                    "currentHealthStatus": status,
                    "previousHealthStatus": "Unavailable" if resolved else "Available",
                    "type": "Downtime",
                    "cause": "PlatformInitiated",
                },
            },
            "customProperties": None,
        },
    }


def metric(
    target: str,
    rule: str,
    *,
    metric_name: str,
    namespace: str,
    value: float,
    threshold: float,
    operator: str = "GreaterThan",
    fired_at: datetime,
    alert_guid: str | None = None,
    severity: str = "Sev1",
    resolved: bool = False,
) -> dict[str, Any]:
    """A static-threshold platform metric alert (threshold as a string, as published)."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                alert_guid=alert_guid or str(uuid.uuid4()),
                rule=rule,
                severity=severity,
                signal_type="Metric",
                service="Platform",
                target=target,
                fired_at=fired_at,
                resolved=resolved,
                description=f"{metric_name} {operator} {threshold}",
            ),
            "alertContext": {
                "properties": None,
                "conditionType": "SingleResourceMultipleMetricCriteria",
                "condition": {
                    "windowSize": "PT1M",
                    "allOf": [
                        {
                            "metricName": metric_name,
                            "metricNamespace": namespace,
                            "operator": operator,
                            "threshold": str(threshold),
                            "timeAggregation": "Average",
                            "dimensions": [],
                            "metricValue": value,
                            "webTestName": None,
                        }
                    ],
                    "windowStartTime": _iso(fired_at - timedelta(minutes=1)),
                    "windowEndTime": _iso(fired_at),
                },
            },
            "customProperties": None,
        },
    }


def log_search(
    target: str,
    rule: str,
    *,
    query: str,
    description: str,
    fired_at: datetime,
    window_start: datetime,
    alert_guid: str | None = None,
) -> dict[str, Any]:
    """A Log Alerts V2 alert (no embedded results; links to the search)."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                alert_guid=alert_guid or str(uuid.uuid4()),
                rule=rule,
                severity="Sev1",
                signal_type="Log",
                service="Log Alerts V2",
                target=target,
                fired_at=fired_at,
                resolved=False,
                description=description,
            ),
            "alertContext": {
                "properties": {},
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "PT5M",
                    "allOf": [
                        {
                            "searchQuery": query,
                            "metricMeasureColumn": None,
                            "targetResourceTypes": "['Microsoft.DBforPostgreSQL/flexibleServers']",
                            "operator": "GreaterThan",
                            "threshold": "0",
                            "timeAggregation": "Count",
                            "dimensions": [],
                            "metricValue": 5,
                            "failingPeriods": {
                                "numberOfEvaluationPeriods": 1,
                                "minFailingPeriodsToAlert": 1,
                            },
                            "linkToSearchResultsUI": "https://portal.azure.com",
                            "linkToFilteredSearchResultsUI": "https://portal.azure.com",
                            "linkToSearchResultsAPI": "https://api.loganalytics.io",
                            "linkToFilteredSearchResultsAPI": "https://api.loganalytics.io",
                        }
                    ],
                    "windowStartTime": _iso(window_start),
                    "windowEndTime": _iso(fired_at),
                },
            },
            "customProperties": None,
        },
    }
