"""The pure decisions of shared.recovery: RPO exposure, planned vs forced, fence proof."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from shared.recovery import (
    CanaryResult,
    DbServer,
    EarlierObservation,
    FenceFacts,
    ServerObservation,
    decide_promote_option,
    estimate_exposure,
    evaluate_fence,
    forensic_backup_name,
    lsn_to_int,
    parse_resource_id,
    rpo_within_target,
)

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
PG_ID = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg"
)


def obs(reachable=True, **kw) -> ServerObservation:
    return ServerObservation(server_id=PG_ID, reachable=reachable, observed_at=T0, **kw)


def test_lsn_is_a_byte_position():
    assert lsn_to_int("0/10") == 16
    assert lsn_to_int("1/0") == 1 << 32
    assert lsn_to_int("16/B374D848") - lsn_to_int("16/B374D840") == 8


def test_bad_lsn_is_refused_by_name():
    with pytest.raises(ValueError, match="not a PostgreSQL LSN"):
        lsn_to_int("zz")


def test_resource_id_parts_and_children():
    rid = parse_resource_id(
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/"
        "managedClusters/aks/agentPools/pool1"
    )
    assert (rid.subscription, rid.resource_group, rid.name) == ("s", "g", "aks")
    assert rid.children == (("agentPools", "pool1"),)


def test_db_server_refuses_a_non_postgres_id():
    with pytest.raises(ValidationError, match="flexibleServers"):
        DbServer(server_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/sites/x")


def test_both_answering_and_caught_up_loses_nothing():
    primary = obs(current_lsn="0/5000", last_commit_at=T0)
    replica = obs(in_recovery=True, replay_lsn="0/5000", last_replay_at=T0)
    exposure = estimate_exposure(primary, replica, None, T0)
    assert (exposure.seconds, exposure.bytes, exposure.basis) == (0.0, 0, "measured")


def test_both_answering_with_lag_measures_bytes_and_commit_time_gap():
    primary = obs(current_lsn="0/5100", last_commit_at=T0)
    replica = obs(in_recovery=True, replay_lsn="0/5000", last_replay_at=T0 - timedelta(seconds=7))
    exposure = estimate_exposure(primary, replica, None, T0 + timedelta(minutes=1))
    assert exposure.bytes == 0x100
    assert exposure.seconds == 7.0
    assert "256 bytes" in exposure.reason


def test_primary_silent_uses_earlier_observation_as_known_loss_and_now_as_bound():
    primary = obs(reachable=False, error="timeout")
    replica = obs(in_recovery=True, replay_lsn="0/5000", last_replay_at=T0)
    earlier = EarlierObservation(
        observed_at=T0 + timedelta(seconds=30),
        primary_lsn="0/6000",
        primary_last_commit_at=T0 + timedelta(seconds=20),
    )
    exposure = estimate_exposure(primary, replica, earlier, T0 + timedelta(seconds=90))
    assert exposure.basis == "earlier_observation"
    assert exposure.seconds == 20.0
    assert exposure.upper_bound_seconds == 90.0
    assert exposure.bytes == 0x1000


def test_primary_silent_without_history_bounds_loss_by_replay_age():
    primary = obs(reachable=False)
    replica = obs(in_recovery=True, replay_lsn="0/5000", last_replay_at=T0)
    exposure = estimate_exposure(primary, replica, None, T0 + timedelta(seconds=45))
    assert exposure.basis == "replay_age"
    assert exposure.seconds == exposure.upper_bound_seconds == 45.0


def test_silent_replica_makes_the_loss_unknown():
    exposure = estimate_exposure(obs(current_lsn="0/1"), obs(reachable=False), None, T0)
    assert exposure.basis == "unknown" and exposure.seconds is None


def test_planned_when_primary_answers_and_streams():
    option, reason = decide_promote_option(
        obs(in_recovery=False), obs(in_recovery=True, wal_receiver_status="streaming")
    )
    assert option == "Planned" and "nothing is lost" in reason


def test_forced_when_primary_is_silent():
    option, reason = decide_promote_option(obs(reachable=False), obs(in_recovery=True))
    assert option == "Forced" and "does not answer" in reason


def test_forced_when_primary_answers_but_link_is_down():
    option, reason = decide_promote_option(
        obs(in_recovery=False),
        obs(in_recovery=True, wal_receiver_status=None, arm_replication_state="Broken"),
    )
    assert option == "Forced" and "link is down" in reason


def test_rpo_gate_judges_by_upper_bound():
    primary = obs(reachable=False)
    replica = obs(in_recovery=True, replay_lsn="0/5000", last_replay_at=T0)
    exposure = estimate_exposure(primary, replica, None, T0 + timedelta(seconds=600))
    ok, reason = rpo_within_target(exposure, 300)
    assert not ok and "exceeds" in reason


def test_canary_that_writes_means_not_fenced():
    facts = FenceFacts(
        server_stopped=True, secret_rotated=True, canary=CanaryResult(attempted=True, wrote=True)
    )
    fenced, _, gaps = evaluate_fence(facts)
    assert not fenced and "old primary is live" in gaps[0]


def test_refused_login_with_old_password_is_proof():
    facts = FenceFacts(
        secret_rotated=True,
        server_password_rotated=True,
        canary=CanaryResult(
            attempted=True, wrote=False, error="password", refused_by="authentication"
        ),
    )
    fenced, proofs, _ = evaluate_fence(facts)
    assert fenced and any("canary" in p for p in proofs)


def test_unreachable_server_is_fenced_only_with_rotated_secret_and_endpoint_off():
    canary = CanaryResult(attempted=True, wrote=False, error="refused", refused_by="connection")
    cut_off = FenceFacts(
        server_stopped=False, secret_rotated=True, endpoint_disabled=True, canary=canary
    )
    fenced, _, gaps = evaluate_fence(cut_off)
    assert fenced and any("open connections" in g for g in gaps)

    endpoint_failed = cut_off.model_copy(update={"endpoint_disabled": False})
    assert evaluate_fence(endpoint_failed)[0] is False


def test_no_canary_means_no_proof():
    facts = FenceFacts(secret_rotated=True, canary=CanaryResult(attempted=False, wrote=False))
    assert evaluate_fence(facts)[0] is False


def test_forensic_backup_name_is_distinct_and_safe():
    assert forensic_backup_name("prod-eu/availability#3") == "forensic-prod-eu-availability-3"


def _endpoints(**spec):
    from types import SimpleNamespace

    return {
        name: SimpleNamespace(
            name=name,
            properties=SimpleNamespace(endpoint_status=status, priority=priority),
        )
        for name, (status, priority) in spec.items()
    }


def test_cutover_plan_enables_the_target_and_disables_the_rest():
    from activities.traffic import _plan_changes
    from shared.recovery import TrafficCutoverRequest

    req = TrafficCutoverRequest(
        incident_id="i", step_id="s", endpoint="neu", disable_endpoints=["weu"],
        profile="/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/"
        "trafficmanagerprofiles/tm",
    )  # fmt: skip
    plan = _plan_changes(req, _endpoints(weu=("Enabled", 1), neu=("Disabled", 2)))
    assert plan == {"neu": {"endpointStatus": "Enabled"}, "weu": {"endpointStatus": "Disabled"}}
    done = _endpoints(weu=("Disabled", 1), neu=("Enabled", 2))
    assert _plan_changes(req, done) == {}


def test_cutover_by_priority_swaps_with_the_endpoint_that_wins_today():
    from activities.traffic import _plan_changes
    from shared.recovery import TrafficCutoverRequest

    req = TrafficCutoverRequest(
        incident_id="i", step_id="s", endpoint="neu", strategy="swap_priority",
        profile="/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/"
        "trafficmanagerprofiles/tm",
    )  # fmt: skip
    plan = _plan_changes(req, _endpoints(weu=("Enabled", 1), neu=("Enabled", 2)))
    assert plan == {"neu": {"priority": 1}, "weu": {"priority": 2}}
    assert _plan_changes(req, _endpoints(weu=("Enabled", 2), neu=("Enabled", 1))) == {}


def test_scaling_request_without_replicas_is_refused_when_parsed():
    from shared.recovery import ScaleDeploymentRequest

    cluster = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ContainerService/managedClusters/a"
    )
    with pytest.raises(ValidationError, match="needs a replicas count"):
        ScaleDeploymentRequest(incident_id="i", step_id="s", cluster=cluster, deployment="web")
    with pytest.raises(ValidationError, match="name a deployment"):
        ScaleDeploymentRequest(incident_id="i", step_id="s", cluster=cluster)
