"""The local Kubernetes API of each AKS cluster: deployments, scale, rollouts, releases."""

from __future__ import annotations

import json

import pytest
import requests

from shared.azure_clients import containerservice_client
from tests.plugins.localazure_network import (
    SUBSCRIPTION,
    network_topology,
    settings_of,
    wait_for,
)

RG = "rg-odoo-prod"
WEU = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/"
    "Microsoft.ContainerService/managedClusters/aks-odoo-weu"
)
DEPLOYMENTS = "/apis/apps/v1/namespaces/odoo/deployments"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


@pytest.fixture
def azure(start_local_azure):
    # Long enough that a test reads a rollout before it ends, even on a busy machine.
    return start_local_azure(network_topology(ready_delay=1.5))


class Kube:
    """A tiny client, as an activity would write one with requests."""

    def __init__(self, azure, cluster_id: str = WEU):
        settings = azure.settings()
        self.base = json.loads(settings["DR_K8S_ENDPOINTS"])[cluster_id]
        self.headers = {"Authorization": f"Bearer {settings['DR_ARM_STATIC_TOKEN']}"}
        self.verify = settings["DR_CA_BUNDLE"]

    def call(self, method: str, path: str, body=None, content_type: str = "application/json"):
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = content_type
        return requests.request(
            method,
            self.base + path,
            headers=headers,
            verify=self.verify,
            timeout=10,
            data=json.dumps(body) if body is not None else None,
        )

    def get(self, path: str):
        resp = self.call("GET", path)
        assert resp.status_code == 200, resp.text
        return resp.json()


@pytest.fixture
def kube(azure):
    return Kube(azure)


def neu(azure) -> Kube:
    return Kube(azure, WEU.replace("aks-odoo-weu", "aks-odoo-neu"))


def done(dep) -> bool:
    want = dep["spec"]["replicas"]
    status = dep["status"]
    return (
        status.get("observedGeneration", 0) >= dep["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
    )


def test_every_cluster_has_an_endpoint_in_the_settings(azure):
    endpoints = json.loads(azure.settings()["DR_K8S_ENDPOINTS"])
    assert sorted(url.rsplit("/", 1)[-1] for url in endpoints.values()) == [
        "aks-odoo-neu",
        "aks-odoo-weu",
    ]


def test_deployments_of_the_topology_are_listed_and_ready(kube):
    listing = kube.get(DEPLOYMENTS)
    assert listing["kind"] == "DeploymentList"
    names = [d["metadata"]["name"] for d in listing["items"]]
    assert names == ["odoo-web", "odoo-worker", "odoo-cron", "odoo-bank-sync"]
    web = listing["items"][0]
    assert web["spec"]["replicas"] == 3
    assert web["status"]["readyReplicas"] == 3
    assert web["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"


def test_secondary_cron_runs_zero_replicas_and_zero_counts_are_left_out(azure):
    cron = neu(azure).get(DEPLOYMENTS + "/odoo-cron")
    assert cron["spec"]["replicas"] == 0
    assert "readyReplicas" not in cron["status"]


def test_scale_subresource_reads_and_writes_replicas(kube):
    scale = kube.get(DEPLOYMENTS + "/odoo-web/scale")
    assert scale["kind"] == "Scale"
    assert scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 3

    scale["spec"]["replicas"] = 5
    resp = kube.call("PUT", DEPLOYMENTS + "/odoo-web/scale", scale)
    assert resp.status_code == 200
    assert resp.json()["spec"]["replicas"] == 5

    dep = kube.get(DEPLOYMENTS + "/odoo-web")
    assert dep["metadata"]["generation"] == 2
    assert dep["status"]["observedGeneration"] == 2
    wait_for(lambda: done(kube.get(DEPLOYMENTS + "/odoo-web")), what="rollout to 5")
    assert kube.get(DEPLOYMENTS + "/odoo-web")["status"]["readyReplicas"] == 5


def test_scale_put_with_a_stale_resource_version_conflicts(kube):
    scale = kube.get(DEPLOYMENTS + "/odoo-web/scale")
    kube.call("PATCH", DEPLOYMENTS + "/odoo-web/scale", {"spec": {"replicas": 4}}, MERGE)
    scale["spec"]["replicas"] = 2
    resp = kube.call("PUT", DEPLOYMENTS + "/odoo-web/scale", scale)
    assert resp.status_code == 409
    assert resp.json()["reason"] == "Conflict"


def test_image_patch_is_a_new_release_that_becomes_ready_after_a_delay(kube):
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "odoo-web", "image": "odoo:17.0-20251201"}]}
            }
        }
    }
    resp = kube.call("PATCH", DEPLOYMENTS + "/odoo-web", patch, STRATEGIC)
    assert resp.status_code == 200, resp.text
    dep = resp.json()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "odoo:17.0-20251201"
    assert {e["name"] for e in container["env"]} >= {"DB_HOST", "DB_NAME"}  # merged, not replaced
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    # A rolling update: the old pods stay ready, none runs the new template yet.
    assert dep["status"]["readyReplicas"] == 3
    assert "updatedReplicas" not in dep["status"]

    wait_for(lambda: done(kube.get(DEPLOYMENTS + "/odoo-web")), what="rollout of the image")


def test_release_history_records_image_and_config_hash(kube):
    kube.call(
        "PATCH",
        DEPLOYMENTS + "/odoo-web",
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": "release 2025-12"}},
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "odoo-web", "image": "odoo:17.0-20251201"}]}
                }
            },
        },
        STRATEGIC,
    )
    kube.call(
        "PATCH",
        DEPLOYMENTS + "/odoo-web",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "odoo-web", "env": [{"name": "WORKERS", "value": "8"}]}
                        ]
                    }
                }
            }
        },
        STRATEGIC,
    )

    history = kube.get("/_local/namespaces/odoo/deployments/odoo-web/releases")["releases"]
    assert [r["revision"] for r in history] == [1, 2, 3]
    assert [r["image"] for r in history] == [
        "odoo:17.0-20251101",
        "odoo:17.0-20251201",
        "odoo:17.0-20251201",
    ]
    assert history[0]["configHash"] == history[1]["configHash"]  # only the image changed
    assert history[2]["configHash"] != history[1]["configHash"]  # the env changed
    assert history[1]["changeCause"] == "release 2025-12"
    assert [r["current"] for r in history] == [False, False, True]
    assert history[0]["rolledOutAt"] is not None


def test_replicasets_carry_the_revision_of_each_release(kube):
    kube.call(
        "PATCH",
        DEPLOYMENTS + "/odoo-web",
        {
            "spec": {
                "template": {
                    "spec": {"containers": [{"name": "odoo-web", "image": "odoo:17.0-20251201"}]}
                }
            }
        },
        STRATEGIC,
    )
    items = kube.get("/apis/apps/v1/namespaces/odoo/replicasets?labelSelector=app%3Dodoo-web")[
        "items"
    ]
    revisions = {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs["spec"]["template"][
            "spec"
        ]["containers"][0]["image"]
        for rs in items
    }
    assert revisions == {"1": "odoo:17.0-20251101", "2": "odoo:17.0-20251201"}


def test_merge_patch_replaces_the_container_list(kube):
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "odoo-web", "image": "odoo:17.0-20251201"}]}
            }
        }
    }
    dep = kube.call("PATCH", DEPLOYMENTS + "/odoo-web", patch, MERGE).json()
    assert "env" not in dep["spec"]["template"]["spec"]["containers"][0]


def test_patch_with_other_content_type_is_unsupported(kube):
    resp = kube.call(
        "PATCH", DEPLOYMENTS + "/odoo-web", [{"op": "replace"}], "application/json-patch+json"
    )
    assert resp.status_code == 415


def test_negative_replicas_are_invalid(kube):
    resp = kube.call("PATCH", DEPLOYMENTS + "/odoo-web/scale", {"spec": {"replicas": -1}}, MERGE)
    assert resp.status_code == 422
    assert "replicas" in resp.json()["message"]


def test_unknown_deployment_is_not_found_in_kubernetes_status_shape(kube):
    resp = kube.call("GET", DEPLOYMENTS + "/nope")
    assert resp.status_code == 404
    assert resp.json()["kind"] == "Status"


def test_requests_without_the_token_are_unauthorized(kube):
    resp = requests.get(kube.base + DEPLOYMENTS, verify=kube.verify, timeout=10)
    assert resp.status_code == 401


def test_pods_wait_for_nodes_then_become_ready(azure):
    secondary = neu(azure)
    secondary.call("PATCH", DEPLOYMENTS + "/odoo-web/scale", {"spec": {"replicas": 2}}, MERGE)
    dep = secondary.get(DEPLOYMENTS + "/odoo-web")
    assert "readyReplicas" not in dep["status"]  # the user pool has no nodes

    aks = containerservice_client(SUBSCRIPTION, settings_of(azure), polling_interval=0.05)
    aks.agent_pools.begin_create_or_update(
        RG, "aks-odoo-neu", "odoo", {"properties": {"count": 2}}
    ).result(timeout=30)
    aks.close()
    wait_for(lambda: done(secondary.get(DEPLOYMENTS + "/odoo-web")), what="pods on new nodes")


def test_stopped_cluster_answers_503_and_pods_restart_after_start(azure, kube):
    aks = containerservice_client(SUBSCRIPTION, settings_of(azure), polling_interval=0.05)
    aks.managed_clusters.begin_stop(RG, "aks-odoo-weu").result(timeout=30)
    resp = kube.call("GET", DEPLOYMENTS)
    assert resp.status_code == 503
    assert "stopped" in resp.json()["message"]

    aks.managed_clusters.begin_start(RG, "aks-odoo-weu").result(timeout=30)
    aks.close()
    dep = kube.get(DEPLOYMENTS + "/odoo-web")
    assert dep["status"].get("readyReplicas", 0) < 3  # the pods start again from nothing
    wait_for(lambda: done(kube.get(DEPLOYMENTS + "/odoo-web")), what="pods after start")


def test_failed_region_makes_its_cluster_api_unavailable(azure, kube):
    from tests.plugins.localazure_network import control

    control(azure, "POST", "/_local/regions/westeurope/fail")
    assert kube.call("GET", DEPLOYMENTS).status_code == 503
    control(azure, "POST", "/_local/regions/westeurope/restore")
    assert kube.call("GET", DEPLOYMENTS).status_code == 200


def test_replicasets_record_the_whole_template_so_a_rollback_restores_configuration(kube):
    kube.call(
        "PATCH",
        DEPLOYMENTS + "/odoo-web",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "odoo-web",
                                "image": "odoo:17.0-bad",
                                "env": [{"name": "WORKERS", "value": "0"}],
                            }
                        ]
                    }
                }
            }
        },
        STRATEGIC,
    )
    sets = kube.get("/apis/apps/v1/namespaces/odoo/replicasets?labelSelector=app%3Dodoo-web")
    first = next(
        rs
        for rs in sets["items"]
        if rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    )
    template = first["spec"]["template"]
    assert {e["name"] for e in template["spec"]["containers"][0]["env"]} == {
        "DB_HOST",
        "DB_PORT",
        "DB_NAME",
    }

    # A rollback puts the old template back: the old ReplicaSet comes back as revision 3.
    template["metadata"]["labels"].pop("pod-template-hash")
    resp = kube.call("PATCH", DEPLOYMENTS + "/odoo-web", {"spec": {"template": template}}, MERGE)
    assert resp.json()["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    history = kube.get("/_local/namespaces/odoo/deployments/odoo-web/releases")["releases"]
    assert [(r["revision"], r["image"]) for r in history] == [
        (2, "odoo:17.0-bad"),
        (3, "odoo:17.0-20251101"),
    ]


def test_strategic_merge_merges_named_lists_and_deletes_on_request():
    from devhost.localazure.kubernetes import merge_patch

    target = {
        "containers": [
            {
                "name": "web",
                "image": "a",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ]
    }
    patch = {
        "containers": [
            {
                "name": "web",
                "env": [
                    {"name": "B", "value": "3"},
                    {"name": "A", "$patch": "delete"},
                    {"name": "C", "value": "4"},
                ],
            }
        ]
    }
    merged = merge_patch(target, patch, strategic=True)
    assert merged == {
        "containers": [
            {
                "name": "web",
                "image": "a",
                "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
            }
        ]
    }
    # The same patch as a JSON merge patch replaces the list and drops the image.
    assert merge_patch(target, patch)["containers"][0].get("image") is None
    assert target["containers"][0]["env"][0] == {"name": "A", "value": "1"}  # not mutated


def test_merge_patch_null_removes_a_key():
    from devhost.localazure.kubernetes import merge_patch

    assert merge_patch({"a": 1, "b": {"c": 2}}, {"b": None}) == {"a": 1}
