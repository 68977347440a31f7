"""Management locks: a lock on a scope refuses deletes (CanNotDelete) or all writes (ReadOnly)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError

from shared.azure_clients import ArmClient, trafficmanager_client
from tests.plugins.localazure_network import SUBSCRIPTION, network_topology, settings_of

RG = "rg-odoo-prod"
GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}"
PROFILE = f"{GROUP}/providers/Microsoft.Network/trafficmanagerprofiles/tm-odoo"
LOCKS = "/providers/Microsoft.Authorization/locks"
API = "2020-05-01"


@pytest.fixture
def azure(start_local_azure):
    topology = network_topology(
        locks=[
            {
                "scope": PROFILE,
                "name": "keep-dns",
                "level": "CanNotDelete",
                "notes": "production DNS",
            }
        ]
    )
    return start_local_azure(topology)


@pytest.fixture
def arm(azure):
    client = ArmClient(settings_of(azure), retry_total=0)
    yield client
    client.close()


@pytest.fixture
def tm(azure):
    client = trafficmanager_client(SUBSCRIPTION, settings_of(azure))
    yield client
    client.close()


def test_lock_of_the_topology_is_readable(arm):
    status, body = arm.request("GET", PROFILE + LOCKS + "/keep-dns", api_version=API)
    assert status == 200
    assert body["type"] == "Microsoft.Authorization/locks"
    assert body["properties"] == {"level": "CanNotDelete", "notes": "production DNS"}


def test_delete_under_a_cannot_delete_lock_is_refused_with_scope_locked(tm):
    with pytest.raises(HttpResponseError) as err:
        tm.profiles.delete(RG, "tm-odoo")
    assert err.value.status_code == 409
    assert err.value.error.code == "ScopeLocked"
    assert "keep-dns" in err.value.message


def test_cannot_delete_lock_still_allows_changes(tm):
    updated = tm.endpoints.update(
        RG,
        "tm-odoo",
        "ExternalEndpoints",
        "odoo-weu",
        {"properties": {"endpointStatus": "Disabled"}},
    )
    assert updated.properties.endpoint_status == "Disabled"


def test_read_only_lock_on_the_resource_group_refuses_every_write(arm, tm):
    status, _ = arm.request(
        "PUT",
        GROUP + LOCKS + "/freeze",
        api_version=API,
        body={"properties": {"level": "ReadOnly"}},
    )
    assert status == 201
    with pytest.raises(HttpResponseError) as err:
        tm.endpoints.update(
            RG,
            "tm-odoo",
            "ExternalEndpoints",
            "odoo-weu",
            {"properties": {"endpointStatus": "Disabled"}},
        )
    assert err.value.status_code == 409
    assert tm.profiles.get(RG, "tm-odoo").name == "tm-odoo"  # reads still work

    _, listing = arm.request("GET", PROFILE + LOCKS, api_version=API)
    assert sorted(lock["name"] for lock in listing["value"]) == ["freeze", "keep-dns"]


def test_removing_the_lock_lets_the_delete_through(arm, tm):
    status, _ = arm.request("DELETE", PROFILE + LOCKS + "/keep-dns", api_version=API)
    assert status == 200
    tm.profiles.delete(RG, "tm-odoo")
    status, _ = arm.request("DELETE", PROFILE + LOCKS + "/keep-dns", api_version=API)
    assert status == 204


def test_unknown_lock_level_is_refused(arm):
    with pytest.raises(HttpResponseError) as err:
        arm.request(
            "PUT", GROUP + LOCKS + "/x", api_version=API, body={"properties": {"level": "Frozen"}}
        )
    assert err.value.status_code == 400
    assert "Frozen" in err.value.message


def test_enforce_refuses_a_delete_of_a_locked_server(azure, arm):
    from devhost.localazure import locks
    from devhost.localazure.arm import ArmError

    server = f"{GROUP}/providers/Microsoft.DBforPostgreSQL/flexibleServers/odoo-pg-weu"
    locks.enforce(azure.state, "DELETE", server)  # nothing locks it yet
    status, _ = arm.request(
        "PUT",
        server + LOCKS + "/keep-db",
        api_version=API,
        body={"properties": {"level": "CanNotDelete"}},
    )
    assert status == 201
    with pytest.raises(ArmError) as err:
        locks.enforce(azure.state, "DELETE", server)
    assert (err.value.status, err.value.code) == (409, "ScopeLocked")
    locks.enforce(azure.state, "PATCH", server)  # CanNotDelete lets changes through
