"""Local Azure's answers against the published ARM and Key Vault samples (../shared/fixtures).

Every field a sample carries must be in our answer with the same JSON type; long-running
operations must carry the same headers. Skips, saying why, where the samples are not present.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.plugins.localazure import RESOURCE_GROUP, SUBSCRIPTION

pytestmark = pytest.mark.conformance

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "arm"
SERVERS = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    "/providers/Microsoft.DBforPostgreSQL/flexibleServers"
)
PRIMARY, REPLICA = "odoo-pg-weu", "odoo-pg-neu"


def sample(relative: str) -> dict[str, Any]:
    path = FIXTURES / relative
    if not path.exists():
        pytest.skip(f"published samples not present at {FIXTURES} (they live beside the repo)")
    return json.loads(path.read_text())


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def shape_mismatches(published: Any, ours: Any, where: str = "$") -> list[str]:
    """Fields of ``published`` that ``ours`` lacks or carries with another JSON type."""
    if json_type(published) != json_type(ours):
        return [f"{where}: {json_type(published)} in the sample, {json_type(ours)} here"]
    problems: list[str] = []
    if isinstance(published, dict):
        for key, value in published.items():
            if key not in ours:
                problems.append(f"{where}.{key}: missing")
            else:
                problems.extend(shape_mismatches(value, ours[key], f"{where}.{key}"))
    elif isinstance(published, list) and published and ours:
        problems.extend(shape_mismatches(published[0], ours[0], f"{where}[0]"))
    return problems


def call(local, method: str, path: str, body: Any = None, base: str | None = None):
    settings = local.settings()
    return requests.request(
        method,
        (base or settings["DR_ARM_ENDPOINT"]) + path,
        params={"api-version": "2025-08-01"},
        json=body,
        headers={"Authorization": f"Bearer {settings['DR_ARM_STATIC_TOKEN']}"},
        verify=settings["DR_CA_BUNDLE"],
        timeout=30,
    )


def lro_headers_conform(published: dict[str, str], ours: Any) -> list[str]:
    problems = [f"header {name} missing" for name in published if name not in ours]
    for name in ("Azure-AsyncOperation", "Location"):
        if name in published and name in ours:
            kind = "azureAsyncOperation" if name == "Azure-AsyncOperation" else "operationResults"
            pattern = rf"/providers/Microsoft\.DBforPostgreSQL/locations/[a-z]+/{kind}/[\w-]+\?"
            if not re.search(pattern, ours[name]):
                problems.append(f"{name} {ours[name]} is not a {kind} URL")
    return problems


def wait_terminal(local, url: str) -> dict[str, Any]:
    import time

    settings = local.settings()
    for _ in range(300):
        body = requests.get(
            url,
            headers={"Authorization": f"Bearer {settings['DR_ARM_STATIC_TOKEN']}"},
            verify=settings["DR_CA_BUNDLE"],
            timeout=30,
        ).json()
        if body["status"] in ("Succeeded", "Failed", "Canceled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{url} did not end")


def test_server_get_has_the_published_primary_shape(local_azure):
    published = sample("postgresql/servers_get_primary_2025-08-01.json")["responses"]["200"]
    ours = call(local_azure, "GET", f"{SERVERS}/{PRIMARY}").json()
    assert shape_mismatches(published["body"], ours) == []


def test_replica_list_has_the_published_shape(local_azure):
    published = sample("postgresql/replicas_list_by_server_2025-08-01.json")["responses"]["200"]
    ours = call(local_azure, "GET", f"{SERVERS}/{PRIMARY}/replicas").json()
    assert shape_mismatches(published["body"], ours) == []


def test_async_operation_status_has_the_published_shape(local_azure):
    published = sample("lro/arm_async_operation_status_inprogress_vm_start.json")
    answer = call(local_azure, "POST", f"{SERVERS}/{REPLICA}/restart")
    status = wait_terminal(local_azure, answer.headers["Azure-AsyncOperation"])
    assert shape_mismatches(published, status) == []
    assert status["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("fixture", "action"),
    [
        ("postgresql/servers_stop_2025-08-01.json", "stop"),
        ("postgresql/servers_start_2025-08-01.json", "start"),
    ],
)
def test_stop_and_start_answer_202_with_the_published_headers(local_azure, fixture, action):
    published = sample(fixture)["responses"]["202"]["headers"]
    answer = call(local_azure, "POST", f"{SERVERS}/{REPLICA}/{action}")
    assert answer.status_code == 202
    assert lro_headers_conform(published, answer.headers) == []
    assert wait_terminal(local_azure, answer.headers["Azure-AsyncOperation"])["status"] == (
        "Succeeded"
    )


def test_point_in_time_restore_answers_202_with_the_published_headers(local_azure):
    published = sample("postgresql/servers_create_point_in_time_restore_2025-08-01.json")
    body = json.loads(json.dumps(published["parameters"]["parameters"]))
    body["location"] = "westeurope"
    body["properties"]["sourceServerResourceId"] = f"{SERVERS}/{PRIMARY}"
    body["properties"]["pointInTimeUTC"] = "2999-01-01T00:00:00Z"
    rejected = call(local_azure, "PUT", f"{SERVERS}/odoo-pg-conformance", body)
    assert rejected.status_code == 400  # the future cannot be restored
    body["properties"].pop("pointInTimeUTC")
    body["properties"]["pointInTimeUTC"] = _now_iso()
    answer = call(local_azure, "PUT", f"{SERVERS}/odoo-pg-conformance", body)
    assert answer.status_code == 202
    assert lro_headers_conform(published["responses"]["202"]["headers"], answer.headers) == []
    assert wait_terminal(local_azure, answer.headers["Azure-AsyncOperation"])["status"] == (
        "Succeeded"
    )


def test_key_vault_secret_has_the_published_shape(local_azure):
    published = sample("keyvault/get_secret_7.6.json")["responses"]["200"]["body"]
    settings = local_azure.settings()
    ours = call(
        local_azure, "GET", "secrets/odoo-db-password", base=settings["DR_KEYVAULT_URL"]
    ).json()
    assert shape_mismatches(published, ours) == []


def test_forced_standalone_promotion_answers_202_with_the_published_headers(local_azure):
    published = sample("postgresql/servers_promote_replica_forced_standalone_2025-08-01.json")
    answer = call(
        local_azure, "PATCH", f"{SERVERS}/{REPLICA}", published["parameters"]["parameters"]
    )
    assert answer.status_code == 202
    assert lro_headers_conform(published["responses"]["202"]["headers"], answer.headers) == []
    assert wait_terminal(local_azure, answer.headers["Azure-AsyncOperation"])["status"] == (
        "Succeeded"
    )
    after = call(local_azure, "GET", f"{SERVERS}/{REPLICA}").json()
    assert after["properties"]["replica"]["role"] == "None"


def test_lowercase_promote_values_of_older_samples_are_accepted(local_azure):
    published = sample("postgresql/promote_replica_forced_standalone_2024-08-01.json")
    answer = call(
        local_azure, "PATCH", f"{SERVERS}/{REPLICA}", published["parameters"]["parameters"]
    )
    assert answer.status_code == 202
    assert wait_terminal(local_azure, answer.headers["Azure-AsyncOperation"])["status"] == (
        "Succeeded"
    )


def _now_iso() -> str:
    import datetime as dt

    return dt.datetime.now(dt.UTC).isoformat()
