"""Traffic Manager in local Azure, driven by the real TrafficManagerManagementClient."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from devhost.localazure import trafficmanager
from shared.azure_clients import trafficmanager_client
from tests.plugins.localazure_network import (
    SUBSCRIPTION,
    bring_up_secondary,
    control,
    network_topology,
    settings_of,
    wait_for,
)

RG = "rg-odoo-prod"
EXTERNAL = "ExternalEndpoints"


@pytest.fixture
def azure(start_local_azure, pg_server):
    return start_local_azure(
        network_topology(db_host="127.0.0.1", db_port=pg_server.port, db_name="postgres")
    )


@pytest.fixture
def tm(azure):
    client = trafficmanager_client(SUBSCRIPTION, settings_of(azure))
    yield client
    client.close()


def statuses(tm) -> dict[str, str]:
    profile = tm.profiles.get(RG, "tm-odoo")
    return {e.name: e.properties.endpoint_monitor_status for e in profile.properties.endpoints}


def test_profile_get_has_priority_routing_ttl_and_computed_monitor_status(tm):
    profile = tm.profiles.get(RG, "tm-odoo")

    assert profile.location == "global"
    assert profile.properties.traffic_routing_method == "Priority"
    assert profile.properties.dns_config.ttl == 30
    assert profile.properties.dns_config.fqdn == "tm-odoo.trafficmanager.net"
    assert profile.properties.monitor_config.profile_monitor_status == "Online"
    # The secondary runs no Odoo replicas, so its probes fail.
    assert statuses(tm) == {"odoo-weu": "Online", "odoo-neu": "Degraded"}


def test_endpoint_get_answers_the_published_shape(tm):
    ep = tm.endpoints.get(RG, "tm-odoo", EXTERNAL, "odoo-weu")

    assert ep.type == "Microsoft.Network/trafficManagerProfiles/externalEndpoints"
    assert ep.id.endswith("/trafficManagerProfiles/tm-odoo/externalEndpoints/odoo-weu")
    assert ep.properties.priority == 1
    assert ep.properties.endpoint_status == "Enabled"
    assert ep.properties.target == "odoo-weu.contoso-finance.example"


def test_disabling_an_endpoint_reports_monitor_status_disabled(tm):
    updated = tm.endpoints.update(
        RG, "tm-odoo", EXTERNAL, "odoo-weu", {"properties": {"endpointStatus": "Disabled"}}
    )
    assert updated.properties.endpoint_status == "Disabled"
    assert updated.properties.endpoint_monitor_status == "Disabled"
    assert updated.properties.priority == 1  # a PATCH keeps what it does not name


def test_failed_region_makes_its_endpoint_degraded_and_restore_brings_it_back(azure, tm):
    control(azure, "POST", "/_local/regions/westeurope/fail")
    assert statuses(tm)["odoo-weu"] == "Degraded"
    assert tm.profiles.get(RG, "tm-odoo").properties.monitor_config.profile_monitor_status == (
        "Degraded"
    )

    control(azure, "POST", "/_local/regions/westeurope/restore")
    assert statuses(tm)["odoo-weu"] == "Online"


def test_secondary_goes_online_once_its_odoo_runs(azure, tm):
    bring_up_secondary(azure)

    wait_for(lambda: statuses(tm)["odoo-neu"] == "Online", what="odoo-neu Online")


def test_put_creates_an_endpoint_with_201_and_replaces_it_with_200(tm):
    seen = []
    body = {
        "properties": {
            "target": "odoo-dr.contoso-finance.example",
            "endpointStatus": "Enabled",
            "endpointLocation": "North Europe",
            "priority": 3,
        }
    }
    created = tm.endpoints.create_or_update(
        RG,
        "tm-odoo",
        EXTERNAL,
        "odoo-dr",
        body,
        raw_response_hook=lambda r: seen.append(r.http_response.status_code),
    )
    assert created.properties.priority == 3
    tm.endpoints.create_or_update(
        RG,
        "tm-odoo",
        EXTERNAL,
        "odoo-dr",
        body,
        raw_response_hook=lambda r: seen.append(r.http_response.status_code),
    )
    assert seen == [201, 200]


def test_endpoint_without_priority_gets_the_next_free_one(tm):
    body = {"properties": {"target": "x.example", "endpointLocation": "North Europe"}}
    created = tm.endpoints.create_or_update(RG, "tm-odoo", EXTERNAL, "odoo-extra", body)
    assert created.properties.priority == 3


def test_two_endpoints_may_not_share_a_priority(tm):
    with pytest.raises(HttpResponseError) as err:
        tm.endpoints.update(RG, "tm-odoo", EXTERNAL, "odoo-neu", {"properties": {"priority": 1}})
    assert err.value.status_code == 400
    assert "priority" in str(err.value)


def test_priority_out_of_range_is_refused(tm):
    with pytest.raises(HttpResponseError) as err:
        tm.endpoints.update(RG, "tm-odoo", EXTERNAL, "odoo-neu", {"properties": {"priority": 0}})
    assert err.value.status_code == 400


def test_delete_endpoint_answers_200_then_204_and_it_is_gone(tm):
    seen = []
    hook = {"raw_response_hook": lambda r: seen.append(r.http_response.status_code)}
    tm.endpoints.delete(RG, "tm-odoo", EXTERNAL, "odoo-neu", **hook)
    tm.endpoints.delete(RG, "tm-odoo", EXTERNAL, "odoo-neu", **hook)
    assert seen == [200, 204]
    with pytest.raises(ResourceNotFoundError):
        tm.endpoints.get(RG, "tm-odoo", EXTERNAL, "odoo-neu")


def test_unknown_endpoint_type_is_a_bad_request(tm):
    with pytest.raises(HttpResponseError) as err:
        tm.endpoints.get(RG, "tm-odoo", "SideEndpoints", "odoo-weu")
    assert err.value.status_code == 400


def test_profile_put_replaces_endpoints_and_ttl(tm):
    body = {
        "location": "global",
        "properties": {
            "profileStatus": "Enabled",
            "trafficRoutingMethod": "Priority",
            "dnsConfig": {"relativeName": "odoo-dr", "ttl": 10},
            "monitorConfig": {"protocol": "HTTP", "port": 80, "path": "/web/health"},
            "endpoints": [
                {
                    "name": "only",
                    "type": "Microsoft.Network/trafficManagerProfiles/externalEndpoints",
                    "properties": {
                        "target": "a.example",
                        "endpointLocation": "West Europe",
                        "priority": 5,
                    },
                }
            ],
        },
    }
    seen = []
    profile = tm.profiles.create_or_update(
        RG, "tm-new", body, raw_response_hook=lambda r: seen.append(r.http_response.status_code)
    )
    assert seen == [201]
    assert profile.properties.dns_config.ttl == 10
    assert profile.properties.dns_config.fqdn == "odoo-dr.trafficmanager.net"
    assert [e.name for e in profile.properties.endpoints] == ["only"]
    assert profile.properties.endpoints[0].properties.endpoint_monitor_status == "Online"
    names = [p.name for p in tm.profiles.list_by_resource_group(RG)]
    assert sorted(names) == ["tm-new", "tm-odoo"]


def test_priority_choice_takes_the_lowest_online_enabled_endpoint(azure, tm):
    profile = trafficmanager.find_profile(azure.state, "tm-odoo")
    choice = trafficmanager.choose_endpoint(azure.state, profile)
    assert (choice.endpoint, choice.region) == ("odoo-weu", "westeurope")

    tm.endpoints.update(
        RG, "tm-odoo", EXTERNAL, "odoo-weu", {"properties": {"endpointStatus": "Disabled"}}
    )
    choice = trafficmanager.choose_endpoint(azure.state, profile_now(azure))
    # Nothing enabled is online: Traffic Manager still answers with the lowest enabled one.
    assert choice.endpoint == "odoo-neu"
    assert "no endpoint is online" in choice.reason


def profile_now(azure):
    return trafficmanager.find_profile(azure.state, "tm-odoo")


def test_throttling_fault_reaches_the_sdk_as_429_then_succeeds_on_retry(azure, tm):
    control(
        azure,
        "POST",
        "/_local/faults",
        {
            "operation": "Microsoft.Network/trafficManagerProfiles/endpoints/write",
            "kind": "throttle",
            "count": 1,
            "seconds": 0.1,
        },
    )
    seen = []
    tm.endpoints.update(
        RG,
        "tm-odoo",
        EXTERNAL,
        "odoo-neu",
        {"properties": {"endpointStatus": "Disabled"}},
        raw_response_hook=lambda r: seen.append(r.http_response.status_code),
    )
    assert seen == [429, 200]


def test_changes_survive_a_restart_of_local_azure(tmp_path):
    """Traffic Manager, AKS, Kubernetes and lock state is kept in the state folder."""
    import yaml

    from devhost.localazure import LocalAzure
    from shared.azure_clients import ArmClient, containerservice_client
    from tests.plugins.localazure_network import NETWORK_PROVIDERS, kube

    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(network_topology()))
    lock = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Network/"
        "trafficmanagerprofiles/tm-odoo/providers/Microsoft.Authorization/locks/keep"
    )
    with LocalAzure(tmp_path / "state", path, providers=NETWORK_PROVIDERS) as azure:
        with trafficmanager_client(SUBSCRIPTION, settings_of(azure)) as tm:
            tm.endpoints.update(
                RG, "tm-odoo", EXTERNAL, "odoo-weu", {"properties": {"endpointStatus": "Disabled"}}
            )
        with containerservice_client(SUBSCRIPTION, settings_of(azure), polling_interval=0.05) as c:
            c.agent_pools.begin_create_or_update(
                RG, "aks-odoo-neu", "odoo", {"properties": {"count": 2}}
            ).result(timeout=30)
        kube(
            azure, "aks-odoo-neu", "PATCH", "/deployments/odoo-web/scale", {"spec": {"replicas": 2}}
        )
        with ArmClient(settings_of(azure)) as arm:
            arm.request(
                "PUT",
                lock,
                api_version="2020-05-01",
                body={"properties": {"level": "CanNotDelete"}},
            )

    with LocalAzure(tmp_path / "state", path, providers=NETWORK_PROVIDERS) as azure:
        with trafficmanager_client(SUBSCRIPTION, settings_of(azure)) as tm:
            ep = tm.endpoints.get(RG, "tm-odoo", EXTERNAL, "odoo-weu")
            assert ep.properties.endpoint_status == "Disabled"
        with containerservice_client(SUBSCRIPTION, settings_of(azure)) as c:
            assert c.agent_pools.get(RG, "aks-odoo-neu", "odoo").properties.count == 2
        dep = kube(azure, "aks-odoo-neu", "GET", "/deployments/odoo-web")
        assert dep["status"]["readyReplicas"] == 2
        with ArmClient(settings_of(azure)) as arm:
            status, _ = arm.request("GET", lock, api_version="2020-05-01")
            assert status == 200


def test_azure_endpoint_with_a_target_resource_is_accepted_and_probed_by_location(tm):
    body = {
        "properties": {
            "targetResourceId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
            "Microsoft.Network/publicIPAddresses/pip-odoo-neu",
            "endpointStatus": "Enabled",
            "endpointLocation": "northeurope",
            "priority": 9,
        }
    }
    ep = tm.endpoints.create_or_update(RG, "tm-odoo", "AzureEndpoints", "odoo-neu-pip", body)
    assert ep.type == "Microsoft.Network/trafficManagerProfiles/azureEndpoints"
    assert ep.properties.target_resource_id.endswith("/pip-odoo-neu")
    assert ep.properties.endpoint_monitor_status == "Degraded"  # no Odoo runs there yet
