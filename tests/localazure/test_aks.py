"""AKS in local Azure, driven by the real ContainerServiceClient."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.azure_clients import containerservice_client
from tests.plugins.localazure_network import SUBSCRIPTION, network_topology, settings_of

RG = "rg-odoo-prod"


@pytest.fixture
def azure(start_local_azure):
    return start_local_azure(network_topology())


@pytest.fixture
def aks(azure):
    client = containerservice_client(SUBSCRIPTION, settings_of(azure), polling_interval=0.05)
    yield client
    client.close()


def test_managed_cluster_get_reports_running_power_state_and_pools(aks):
    cluster = aks.managed_clusters.get(RG, "aks-odoo-weu")

    assert cluster.location == "westeurope"
    assert cluster.properties.power_state.code == "Running"
    assert cluster.properties.provisioning_state == "Succeeded"
    pools = {p.name: p.count for p in cluster.properties.agent_pool_profiles}
    assert pools == {"system": 1, "odoo": 3}


def test_unknown_cluster_is_not_found(aks):
    with pytest.raises(ResourceNotFoundError):
        aks.managed_clusters.get(RG, "aks-nowhere")


def test_stop_then_start_moves_power_state_through_the_lro(aks):
    aks.managed_clusters.begin_stop(RG, "aks-odoo-weu").result(timeout=30)
    assert aks.managed_clusters.get(RG, "aks-odoo-weu").properties.power_state.code == "Stopped"

    aks.managed_clusters.begin_start(RG, "aks-odoo-weu").result(timeout=30)
    cluster = aks.managed_clusters.get(RG, "aks-odoo-weu")
    assert cluster.properties.power_state.code == "Running"
    assert cluster.properties.provisioning_state == "Succeeded"


def test_start_answers_202_with_a_lowercase_location_header(azure, aks):
    aks.managed_clusters.begin_stop(RG, "aks-odoo-weu").result(timeout=30)
    seen = {}

    def keep_raw(response, *_):
        seen.setdefault("status", response.http_response.status_code)
        seen.setdefault("headers", dict(response.http_response.headers))

    aks.managed_clusters.begin_start(RG, "aks-odoo-weu", raw_response_hook=keep_raw).result(
        timeout=30
    )
    assert seen["status"] == 202
    assert "location" in seen["headers"]
    assert "Azure-AsyncOperation" not in seen["headers"]


def test_starting_a_running_cluster_is_a_no_op_204(aks):
    statuses = []
    poller = aks.managed_clusters.begin_start(
        RG, "aks-odoo-weu", raw_response_hook=lambda r: statuses.append(r.http_response.status_code)
    )
    poller.result(timeout=30)
    assert statuses[0] == 204


def test_scaling_a_pool_is_an_lro_that_ends_succeeded_with_the_new_count(aks):
    pool = aks.agent_pools.get(RG, "aks-odoo-neu", "odoo")
    assert pool.properties.count == 0

    pool.properties.count = 4
    poller = aks.agent_pools.begin_create_or_update(RG, "aks-odoo-neu", "odoo", pool)
    result = poller.result(timeout=30)

    assert result.properties.count == 4
    assert result.properties.provisioning_state == "Succeeded"
    assert aks.agent_pools.get(RG, "aks-odoo-neu", "odoo").properties.provisioning_state == (
        "Succeeded"
    )


def test_pool_put_answers_with_updating_state_and_async_operation_headers(aks):
    seen = {}

    def keep_first(response):
        response.http_response.read()
        seen.setdefault("status", response.http_response.status_code)
        seen.setdefault("headers", dict(response.http_response.headers))
        seen.setdefault("body", response.http_response.text())

    body = {"properties": {"count": 2, "mode": "User"}}
    aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", body, raw_response_hook=keep_first
    ).result(timeout=30)

    assert seen["status"] == 200
    assert "Azure-AsyncOperation" in seen["headers"]
    assert "Retry-After" in seen["headers"]
    assert '"provisioningState": "Updating"' in seen["body"]


def test_creating_a_new_pool_answers_201(aks):
    statuses = []
    aks.agent_pools.begin_create_or_update(
        RG,
        "aks-odoo-neu",
        "burst",
        {"properties": {"count": 1, "mode": "User"}},
        raw_response_hook=lambda r: statuses.append(r.http_response.status_code),
    ).result(timeout=30)
    assert statuses[0] == 201
    names = [p.name for p in aks.agent_pools.list(RG, "aks-odoo-neu")]
    assert names == ["system", "odoo", "burst"]


def test_autoscaling_pool_keeps_count_between_min_and_max(aks):
    body = {"properties": {"count": 9, "enableAutoScaling": True, "minCount": 1, "maxCount": 5}}
    result = aks.agent_pools.begin_create_or_update(RG, "aks-odoo-neu", "odoo", body).result(
        timeout=30
    )
    assert result.properties.count == 5


def test_stopped_pool_is_started_by_put_of_power_state_running(aks):
    aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", {"properties": {"count": 2, "powerState": {"code": "Stopped"}}}
    ).result(timeout=30)
    assert aks.agent_pools.get(RG, "aks-odoo-neu", "odoo").properties.power_state.code == (
        "Stopped"
    )

    result = aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", {"properties": {"powerState": {"code": "Running"}}}
    ).result(timeout=30)
    assert result.properties.power_state.code == "Running"
    assert result.properties.count == 2


def test_bad_pool_name_is_refused_naming_the_rule(aks):
    with pytest.raises(HttpResponseError) as err:
        aks.agent_pools.begin_create_or_update(
            RG, "aks-odoo-neu", "Bad_Name", {"properties": {"count": 1}}
        )
    assert err.value.status_code == 400
    assert "must match" in str(err.value)


def test_injected_lro_failure_makes_the_pool_change_fail(azure, aks):
    import requests

    requests.post(
        azure.base_url + "/_local/faults",
        json={
            "operation": "Microsoft.ContainerService/managedClusters/agentPools/write",
            "kind": "lro_fail",
        },
        headers={"Authorization": f"Bearer {azure.static_token}"},
        verify=str(azure.certs.ca_bundle),
        timeout=10,
    ).raise_for_status()
    poller = aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", {"properties": {"count": 2}}
    )
    with pytest.raises(HttpResponseError):
        poller.result(timeout=30)


def test_user_credential_kubeconfig_names_the_local_kubernetes_api(azure, aks):
    import base64

    creds = aks.managed_clusters.list_cluster_user_credentials(RG, "aks-odoo-weu")
    text = (
        base64.b64decode(creds.kubeconfigs[0].value).decode()
        if isinstance(creds.kubeconfigs[0].value, str)
        else creds.kubeconfigs[0].value.decode()
    )
    assert "/clusters/aks-odoo-weu" in text


def test_read_only_lock_on_a_cluster_refuses_stop(azure, aks):
    from shared.azure_clients import ArmClient

    cluster = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
        "Microsoft.ContainerService/managedClusters/aks-odoo-weu"
    )
    with ArmClient(settings_of(azure), retry_total=0) as arm:
        arm.request(
            "PUT",
            cluster + "/providers/Microsoft.Authorization/locks/freeze",
            api_version="2020-05-01",
            body={"properties": {"level": "ReadOnly"}},
        )
    with pytest.raises(HttpResponseError) as err:
        aks.managed_clusters.begin_stop(RG, "aks-odoo-weu")
    assert err.value.status_code == 409
    assert err.value.error.code == "ScopeLocked"


def test_pool_change_in_a_failed_region_ends_failed_but_the_cluster_stays_readable(azure, aks):
    from tests.plugins.localazure_network import control

    control(azure, "POST", "/_local/regions/northeurope/fail")
    poller = aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", {"properties": {"count": 2}}
    )
    with pytest.raises(HttpResponseError) as err:
        poller.result(timeout=30)
    assert "RegionUnavailable" in str(err.value) or "unavailable" in str(err.value)
    assert aks.managed_clusters.get(RG, "aks-odoo-neu").name == "aks-odoo-neu"

    control(azure, "POST", "/_local/regions/northeurope/restore")
    result = aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", {"properties": {"count": 2}}
    ).result(timeout=30)
    assert result.properties.provisioning_state == "Succeeded"
