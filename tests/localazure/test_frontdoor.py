"""The local front door: priority routing from local Azure's state, cached for the DNS TTL."""

from __future__ import annotations

import pytest
import requests

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
TTL = 30


class FakeClock:
    """The front door's clock, moved by hand so a TTL passes without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def azure(start_local_azure, pg_server, standin_databases):
    return start_local_azure(
        network_topology(
            db_host="127.0.0.1",
            db_port=pg_server.port,
            db_name=standin_databases["writable"],
            ttl=TTL,
        )
    )


@pytest.fixture
def clock(azure):
    fake = FakeClock()
    azure.provider("frontdoor").clock = fake
    return fake


@pytest.fixture
def door(azure, clock):
    return azure.settings()["DR_FRONTDOOR_URL"]


def served(door: str, path: str = "/web/health") -> requests.Response:
    return requests.get(door + path, timeout=10)


def disable(azure, endpoint: str) -> None:
    client = trafficmanager_client(SUBSCRIPTION, settings_of(azure))
    try:
        client.endpoints.update(
            RG,
            "tm-odoo",
            "ExternalEndpoints",
            endpoint,
            {"properties": {"endpointStatus": "Disabled"}},
        )
    finally:
        client.close()


def test_front_door_url_is_an_app_setting_on_loopback(azure):
    assert azure.settings()["DR_FRONTDOOR_URL"].startswith("http://127.0.0.1:")


def test_requests_are_served_by_the_primary_region_with_a_writable_database(door):
    resp = served(door)
    assert resp.status_code == 200
    assert resp.headers["X-Served-Region"] == "westeurope"
    assert resp.headers["X-Served-Endpoint"] == "odoo-weu"
    body = resp.json()
    assert body["status"] == "pass"
    assert body["region"] == "westeurope"
    assert body["database"]["writable"] is True


def test_other_paths_are_proxied_to_the_application(door):
    resp = served(door, "/web/login?db=odoo")
    assert resp.status_code == 200
    assert resp.json()["path"] == "/web/login?db=odoo"


def test_after_cutover_the_old_region_answers_until_the_ttl_has_passed(azure, clock, door):
    assert served(door).headers["X-Served-Region"] == "westeurope"
    bring_up_secondary(azure)
    wait_for(
        lambda: azure.provider("odoo").health("northeurope").status == "pass",
        what="secondary healthy",
    )

    disable(azure, "odoo-weu")
    clock.advance(TTL - 1)
    assert served(door).headers["X-Served-Region"] == "westeurope"  # resolvers still cache it

    clock.advance(2)
    resp = served(door)
    assert resp.headers["X-Served-Region"] == "northeurope"
    assert resp.json()["region"] == "northeurope"


def test_failed_region_gives_502_from_its_cached_answer_then_moves_on(azure, clock, door):
    bring_up_secondary(azure)
    wait_for(
        lambda: azure.provider("odoo").health("northeurope").status == "pass",
        what="secondary healthy",
    )
    assert served(door).headers["X-Served-Region"] == "westeurope"

    control(azure, "POST", "/_local/regions/westeurope/fail")
    resp = served(door)
    assert resp.status_code == 502
    assert resp.headers["X-Served-Region"] == "westeurope"

    # Priority routing moves to the online secondary once the cached answer expires.
    clock.advance(TTL)
    resp = served(door)
    assert resp.status_code == 200
    assert resp.headers["X-Served-Region"] == "northeurope"


def test_with_no_endpoint_online_it_still_answers_the_lowest_enabled_one(azure, clock, door):
    control(azure, "POST", "/_local/regions/westeurope/fail")
    clock.advance(TTL)
    resp = served(door)
    # The secondary runs no Odoo, so nothing is online: the primary is still the answer.
    assert resp.headers["X-Served-Region"] == "westeurope"
    assert resp.status_code == 502


def test_resolution_route_shows_the_cached_answer_and_flush_forgets_it(azure, clock, door):
    served(door)
    clock.advance(10)
    info = requests.get(door + "/_frontdoor/resolution", timeout=10).json()
    assert info["region"] == "westeurope"
    assert info["ttl"] == TTL
    assert info["expiresInSeconds"] == pytest.approx(TTL - 10)

    assert requests.delete(door + "/_frontdoor/resolution", timeout=10).json() == {"flushed": True}
    info = requests.get(door + "/_frontdoor/resolution", timeout=10).json()
    assert info["ageSeconds"] == 0


def test_local_state_dump_shows_every_network_provider(azure, door):
    served(door)
    dump = control(azure, "GET", "/_local/state")["providers"]
    assert dump["trafficmanager"]["profiles"][0]["name"] == "tm-odoo"
    assert [c["name"] for c in dump["aks"]["clusters"]] == ["aks-odoo-weu", "aks-odoo-neu"]
    assert len(dump["kubernetes"]["deployments"]) == 8
    assert dump["odoo"]["westeurope"]["listening"] is True
    assert dump["frontdoor"]["resolution"]["region"] == "westeurope"
    assert dump["locks"] == {"locks": []}


def test_traffic_per_region_shows_when_the_old_region_stops_getting_requests(azure, clock, door):
    served(door)
    served(door)
    bring_up_secondary(azure)
    wait_for(
        lambda: azure.provider("odoo").health("northeurope").status == "pass",
        what="secondary healthy",
    )
    disable(azure, "odoo-weu")
    clock.advance(TTL)
    served(door)

    traffic = requests.get(door + "/_frontdoor/traffic", timeout=10).json()["regions"]
    assert traffic["westeurope"]["requests"] == 2
    assert traffic["northeurope"]["requests"] == 1
    assert traffic["northeurope"]["lastRequestAt"] >= traffic["westeurope"]["lastRequestAt"]
