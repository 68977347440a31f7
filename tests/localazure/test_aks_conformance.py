"""AKS answers compared with the published 2025-10-01 samples (../shared/fixtures)."""

from __future__ import annotations

import time

import pytest

from shared.azure_clients import ArmClient
from tests.plugins.localazure_network import published, settings_of, shape_gaps

pytestmark = pytest.mark.conformance
API = "2025-10-01"
SUB = "00000000-0000-0000-0000-000000000000"
CLUSTER = (
    f"/subscriptions/{SUB}/resourceGroups/rg1/providers/"
    "Microsoft.ContainerService/managedClusters/clustername1"
)
# Fields of the published cluster that local Azure leaves out: identity, encryption, SSH and
# network details that no recovery step reads or changes.
CLUSTER_LEFT_OUT = {
    "properties.diskEncryptionSetID",
    "properties.linuxProfile",
    "properties.servicePrincipalProfile",
    "properties.upgradeSettings",
    "properties.networkProfile.dnsServiceIP",
    "properties.networkProfile.ipFamilies",
    "properties.networkProfile.loadBalancerProfile",
    "properties.networkProfile.outboundType",
    "properties.networkProfile.podCidr",
    "properties.networkProfile.podCidrs",
    "properties.networkProfile.serviceCidr",
    "properties.networkProfile.serviceCidrs",
    "properties.agentPoolProfiles[].availabilityZones",
    "tags.archv2",
    "tags.tier",
}


@pytest.fixture
def azure(start_local_azure):
    return start_local_azure(
        {
            "subscription": SUB,
            "resourceGroup": "rg1",
            "aks": {
                "operationSeconds": 0.2,
                "clusters": [
                    {
                        "name": "clustername1",
                        "region": "eastus",
                        "agentPools": [{"name": "nodepool1", "count": 3, "mode": "System"}],
                    }
                ],
            },
        }
    )


@pytest.fixture
def arm(azure):
    client = ArmClient(settings_of(azure), retry_total=0)
    yield client
    client.close()


def wait_succeeded(arm, path: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        _, body = arm.request("GET", path, api_version=API)
        if body["properties"]["provisioningState"] == "Succeeded":
            return body
        assert time.monotonic() < deadline, f"{path} did not reach Succeeded"
        time.sleep(0.1)


def test_managed_cluster_get_has_the_published_shape(arm):
    example = published("arm/aks/managed_clusters_get_2025-10-01.json")
    status, body = arm.request("GET", CLUSTER, api_version=API)
    assert status == 200
    assert shape_gaps(example["responses"]["200"]["body"], body, CLUSTER_LEFT_OUT) == []


def test_agent_pool_get_has_the_published_shape(arm):
    example = published("arm/aks/agent_pools_get_2025-10-01.json")
    status, body = arm.request("GET", CLUSTER + "/agentPools/nodepool1", api_version=API)
    assert status == 200
    assert shape_gaps(example["responses"]["200"]["body"], body) == []


def test_published_agent_pool_create_answers_201_creating_then_succeeds(arm):
    example = published("arm/aks/agent_pools_create_or_update_2025-10-01.json")
    path = CLUSTER + "/agentPools/" + example["parameters"]["agentPoolName"]

    status, body = arm.request(
        "PUT", path, api_version=API, body=example["parameters"]["parameters"]
    )
    assert status == 201
    assert body["properties"]["provisioningState"] == "Creating"
    assert shape_gaps(example["responses"]["201"]["body"], body) == []
    final = wait_succeeded(arm, path)
    assert shape_gaps(example["responses"]["200"]["body"], final) == []
    assert final["properties"]["nodeTaints"] == ["Key1=Value1:NoSchedule"]


def test_published_autoscale_update_echoes_the_count_then_the_autoscaler_bounds_it(arm):
    example = published("arm/aks/agent_pools_update_autoscale_2025-10-01.json")
    path = CLUSTER + "/agentPools/nodepool1"

    status, body = arm.request(
        "PUT", path, api_version=API, body=example["parameters"]["parameters"]
    )
    assert status == 200
    assert shape_gaps(example["responses"]["201"]["body"], body) == []
    assert body["properties"]["count"] == 3  # as published: the count asked for
    assert wait_succeeded(arm, path)["properties"]["count"] == 2  # within minCount..maxCount


def test_published_start_via_power_state_put_answers_starting(arm):
    example = published("arm/aks/agent_pools_start_via_put_powerstate_2025-10-01.json")
    path = CLUSTER + "/agentPools/nodepool1"
    arm.request(
        "PUT", path, api_version=API, body={"properties": {"powerState": {"code": "Stopped"}}}
    )
    wait_succeeded(arm, path)

    status, body = arm.request(
        "PUT", path, api_version=API, body=example["parameters"]["parameters"]
    )
    assert status == 200
    assert body["properties"]["provisioningState"] == "Starting"
    assert body["properties"]["powerState"] == {"code": "Running"}
    assert (
        shape_gaps(
            example["responses"]["200"]["body"],
            body,
            {"properties.enableAutoScaling", "properties.minCount", "properties.maxCount"},
        )
        == []
    )


@pytest.mark.parametrize("action", ["stop", "start"])
def test_published_start_and_stop_answer_202_with_location_or_204(azure, arm, action):
    import requests

    example = published(f"arm/aks/managed_clusters_{action}_2025-10-01.json")
    settings = azure.settings()

    def post():
        return requests.post(
            f"{settings['DR_ARM_ENDPOINT']}{CLUSTER}/{action}?api-version={API}",
            headers={"Authorization": f"Bearer {settings['DR_ARM_STATIC_TOKEN']}"},
            verify=settings["DR_CA_BUNDLE"],
            timeout=10,
        )

    if action == "start":
        first = post()
        assert first.status_code == 204  # already running: the published no-op answer
        arm.request("POST", CLUSTER + "/stop", api_version=API)
        time.sleep(0.5)
    resp = post()
    assert resp.status_code == 202
    assert set(example["responses"]["202"]["headers"]) <= {k.lower() for k in resp.headers}
    assert "/operationresults/" in resp.headers["location"].lower()


def test_async_operation_status_has_the_published_fields(arm):
    running = published("arm/lro/arm_async_operation_status_inprogress_vm_start.json")

    status, body = arm.request(
        "PUT",
        CLUSTER + "/agentPools/nodepool1",
        api_version=API,
        body={"properties": {"count": 4}},
    )
    assert status == 200
    # The ArmClient hides headers, so read the operation from local Azure's state dump.
    _, state = arm.request("GET", "/_local/state", api_version=API)
    op_id = state["operations"][-1]["id"]
    _, op = arm.request(
        "GET",
        f"/subscriptions/{SUB}/providers/Microsoft.ContainerService/locations/eastus/"
        f"azureAsyncOperation/{op_id}",
        api_version=API,
    )
    assert shape_gaps(running, op) == []
    assert op["status"] in ("InProgress", "Succeeded")


def test_per_cluster_operation_status_has_the_published_preview_shape(arm):
    example = published("arm/lro/aks_operation_status_result_get_2025-10-02-preview.json")
    arm.request(
        "PUT", CLUSTER + "/agentPools/nodepool1", api_version=API, body={"properties": {"count": 4}}
    )
    _, state = arm.request("GET", "/_local/state", api_version=API)
    op_id = state["operations"][-1]["id"]

    status, body = arm.request("GET", f"{CLUSTER}/operations/{op_id}", api_version=API)
    assert status == 200
    assert shape_gaps(example["responses"]["200"]["body"], body) == []
    assert body["id"] == f"{CLUSTER}/operations/{op_id}"
