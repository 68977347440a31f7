"""Traffic Manager answers compared with the published 2022-04-01 samples (../shared/fixtures)."""

from __future__ import annotations

import pytest

from shared.azure_clients import ArmClient
from tests.plugins.localazure_network import (
    network_topology,
    published,
    settings_of,
    shape_gaps,
)

pytestmark = pytest.mark.conformance
API = "2022-04-01"
PROVIDER = "providers/Microsoft.Network/trafficmanagerprofiles"


@pytest.fixture
def azure(start_local_azure):
    return start_local_azure(network_topology())


@pytest.fixture
def arm(azure):
    client = ArmClient(settings_of(azure), retry_total=0)
    yield client
    client.close()


def profile_path(params: dict) -> str:
    return (
        f"/subscriptions/{params['subscriptionId']}/resourceGroups/"
        f"{params['resourceGroupName']}/{PROVIDER}/{params['profileName']}"
    )


def endpoint_path(params: dict) -> str:
    return f"{profile_path(params)}/{params['endpointType']}/{params['endpointName']}"


def make_profile(arm, params: dict) -> None:
    body = {
        "location": "global",
        "properties": {
            "trafficRoutingMethod": "Priority",
            "dnsConfig": {"relativeName": params["profileName"]},
        },
    }
    arm.request("PUT", profile_path(params), api_version=API, body=body)


@pytest.mark.parametrize(
    "sample",
    [
        "trafficmanager/endpoint_put_external_2022-04-01.json",
        "trafficmanager/endpoint_put_external_always_serve_2024-04-01-preview_folder.json",
    ],
)
def test_published_endpoint_put_is_accepted_and_answered_in_the_published_shape(arm, sample):
    example = published(f"arm/{sample}")
    params = example["parameters"]
    make_profile(arm, params)

    status, body = arm.request(
        "PUT", endpoint_path(params), api_version=API, body=params["parameters"]
    )
    assert status == 201
    assert shape_gaps(example["responses"]["201"]["body"], body) == []
    status, _ = arm.request(
        "PUT", endpoint_path(params), api_version=API, body=params["parameters"]
    )
    assert status == 200


def test_published_endpoint_patch_changes_only_the_target(arm):
    put = published("arm/trafficmanager/endpoint_put_external_2022-04-01.json")["parameters"]
    example = published("arm/trafficmanager/endpoint_patch_external_target_2022-04-01.json")
    params = example["parameters"]
    make_profile(arm, params)
    arm.request("PUT", endpoint_path(put), api_version=API, body=put["parameters"])

    status, body = arm.request(
        "PATCH", endpoint_path(params), api_version=API, body=params["parameters"]
    )
    assert status == 200
    expected = example["responses"]["200"]["body"]
    assert shape_gaps(expected, body) == []
    assert body["properties"]["target"] == expected["properties"]["target"]
    assert body["properties"]["endpointLocation"] == expected["properties"]["endpointLocation"]


def test_published_endpoint_get_shape(arm):
    put = published("arm/trafficmanager/endpoint_put_external_2022-04-01.json")["parameters"]
    example = published("arm/trafficmanager/endpoint_get_external_2022-04-01.json")
    make_profile(arm, put)
    arm.request("PUT", endpoint_path(put), api_version=API, body=put["parameters"])

    status, body = arm.request("GET", endpoint_path(example["parameters"]), api_version=API)
    assert status == 200
    assert shape_gaps(example["responses"]["200"]["body"], body) == []
    assert body["type"] == example["responses"]["200"]["body"]["type"]


def test_published_priority_profile_put_with_nested_endpoints(arm):
    example = published("arm/trafficmanager/profile_put_priority_nested_endpoints_2022-04-01.json")
    params = example["parameters"]

    status, body = arm.request(
        "PUT", profile_path(params), api_version=API, body=params["parameters"]
    )
    assert status == 201
    assert shape_gaps(example["responses"]["201"]["body"], body) == []
    # Unlike the published sample (a known quirk), the priorities given are kept.
    assert [e["properties"]["priority"] for e in body["properties"]["endpoints"]] == [1, 2]


def test_profile_get_has_the_published_shape(arm):
    example = published("arm/trafficmanager/profile_get_with_endpoints_2022-04-01.json")
    status, body = arm.request(
        "GET",
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-odoo-prod/"
        f"{PROVIDER}/tm-odoo",
        api_version=API,
    )
    assert status == 200
    assert shape_gaps(example["responses"]["200"]["body"], body) == []


def test_shape_comparison_notices_missing_keys_and_other_kinds():
    sample = {"a": 1, "b": {"c": "x"}, "d": [{"e": True}]}
    assert shape_gaps(sample, {"a": 2, "b": {"c": "y"}, "d": [{"e": False}]}) == []
    assert shape_gaps(sample, {"a": "1", "b": {}, "d": []}) == [
        "a: published number, ours str",
        "b.c: missing",
        "d: published a non-empty list, ours is empty",
    ]
