"""When storage cannot take a signal, the sender hears 503 with Retry-After, not a bare 500.

Azure Monitor retries a webhook on 503 (and 408, 429, 504), not on 500, so an alert that could
not be recorded must be answered so that it is sent again. The app runs on a devhost of its own
whose storage connection string names closed ports on 127.0.0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devhost.azurite import connection_string
from devhost.pg import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def no_storage(devhost_factory):
    host = devhost_factory(
        app_dir=REPO,
        env={
            "AzureWebJobsStorage": connection_string(free_port(), free_port()),
            "DR_CONFIG": str(REPO / "config" / "workloads.yaml"),
            # Nothing here reaches Azure: management calls go to a closed local port.
            "DR_ARM_ENDPOINT": f"https://127.0.0.1:{free_port()}",
            "DR_ARM_STATIC_TOKEN": "no-azure",
        },
    )
    return host.start(timeout_s=90)


def _alert() -> bytes:
    import yaml

    env = yaml.safe_load((REPO / "config" / "workloads.yaml").read_text())["environments"]
    prod = env["prod-eu"]
    target = (
        f"/subscriptions/{prod['subscription_id']}/resourceGroups/{prod['resource_group']}"
        f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/{prod['postgres']['primary']['name']}"
    )
    return json.dumps(
        {
            "schemaId": "azureMonitorCommonAlertSchema",
            "data": {
                "essentials": {
                    "alertId": f"/subscriptions/{prod['subscription_id']}/providers/"
                    "Microsoft.AlertsManagement/alerts/storage-down-1",
                    "alertRule": "pg-health",
                    "severity": "Sev1",
                    "signalType": "Activity Log",
                    "monitorCondition": "Fired",
                    "alertTargetIDs": [target],
                    "firedDateTime": "2026-11-30T22:07:00Z",
                },
                "alertContext": {},
            },
        }
    ).encode()


def test_an_alert_storage_cannot_take_is_503_with_retry_after(no_storage):
    import requests

    r = requests.post(
        f"{no_storage.url}/api/alerts",
        data=_alert(),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )

    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After", "").isdigit()
    assert "send it again" in r.json()["error"]


def test_bad_input_is_still_400_when_storage_is_down(no_storage):
    import requests

    r = requests.post(f"{no_storage.url}/api/alerts", data=b"{not json", timeout=30)

    assert r.status_code == 400
