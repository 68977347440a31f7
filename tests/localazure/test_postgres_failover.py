"""Promotion, partitions, region failure and point-in-time restore lose exactly what they should."""

from __future__ import annotations

import datetime as dt
import time

import psycopg
import pytest
from azure.core.exceptions import HttpResponseError

from shared.azure_clients import postgres_client
from tests.localazure.test_postgres import query, wait_until
from tests.plugins.localazure import RESOURCE_GROUP, SUBSCRIPTION, azure_settings

PRIMARY, REPLICA = "odoo-pg-weu", "odoo-pg-neu"


@pytest.fixture
def fresh(localazure_factory):
    """A new local Azure with the core topology, and a management client for it."""
    local = localazure_factory()
    client = postgres_client(SUBSCRIPTION, azure_settings(local))
    query(local, PRIMARY, "CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    yield local, client
    client.close()


def insert(local, server: str, *ids: int, note: str = "good") -> None:
    values = ", ".join(f"({i}, '{note}')" for i in ids)
    query(local, server, f"INSERT INTO ledger VALUES {values}")


def ids_on(local, server: str) -> list[int]:
    return [row[0] for row in query(local, server, "SELECT id FROM ledger ORDER BY id")]


def replayed(local, ids: list[int]) -> bool:
    try:
        return ids_on(local, REPLICA) == ids
    except psycopg.Error:
        return False


def promote(client, mode: str, option: str):
    body = {"properties": {"replica": {"promoteMode": mode, "promoteOption": option}}}
    return client.servers.begin_update(RESOURCE_GROUP, REPLICA, body).result()


def test_forced_promotion_after_a_partition_loses_what_the_primary_committed_since(fresh):
    local, client = fresh
    insert(local, PRIMARY, 1, 2)
    wait_until(lambda: replayed(local, [1, 2]), what="replica caught up")

    local.control("POST", f"postgres/{REPLICA}/partition")
    assert client.servers.get(RESOURCE_GROUP, REPLICA).properties.replica.replication_state == (
        "Broken"
    )
    insert(local, PRIMARY, 3, 4, note="after the cut")
    time.sleep(1.5)  # ample time to replicate, were the link up
    promoted = promote(client, "Standalone", "Forced")

    assert promoted.properties.replica.role == "None"
    assert ids_on(local, REPLICA) == [1, 2]
    assert ids_on(local, PRIMARY) == [1, 2, 3, 4]
    assert query(local, REPLICA, "SELECT pg_is_in_recovery()") == [(False,)]
    insert(local, REPLICA, 10)  # the promoted server takes writes


def test_planned_promotion_with_the_primary_answering_loses_nothing(fresh):
    local, client = fresh
    insert(local, PRIMARY, *range(1, 200))
    promote(client, "Standalone", "Planned")
    assert ids_on(local, REPLICA) == list(range(1, 200))
    assert client.servers.get(RESOURCE_GROUP, PRIMARY).properties.state == "Ready"


def test_planned_promotion_of_a_partitioned_replica_fails_and_leaves_it_a_replica(
    fresh, monkeypatch
):
    local, client = fresh
    monkeypatch.setattr("devhost.localazure.postgres.PLANNED_CATCH_UP_S", 1.0)
    local.control("POST", f"postgres/{REPLICA}/partition")
    insert(local, PRIMARY, 1)
    with pytest.raises(HttpResponseError, match="did not replay"):
        promote(client, "Standalone", "Planned")
    replica = client.servers.get(RESOURCE_GROUP, REPLICA)
    assert replica.properties.replica.role == "AsyncReplica"
    local.control("POST", f"postgres/{REPLICA}/heal")
    wait_until(lambda: replayed(local, [1]), what="healed replica caught up")


def test_promoting_a_server_already_promoted_succeeds_without_doing_it_twice(fresh):
    local, client = fresh
    promote(client, "Standalone", "Forced")
    insert(local, REPLICA, 7)
    again = promote(client, "Standalone", "Forced")
    assert again.properties.replica.role == "None"
    assert ids_on(local, REPLICA) == [7]


def test_planned_switchover_swaps_roles_and_the_old_primary_follows(fresh):
    local, client = fresh
    insert(local, PRIMARY, 1)
    promote(client, "Switchover", "Planned")

    new_primary = client.servers.get(RESOURCE_GROUP, REPLICA)
    old_primary = client.servers.get(RESOURCE_GROUP, PRIMARY)
    assert new_primary.properties.replica.role == "Primary"
    assert old_primary.properties.replica.role == "AsyncReplica"
    insert(local, REPLICA, 2)
    wait_until(lambda: ids_on(local, PRIMARY) == [1, 2], what="old primary following")
    assert query(local, PRIMARY, "SELECT pg_is_in_recovery()") == [(True,)]


def test_region_failure_stops_its_servers_and_restore_brings_them_back(fresh):
    local, client = fresh
    local.control("POST", "regions/westeurope/fail")
    primary = client.servers.get(RESOURCE_GROUP, PRIMARY)
    assert primary.properties.state == "Inaccessible"
    with pytest.raises(psycopg.OperationalError):
        query(local, PRIMARY, "SELECT 1")
    replica = client.servers.get(RESOURCE_GROUP, REPLICA)
    assert replica.properties.replica.replication_state == "Broken"
    with pytest.raises(HttpResponseError, match="unavailable"):
        client.servers.begin_stop(RESOURCE_GROUP, PRIMARY).result()

    local.control("POST", "regions/westeurope/restore")
    assert client.servers.get(RESOURCE_GROUP, PRIMARY).properties.state == "Ready"
    wait_until(
        lambda: (
            client.servers.get(RESOURCE_GROUP, REPLICA).properties.replica.replication_state
            == "Active"
        ),
        what="replication active again",
    )


def test_forced_promotion_during_a_region_failure_keeps_only_what_reached_the_standby(fresh):
    local, client = fresh
    insert(local, PRIMARY, 1)
    wait_until(lambda: replayed(local, [1]), what="replica caught up")
    local.control("POST", f"postgres/{REPLICA}/partition")
    insert(local, PRIMARY, 2)
    local.control("POST", "regions/westeurope/fail")
    promote(client, "Standalone", "Forced")
    assert ids_on(local, REPLICA) == [1]


def test_point_in_time_restore_builds_a_new_server_without_the_bad_rows(fresh):
    local, client = fresh
    insert(local, PRIMARY, 1, 2, 3)
    time.sleep(1.2)
    good_point = dt.datetime.now(dt.UTC)
    time.sleep(1.2)
    query(local, PRIMARY, "DELETE FROM ledger WHERE id = 2")
    insert(local, PRIMARY, 99, note="bad")

    body = {
        "location": "westeurope",
        "properties": {
            "createMode": "PointInTimeRestore",
            "sourceServerResourceId": client.servers.get(RESOURCE_GROUP, PRIMARY).id,
            "pointInTimeUTC": good_point.isoformat(),
        },
    }
    restored = client.servers.begin_create_or_update(RESOURCE_GROUP, "odoo-pg-pitr", body).result()

    assert restored.properties.state == "Ready"
    assert (
        restored.tags["localPort"] != client.servers.get(RESOURCE_GROUP, PRIMARY).tags["localPort"]
    )
    assert ids_on(local, "odoo-pg-pitr") == [1, 2, 3]
    assert ids_on(local, PRIMARY) == [1, 3, 99]
    assert query(local, "odoo-pg-pitr", "SELECT pg_is_in_recovery()") == [(False,)]


def test_point_in_time_before_the_earliest_backup_fails_with_the_reason(fresh):
    local, client = fresh
    body = {
        "location": "westeurope",
        "properties": {
            "createMode": "PointInTimeRestore",
            "sourceServerResourceId": client.servers.get(RESOURCE_GROUP, PRIMARY).id,
            "pointInTimeUTC": "2020-01-01T00:00:00Z",
        },
    }
    with pytest.raises(HttpResponseError, match="earliest restore point"):
        client.servers.begin_create_or_update(RESOURCE_GROUP, "too-early", body).result()


def test_forced_switchover_makes_the_old_primary_a_standby_of_the_new_one(fresh):
    local, client = fresh
    insert(local, PRIMARY, 1)
    wait_until(lambda: replayed(local, [1]), what="replica caught up")
    promote(client, "Switchover", "Forced")

    assert client.servers.get(RESOURCE_GROUP, REPLICA).properties.replica.role == "Primary"
    old = client.servers.get(RESOURCE_GROUP, PRIMARY)
    assert old.properties.replica.role == "AsyncReplica"
    assert old.properties.source_server_resource_id.endswith(f"/flexibleServers/{REPLICA}")
    insert(local, REPLICA, 2)
    wait_until(lambda: ids_on(local, PRIMARY) == [1, 2], what="old primary following")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        insert(local, PRIMARY, 3)


def test_promoted_server_can_be_restored_to_a_point_after_its_promotion(fresh):
    local, client = fresh
    promote(client, "Standalone", "Forced")
    insert(local, REPLICA, 1)
    time.sleep(1.2)
    good_point = dt.datetime.now(dt.UTC)
    time.sleep(1.2)
    insert(local, REPLICA, 2, note="bad")
    body = {
        "location": "northeurope",
        "properties": {
            "createMode": "PointInTimeRestore",
            "sourceServerResourceId": client.servers.get(RESOURCE_GROUP, REPLICA).id,
            "pointInTimeUTC": good_point.isoformat(),
        },
    }
    client.servers.begin_create_or_update(RESOURCE_GROUP, "odoo-pg-neu-pitr", body).result()
    assert ids_on(local, "odoo-pg-neu-pitr") == [1]


def test_restore_from_a_server_whose_region_failed_ends_failed(fresh):
    local, client = fresh
    source_id = client.servers.get(RESOURCE_GROUP, PRIMARY).id
    local.control("POST", "regions/westeurope/fail")
    body = {
        "location": "northeurope",
        "properties": {
            "createMode": "PointInTimeRestore",
            "sourceServerResourceId": source_id,
            "pointInTimeUTC": dt.datetime.now(dt.UTC).isoformat(),
        },
    }
    with pytest.raises(HttpResponseError, match="unavailable"):
        client.servers.begin_create_or_update(RESOURCE_GROUP, "from-dead", body).result()


def test_servers_come_back_on_their_ports_when_local_azure_restarts(fresh):
    from devhost.localazure import LocalAzure

    local, client = fresh
    insert(local, PRIMARY, 1)
    ports = {s["name"]: s["port"] for s in local.control("GET", "postgres/servers")["value"]}
    local.stop()
    again = LocalAzure(local.state_dir, local.topology_path, providers=local.provider_modules)
    again.start()
    try:
        assert {
            s["name"]: s["port"] for s in again.control("GET", "postgres/servers")["value"]
        } == (ports)
        assert ids_on(again, PRIMARY) == [1]
        wait_until(lambda: replayed(again, [1]), what="replica streaming after the restart")
    finally:
        again.stop()
