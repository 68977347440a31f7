"""PostgreSQL flexible servers on local instances, through the real management SDK."""

from __future__ import annotations

import time

import psycopg
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.azure_clients import postgres_client, secret_client
from tests.plugins.localazure import RESOURCE_GROUP, SUBSCRIPTION, azure_settings

PRIMARY, REPLICA = "odoo-pg-weu", "odoo-pg-neu"


@pytest.fixture(scope="module")
def pg(local_azure):
    client = postgres_client(SUBSCRIPTION, azure_settings(local_azure))
    yield client
    client.close()


def server_dsn(local, name: str, dbname: str = "postgres") -> str:
    for server in local.control("GET", "postgres/servers")["value"]:
        if server["name"] == name:
            return f"host=127.0.0.1 port={server['port']} user=postgres dbname={dbname}"
    raise AssertionError(f"no server {name}")


def query(local, name: str, sql: str, dbname: str = "postgres"):
    with psycopg.connect(server_dsn(local, name, dbname), autocommit=True, connect_timeout=5) as c:
        cur = c.execute(sql)
        return cur.fetchall() if cur.description else []


def wait_until(predicate, timeout_s: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s}s")


def test_primary_get_shows_a_ready_primary_on_its_local_port(pg, local_azure):
    server = pg.servers.get(RESOURCE_GROUP, PRIMARY)
    assert server.properties.state == "Ready"
    assert server.properties.replica.role == "Primary"
    assert server.properties.fully_qualified_domain_name == "127.0.0.1"
    assert server.location == "westeurope"
    port = int(server.tags["localPort"])
    assert query(local_azure, PRIMARY, "SELECT current_setting('port')::int")[0][0] == port


def test_replica_get_shows_an_active_async_replica_of_the_primary(pg):
    server = pg.servers.get(RESOURCE_GROUP, REPLICA)
    assert server.properties.replica.role == "AsyncReplica"
    assert server.properties.replica.replication_state == "Active"
    assert server.properties.source_server_resource_id.endswith(f"/flexibleServers/{PRIMARY}")


def test_replicas_of_the_primary_are_listed(pg):
    assert [s.name for s in pg.replicas.list_by_server(RESOURCE_GROUP, PRIMARY)] == [REPLICA]


def test_unknown_server_is_resource_not_found(pg):
    with pytest.raises(ResourceNotFoundError):
        pg.servers.get(RESOURCE_GROUP, "no-such-server")


def test_server_in_another_resource_group_is_not_found(pg):
    with pytest.raises(ResourceNotFoundError):
        pg.servers.get("rg-elsewhere", PRIMARY)


def test_evidence_facts_are_true_on_the_instances(local_azure):
    query(local_azure, PRIMARY, "CREATE TABLE IF NOT EXISTS evidence (id int)")
    query(local_azure, PRIMARY, "INSERT INTO evidence VALUES (1)")
    ((in_recovery, commit_ts),) = query(
        local_azure,
        PRIMARY,
        "SELECT pg_is_in_recovery(), current_setting('track_commit_timestamp')",
    )
    assert (in_recovery, commit_ts) == (False, "on")
    senders = query(local_azure, PRIMARY, "SELECT application_name, state FROM pg_stat_replication")
    assert ("odoo_pg_neu", "streaming") in senders
    wait_until(
        lambda: (
            query(local_azure, REPLICA, "SELECT count(*) FROM pg_class WHERE relname='evidence'")
            == [(1,)]
        ),
        what="replica replaying the primary",
    )
    row = query(
        local_azure,
        REPLICA,
        "SELECT pg_is_in_recovery(), pg_last_wal_receive_lsn() IS NOT NULL, "
        "pg_last_wal_replay_lsn() IS NOT NULL, pg_last_xact_replay_timestamp() IS NOT NULL",
    )
    assert row == [(True, True, True, True)]


def test_admin_and_app_logins_use_the_key_vault_passwords(local_azure, pg):
    settings = azure_settings(local_azure)
    vault = secret_client(local_azure.settings()["DR_KEYVAULT_URL"], settings)
    server = pg.servers.get(RESOURCE_GROUP, PRIMARY)
    port = server.tags["localPort"]
    for login, secret, dbname in (
        (server.properties.administrator_login, "pg-admin-password", "postgres"),
        ("odoo", "odoo-db-password", "odoo"),
    ):
        password = vault.get_secret(secret).value
        dsn = f"host=127.0.0.1 port={port} user={login} password={password} dbname={dbname}"
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == login
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(dsn.replace(password, "wrong"), connect_timeout=5)


def test_stop_then_start_stops_and_starts_the_process(pg, local_azure):
    pg.servers.begin_stop(RESOURCE_GROUP, REPLICA).result()
    assert pg.servers.get(RESOURCE_GROUP, REPLICA).properties.state == "Stopped"
    with pytest.raises(psycopg.OperationalError):
        query(local_azure, REPLICA, "SELECT 1")
    pg.servers.begin_start(RESOURCE_GROUP, REPLICA).result()
    assert pg.servers.get(RESOURCE_GROUP, REPLICA).properties.state == "Ready"
    assert query(local_azure, REPLICA, "SELECT pg_is_in_recovery()") == [(True,)]


def test_throttled_get_is_retried_by_the_sdk_and_succeeds(pg, local_azure):
    local_azure.control(
        "POST",
        "faults",
        {
            "operation": "Microsoft.DBforPostgreSQL/flexibleServers/read",
            "kind": "throttle",
            "seconds": 0.2,
        },
    )
    try:
        assert pg.servers.get(RESOURCE_GROUP, PRIMARY).name == PRIMARY
        (fault,) = local_azure.control("GET", "faults")["value"]
        assert fault["fired"] == 1
    finally:
        local_azure.control("DELETE", "faults")


def test_operation_ending_failed_surfaces_as_http_response_error_from_the_poller(pg, local_azure):
    local_azure.control(
        "POST",
        "faults",
        {
            "operation": "Microsoft.DBforPostgreSQL/flexibleServers/restart/action",
            "kind": "lro_fail",
        },
    )
    try:
        poller = pg.servers.begin_restart(RESOURCE_GROUP, PRIMARY)
        with pytest.raises(HttpResponseError):
            poller.result()
        assert poller.status().lower() == "failed"
    finally:
        local_azure.control("DELETE", "faults")
    wait_until(
        lambda: pg.servers.get(RESOURCE_GROUP, PRIMARY).properties.state == "Ready",
        what="primary ready after the restart",
    )


def test_on_demand_backup_is_taken_and_listed(pg):
    backup = pg.backups_automatic_and_on_demand.begin_create(
        RESOURCE_GROUP, PRIMARY, "before-release"
    ).result()
    assert backup.name == "before-release"
    names = {
        b.name: b
        for b in pg.backups_automatic_and_on_demand.list_by_server(RESOURCE_GROUP, PRIMARY)
    }
    assert names["before-release"].properties.backup_type == "Customer On-Demand"
    assert names["initial"].properties.backup_type == "Full"


def test_promote_with_unknown_mode_is_rejected_with_the_reason(pg):
    with pytest.raises(HttpResponseError, match="promoteMode"):
        pg.servers.begin_update(
            RESOURCE_GROUP, REPLICA, {"properties": {"replica": {"promoteMode": "Sideways"}}}
        ).result()


def test_latency_on_a_long_running_operation_is_spent_inside_the_operation(pg, local_azure):
    local_azure.control(
        "POST",
        "faults",
        {
            "operation": "Microsoft.DBforPostgreSQL/flexibleServers/restart/action",
            "kind": "latency",
            "seconds": 1.0,
        },
    )
    started = time.monotonic()
    poller = pg.servers.begin_restart(RESOURCE_GROUP, REPLICA)
    accepted_after = time.monotonic() - started
    poller.result()
    assert accepted_after < 1.0
    assert time.monotonic() - started >= 1.0


def test_promoting_a_server_that_never_was_a_replica_is_rejected(pg):
    body = {"properties": {"replica": {"promoteMode": "Standalone", "promoteOption": "Forced"}}}
    with pytest.raises(HttpResponseError, match="not a replica"):
        pg.servers.begin_update(RESOURCE_GROUP, PRIMARY, body).result()


def test_create_a_server_and_a_replica_of_it_then_delete_both(pg, local_azure):
    group_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    created = pg.servers.begin_create_or_update(
        RESOURCE_GROUP,
        "drill-pg",
        {
            "location": "westeurope",
            "properties": {
                "createMode": "Create",
                "administratorLogin": "drilladmin",
                "administratorLoginPassword": "drill-password",
            },
        },
    ).result()
    assert (created.properties.state, created.properties.replica.role) == ("Ready", "Primary")
    port = created.tags["localPort"]
    dsn = f"host=127.0.0.1 port={port} user=drilladmin password=drill-password dbname=postgres"
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    replica = pg.servers.begin_create_or_update(
        RESOURCE_GROUP,
        "drill-pg-replica",
        {
            "location": "northeurope",
            "properties": {
                "createMode": "Replica",
                "sourceServerResourceId": f"{group_id}/providers/Microsoft.DBforPostgreSQL"
                "/flexibleServers/drill-pg",
            },
        },
    ).result()
    assert replica.properties.replica.role == "AsyncReplica"
    with pytest.raises(HttpResponseError, match="has replicas"):
        pg.servers.begin_delete(RESOURCE_GROUP, "drill-pg").result()

    pg.servers.begin_delete(RESOURCE_GROUP, "drill-pg-replica").result()
    pg.servers.begin_delete(RESOURCE_GROUP, "drill-pg").result()
    with pytest.raises(ResourceNotFoundError):
        pg.servers.get(RESOURCE_GROUP, "drill-pg")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


def test_the_administrator_may_fence_the_application_login(local_azure, pg):
    vault = secret_client(local_azure.settings()["DR_KEYVAULT_URL"], azure_settings(local_azure))
    port = pg.servers.get(RESOURCE_GROUP, PRIMARY).tags["localPort"]
    password = vault.get_secret("pg-admin-password").value
    dsn = f"host=127.0.0.1 port={port} user=odooadmin password={password} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("ALTER ROLE odoo NOLOGIN")
        conn.execute("ALTER ROLE odoo SET default_transaction_read_only = on")
        conn.execute("ALTER ROLE odoo RESET default_transaction_read_only")
        conn.execute("ALTER ROLE odoo LOGIN")


def test_server_shows_stopping_while_the_stop_runs_and_refuses_a_second_one(pg, local_azure):
    local_azure.control(
        "POST",
        "faults",
        {
            "operation": "Microsoft.DBforPostgreSQL/flexibleServers/stop/action",
            "kind": "latency",
            "seconds": 1.0,
        },
    )
    poller = pg.servers.begin_stop(RESOURCE_GROUP, REPLICA)
    assert pg.servers.get(RESOURCE_GROUP, REPLICA).properties.state == "Stopping"
    with pytest.raises(HttpResponseError, match="ServerBusy"):
        pg.servers.begin_start(RESOURCE_GROUP, REPLICA, polling=False)
    poller.result()
    assert pg.servers.get(RESOURCE_GROUP, REPLICA).properties.state == "Stopped"
    pg.servers.begin_start(RESOURCE_GROUP, REPLICA).result()
    assert pg.servers.get(RESOURCE_GROUP, REPLICA).properties.state == "Ready"
