"""Redis session flush and remediation, isolation (locks, secret rotation, endpoints off), the
attachment store switch and integration queue pause/resume, and finance validation."""

from __future__ import annotations

import psycopg
import pytest
import redis

from activities.cache import flush
from activities.compute import KubeClient
from activities.database import ActivityError, read_secret
from activities.dependencies import queues_pause, queues_resume, redis_remediate, storage_switch
from activities.isolation import disable_endpoints, lock, rotate_secrets
from activities.validation import finance
from shared.recovery import (
    CacheFlushRequest,
    DisableEndpointsRequest,
    FinanceValidationRequest,
    LockRequest,
    QueuesRequest,
    RedisRemediationRequest,
    RotateSecret,
    RotateSecretsRequest,
    SecretRef,
    StorageSwitchRequest,
)
from tests.activities.conftest import (
    AKS,
    APP,
    PRIMARY_ID,
    REPLICA_ID,
    base_topology,
    db,
    endpoint,
)

pytestmark = pytest.mark.timeout(300)

STEP = {"incident_id": "prod-eu/security#1", "step_id": "test"}


def _fill(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url)
    client.mset({"session:a": 1, "session:b": 2, "session*odd": 3, "queue:invoices": 4})
    return client


def test_sessions_are_flushed_by_prefix_and_other_keys_stay(redis_url):
    client = _fill(redis_url)
    result = flush(CacheFlushRequest(**STEP, redis=redis_url))
    assert result.deleted == 2 and result.keys_after == 0
    assert sorted(client.keys()) == [b"queue:invoices", b"session*odd"]


def test_flush_all_empties_the_database_only_when_asked(redis_url):
    client = _fill(redis_url)
    result = flush(CacheFlushRequest(**STEP, redis=redis_url, flush_all=True))
    assert result.flushed_all and result.deleted == 4 and client.dbsize() == 0


def test_redis_url_comes_from_the_app_setting(redis_url, monkeypatch):
    _fill(redis_url)
    monkeypatch.setenv("DR_REDIS_URL", redis_url)
    assert flush(CacheFlushRequest(**STEP)).deleted == 2


def test_unreachable_redis_is_a_clear_error():
    with pytest.raises(ActivityError, match="flushing Redis sessions failed"):
        flush(CacheFlushRequest(**STEP, redis="redis://127.0.0.1:1/0", timeout_s=1))


def test_resetting_redis_connections_drops_the_application_clients(redis_url):
    app_client = redis.Redis.from_url(redis_url)
    app_client.ping()
    result = redis_remediate(
        RedisRemediationRequest(**STEP, redis=redis_url, action="reset_connections")
    )
    assert result.clients_killed >= 1 and result.ping_ok


def test_locks_are_placed_once_per_resource(start_env):
    start_env()
    request = LockRequest(**STEP, resources=[PRIMARY_ID, REPLICA_ID])
    first = lock(request)
    assert [r.created for r in first.locks] == [True, True]
    assert [r.created for r in lock(request).locks] == [False, False]


def test_rotated_password_applies_where_the_server_takes_writes(start_env):
    env = start_env(base_topology(network=False))
    before = read_secret(APP.password_secret)[0]
    result = rotate_secrets(
        RotateSecretsRequest(
            **STEP,
            secrets=[
                RotateSecret(
                    secret=APP.password_secret,
                    db_role="odoo",
                    servers=[db(PRIMARY_ID), db(REPLICA_ID)],
                )
            ],
        )
    )
    (rotated,) = result.rotated
    assert rotated.applied_on == [PRIMARY_ID]
    assert REPLICA_ID in rotated.not_applied  # a standby takes no ALTER ROLE
    after = read_secret(APP.password_secret)[0]
    assert after != before
    dsn = f"host=127.0.0.1 port={env.port('odoo-pg-weu')} dbname=odoo user=odoo"
    psycopg.connect(dsn, password=after, connect_timeout=3).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, password=before, connect_timeout=3)


def test_endpoints_are_disabled(start_env):
    start_env()
    result = disable_endpoints(
        DisableEndpointsRequest(**STEP, endpoints=[endpoint("odoo-weu"), endpoint("odoo-neu")])
    )
    assert result.all_disabled


def test_attachment_store_switch_is_a_key_vault_change_made_once(start_env):
    env = start_env(base_topology(network=False))
    setting = SecretRef(name="attachments-account")
    request = StorageSwitchRequest(**STEP, setting=setting, account_url=env.azure.base_url + "/")
    first = storage_switch(request)
    assert first.changed and first.previous == "https://stodooprodweu.blob.core.windows.net/"
    assert read_secret(setting)[0] == env.azure.base_url + "/"
    assert not storage_switch(request).changed


def test_switch_to_a_storage_account_that_does_not_answer_is_refused(start_env):
    start_env(base_topology(network=False))
    request = StorageSwitchRequest(
        **STEP, setting=SecretRef(name="attachments-account"), account_url="http://127.0.0.1:1/",
        timeout_s=1,
    )  # fmt: skip
    with pytest.raises(ActivityError, match="does not answer"):
        storage_switch(request)


def test_integration_queues_pause_and_resume_to_their_replicas(start_env):
    start_env()
    cluster = f"{AKS}/aks-odoo-weu"
    request = QueuesRequest(**STEP, cluster=cluster, workers={"odoo-bank-sync": 5})
    paused = queues_pause(request)
    assert [(d.before, d.after) for d in paused.deployments] == [(1, 0)]
    resumed = queues_resume(request)
    assert [(d.before, d.after) for d in resumed.deployments] == [(0, 1)]
    assert KubeClient(cluster).deployment("odoo", "odoo-bank-sync")["spec"]["replicas"] == 1


def test_finance_validation_runs_on_the_database_with_credentials_from_key_vault(start_env):
    from shared.finance.seed import SeedOptions, seed_database

    env = start_env(base_topology(network=False))
    dsn = f"host=127.0.0.1 port={env.port('odoo-pg-weu')} user=postgres dbname=odoo"
    seed_database(dsn, SeedOptions(odoo=17, companies=1, moves=60, attachments=0, force=True))
    report = finance(FinanceValidationRequest(**STEP, server=db(PRIMARY_ID), database="odoo"))
    assert report.database == "odoo"
    statuses = {c.id: c.status for c in report.checks}
    assert statuses["ledger.unbalanced_moves"] == "pass"
    assert report.summary.fail == 0, [c for c in report.checks if c.status == "fail"]

    env.sql("odoo-pg-weu", "UPDATE account_move_line SET debit = debit + 1, balance = balance + 1"
            " WHERE id = (SELECT min(l.id) FROM account_move_line l JOIN account_move m"
            " ON m.id = l.move_id WHERE m.state = 'posted' AND l.debit > 0)")  # fmt: skip
    lenient = finance(FinanceValidationRequest(**STEP, server=db(PRIMARY_ID), database="odoo"))
    assert {c.id: c.status for c in lenient.checks}["ledger.unbalanced_moves"] == "fail"
    with pytest.raises(ActivityError, match="strict finance validation of odoo failed: .*ledger"):
        finance(
            FinanceValidationRequest(**STEP, server=db(PRIMARY_ID), database="odoo", strict=True)
        )


def test_each_activity_appends_its_record_to_the_incident_audit_trail(
    redis_url, storage_connection_string, monkeypatch
):
    from shared.audit import AuditWriter

    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    _fill(redis_url)
    incident = "prod-eu/dependency#audit"
    flush(CacheFlushRequest(incident_id=incident, step_id="flush-sessions", redis=redis_url))

    records = AuditWriter(storage_connection_string).records(incident)
    assert [(r.action, r.actor, r.detail["step_id"]) for r in records] == [
        ("cache_flush", "activity:cache_flush", "flush-sessions")
    ]
    assert "deleted 2 session keys" in records[0].reason
    assert AuditWriter(storage_connection_string).verify(incident).ok
