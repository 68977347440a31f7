"""The local Azure framework: routing, auth, faults, latency, long-running operations."""

from __future__ import annotations

import time

import pytest
import requests
from azure.core.exceptions import HttpResponseError

from devhost.localazure.arm import (
    ArmContext,
    ArmError,
    ArmRequest,
    ArmResponse,
    LocalAzureState,
    OperationsProvider,
    Route,
    Router,
    dispatch,
)
from devhost.localazure.topology import Topology, TopologyError, load_topology
from shared.azure_clients import ArmClient, AzureSettings
from tests.plugins.localazure import RESOURCE_GROUP, SUBSCRIPTION, core_topology

VAULT_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    "/providers/Microsoft.KeyVault/vaults/kv-odoo-prod"
)
VAULT_READ = "Microsoft.KeyVault/vaults/read"
NO_PG = ["devhost.localazure.control", "devhost.localazure.keyvault"]


@pytest.fixture
def vault_only(localazure_factory):
    return localazure_factory(core_topology(postgres={"servers": []}), providers=NO_PG)


def arm(local, retry_total: int = 3) -> ArmClient:
    return ArmClient(AzureSettings.from_env(local.settings()), retry_total=retry_total)


def test_request_without_bearer_token_gets_401_in_arm_error_shape(vault_only):
    settings = vault_only.settings()
    answer = requests.get(
        settings["DR_ARM_ENDPOINT"] + VAULT_PATH,
        params={"api-version": "2023-07-01"},
        verify=settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"


def test_request_with_wrong_token_gets_401(vault_only):
    settings = vault_only.settings()
    answer = requests.get(
        settings["DR_ARM_ENDPOINT"] + VAULT_PATH,
        headers={"Authorization": "Bearer not-the-token"},
        verify=settings["DR_CA_BUNDLE"],
        timeout=10,
    )
    assert answer.status_code == 401


def test_unknown_resource_path_is_404_resource_not_found(vault_only):
    with arm(vault_only) as client, pytest.raises(HttpResponseError) as caught:
        client.request("GET", f"/subscriptions/{SUBSCRIPTION}/nothing/here", api_version="1")
    assert caught.value.status_code == 404
    assert caught.value.error.code == "ResourceNotFound"


def test_route_matches_literal_segments_in_any_case_and_keeps_parameter_casing():
    route = Route("GET", "/subscriptions/{sub}/resourceGroups/{rg}/x", lambda r, c: None, "op")
    assert route.match("get", "/SUBSCRIPTIONS/S1/resourcegroups/My-RG/X") == {
        "sub": "S1",
        "rg": "My-RG",
    }
    assert route.match("GET", "/subscriptions/s1/resourceGroups/rg") is None
    assert route.match("PUT", "/subscriptions/s1/resourceGroups/rg/x") is None


def test_throttle_answers_429_with_retry_after_and_the_sdk_retries_to_success(vault_only):
    vault_only.control(
        "POST", "faults", {"operation": VAULT_READ, "kind": "throttle", "seconds": 0.2}
    )
    started = time.monotonic()
    with arm(vault_only) as client:
        status, body = client.request("GET", VAULT_PATH, api_version="2023-07-01")
    assert status == 200 and body["name"] == "kv-odoo-prod"
    assert time.monotonic() - started >= 0.2
    (fault,) = vault_only.control("GET", "faults")["value"]
    assert fault["fired"] == 1


def test_error500_forever_surfaces_once_retries_are_spent(vault_only):
    vault_only.control(
        "POST", "faults", {"operation": "microsoft.keyvault/*", "kind": "error500", "count": -1}
    )
    with arm(vault_only, retry_total=0) as client, pytest.raises(HttpResponseError) as caught:
        client.request("GET", VAULT_PATH, api_version="2023-07-01")
    assert caught.value.status_code == 500


def test_conflict409_fires_count_times_then_stops(vault_only):
    vault_only.control(
        "POST", "faults", {"operation": VAULT_READ, "kind": "conflict409", "count": 2}
    )
    with arm(vault_only, retry_total=0) as client:
        for _ in range(2):
            with pytest.raises(HttpResponseError) as caught:
                client.request("GET", VAULT_PATH, api_version="2023-07-01")
            assert caught.value.status_code == 409
        status, _ = client.request("GET", VAULT_PATH, api_version="2023-07-01")
    assert status == 200


def test_cleared_faults_no_longer_fire(vault_only):
    vault_only.control("POST", "faults", {"operation": "*", "kind": "error500", "count": -1})
    vault_only.control("DELETE", "faults")
    with arm(vault_only, retry_total=0) as client:
        status, _ = client.request("GET", VAULT_PATH, api_version="2023-07-01")
    assert status == 200


def test_latency_fault_delays_the_answer(vault_only):
    vault_only.control(
        "POST", "faults", {"operation": VAULT_READ, "kind": "latency", "seconds": 0.5}
    )
    started = time.monotonic()
    with arm(vault_only) as client:
        client.request("GET", VAULT_PATH, api_version="2023-07-01")
    assert time.monotonic() - started >= 0.5


def test_topology_latency_applies_to_every_call_of_the_operation(localazure_factory):
    local = localazure_factory(
        core_topology(postgres={"servers": []}, latencies={"Microsoft.KeyVault/*": 0.3}),
        providers=NO_PG,
    )
    with arm(local) as client:
        for _ in range(2):
            started = time.monotonic()
            client.request("GET", VAULT_PATH, api_version="2023-07-01")
            assert time.monotonic() - started >= 0.3


def test_fault_of_unknown_kind_is_rejected_with_the_reason(vault_only):
    with pytest.raises(RuntimeError, match="kind"):
        vault_only.control("POST", "faults", {"operation": "*", "kind": "meteor"})


def test_region_failure_and_restore_reach_every_registered_callback(vault_only):
    seen: list[str] = []
    vault_only.state.on_region_failed(lambda region: seen.append(f"down {region}"))
    vault_only.state.on_region_restored(lambda region: seen.append(f"up {region}"))
    vault_only.control("POST", "regions/WestEurope/fail")
    assert vault_only.control("GET", "regions")["failed"] == ["westeurope"]
    vault_only.control("POST", "regions/westeurope/restore")
    assert seen == ["down westeurope", "up westeurope"]
    assert vault_only.control("GET", "regions")["failed"] == []


def test_state_dump_shows_providers_and_faults(vault_only):
    vault_only.control("POST", "faults", {"operation": "x/*", "kind": "lro_fail"})
    dump = vault_only.control("GET", "state")
    assert "keyvault" in dump["providers"]
    assert dump["faults"][0]["kind"] == "lro_fail"


def test_certificates_and_token_are_kept_across_restarts(vault_only, localazure_factory):
    from devhost.localazure import LocalAzure

    first = vault_only.settings()
    ca_pem = open(first["DR_CA_BUNDLE"]).read()
    vault_only.stop()
    again = LocalAzure(vault_only.state_dir, vault_only.topology_path, providers=NO_PG).start()
    try:
        assert again.settings()["DR_ARM_STATIC_TOKEN"] == first["DR_ARM_STATIC_TOKEN"]
        assert open(again.settings()["DR_CA_BUNDLE"]).read() == ca_pem
        with arm(again) as client:
            assert client.request("GET", VAULT_PATH, api_version="2023-07-01")[0] == 200
    finally:
        again.stop()


# -- long-running operations, through the dispatcher ------------------------------------------


class _SlowProvider:
    name = "slow"

    def __init__(self, work):
        self.work = work

    def routes(self):
        return [
            Route(
                "POST",
                "/subscriptions/{subscription}/providers/Test.Slow/things/{name}/go",
                self.go,
                "Test.Slow/things/go/action",
            )
        ]

    def go(self, req: ArmRequest, ctx: ArmContext) -> ArmResponse:
        return ctx.begin_operation(region="West Europe", work=self.work)


def _lro_setup(work):
    state = LocalAzureState(Topology(), state_dir=None)
    router = Router()
    router.add_provider(OperationsProvider())
    router.add_provider(_SlowProvider(work))
    return state, router


def _call(router, state, method, url):
    path, _, query = url.partition("?")
    path = path.removeprefix("https://local")
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    try:
        return dispatch(
            router,
            state,
            "https://local",
            method=method,
            path=path,
            query=params,
            headers={},
            body=None,
        )
    except ArmError as exc:
        return exc.response()


def _poll(router, state, url, deadline_s=10):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        answer = _call(router, state, "GET", url)
        if answer.body and answer.body.get("status") in ("Succeeded", "Failed"):
            return answer
        time.sleep(0.05)
    raise AssertionError(f"{url} never reached a terminal state")


def test_long_running_operation_reports_in_progress_then_succeeded_with_result():
    state, router = _lro_setup(lambda: (time.sleep(0.3), {"done": True})[1])
    answer = _call(
        router,
        state,
        "POST",
        f"/subscriptions/{SUBSCRIPTION}/providers/Test.Slow/things/a/go?api-version=1",
    )
    assert answer.status == 202
    async_url = answer.headers["Azure-AsyncOperation"]
    assert "/providers/Test.Slow/locations/westeurope/azureAsyncOperation/" in async_url
    assert answer.headers["Retry-After"] == "0"
    running = _call(router, state, "GET", async_url)
    assert running.body["status"] == "InProgress"
    assert running.headers["Retry-After"] == "0.2"
    assert _call(router, state, "GET", answer.headers["Location"]).status == 202
    assert _poll(router, state, async_url).body["status"] == "Succeeded"
    final = _call(router, state, "GET", answer.headers["Location"])
    assert (final.status, final.body) == (200, {"done": True})


def test_exception_in_the_work_ends_the_operation_failed_with_its_message():
    def boom():
        raise RuntimeError("disk on fire")

    state, router = _lro_setup(boom)
    answer = _call(
        router, state, "POST", f"/subscriptions/{SUBSCRIPTION}/providers/Test.Slow/things/a/go"
    )
    failed = _poll(router, state, answer.headers["Azure-AsyncOperation"])
    assert failed.body["status"] == "Failed"
    assert "disk on fire" in failed.body["error"]["message"]
    assert _call(router, state, "GET", answer.headers["Location"]).status >= 400


def test_lro_fail_fault_ends_a_successful_operation_failed():
    state, router = _lro_setup(lambda: None)
    state.faults.add(
        __import__("devhost.localazure.arm", fromlist=["Fault"]).Fault(
            operation="Test.Slow/*", kind="lro_fail"
        )
    )
    answer = _call(
        router, state, "POST", f"/subscriptions/{SUBSCRIPTION}/providers/Test.Slow/things/a/go"
    )
    assert _poll(router, state, answer.headers["Azure-AsyncOperation"]).body["status"] == "Failed"
    second = _call(
        router, state, "POST", f"/subscriptions/{SUBSCRIPTION}/providers/Test.Slow/things/b/go"
    )
    assert (
        _poll(router, state, second.headers["Azure-AsyncOperation"]).body["status"] == "Succeeded"
    )


# -- topology -----------------------------------------------------------------------------


def test_topology_rejects_a_replica_of_an_unknown_primary(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("postgres:\n  servers:\n    - {name: b, location: x, replicaOf: a}\n")
    with pytest.raises(TopologyError, match="replicaOf 'a'"):
        load_topology(path)


def test_topology_rejects_unknown_top_level_sections(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("postgress: {}\n")
    with pytest.raises(TopologyError, match="postgress"):
        load_topology(path)


def test_topology_passes_other_providers_sections_through_untouched(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("trafficManager: {profiles: [{name: p}]}\nodoo: {replicas: 2}\n")
    topology = load_topology(path)
    assert topology.section("trafficManager") == {"profiles": [{"name": "p"}]}
    assert topology.section("odoo") == {"replicas": 2}
    assert topology.section("aks") is None


def test_demo_topology_file_is_valid():
    from pathlib import Path

    topology = load_topology(Path(__file__).resolve().parents[2] / "config" / "topology.yaml")
    names = {s.name: s for s in topology.postgres.servers}
    assert names["odoo-pg-neu"].replicaOf == "odoo-pg-weu"
    assert topology.secret("odoo-db-password")
