"""Inputs and results of the recovery activities, and the pure decisions they make.

Every activity takes one request model and returns one result model from this module. The
decisions that need no I/O live here too, so the orchestrator, the command line and the tests
reach the same answer from the same facts: how much data a promotion would lose (RPO exposure),
whether to promote planned or forced, and whether the old primary is proven fenced.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.models import Evidence, EvidenceKey

PromoteOption = Literal["Planned", "Forced"]
ExposureBasis = Literal["measured", "earlier_observation", "replay_age", "unknown"]

_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/(?P<namespace>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)(?P<rest>(/[^/]+/[^/]+)*)$",
    re.IGNORECASE,
)
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


class ResourceId(BaseModel):
    """The parts of an ARM resource id that the SDK calls take as arguments."""

    model_config = ConfigDict(frozen=True)

    id: str
    subscription: str
    resource_group: str
    namespace: str
    type: str
    name: str
    children: tuple[tuple[str, str], ...] = ()


def parse_resource_id(resource_id: str) -> ResourceId:
    """Split an ARM resource id; raise ValueError naming the id when it is not one."""
    match = _RESOURCE_ID.match(resource_id or "")
    if not match:
        raise ValueError(
            f"{resource_id!r} is not an ARM resource id "
            "(/subscriptions/<sub>/resourceGroups/<rg>/providers/<namespace>/<type>/<name>)"
        )
    rest = [p for p in match["rest"].split("/") if p]
    children = tuple((rest[i], rest[i + 1]) for i in range(0, len(rest), 2))
    return ResourceId(
        id=resource_id,
        subscription=match["subscription"],
        resource_group=match["rg"],
        namespace=match["namespace"],
        type=match["type"],
        name=match["name"],
        children=children,
    )


def _check_resource_id(value: str, namespace: str, rtype: str) -> str:
    rid = parse_resource_id(value)
    if rid.namespace.lower() != namespace.lower() or rid.type.lower() != rtype.lower():
        raise ValueError(f"{value!r} is not a {namespace}/{rtype} resource id")
    return value


def lsn_to_int(lsn: str) -> int:
    """A PostgreSQL LSN such as ``16/B374D848`` as a byte position."""
    if not _LSN.match(lsn or ""):
        raise ValueError(f"{lsn!r} is not a PostgreSQL LSN (hex/hex)")
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone (UTC)")
    return value.astimezone(UTC)


# --------------------------------------------------------------------------------------------
# Building blocks shared by every request


class ActivityRequest(BaseModel):
    """Every activity input names the incident and the plan step it runs for (for the audit)."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str = Field(min_length=1)
    step_id: str = Field(min_length=1)


class SecretRef(BaseModel):
    """A Key Vault secret by name; the vault defaults to the ``DR_KEYVAULT_URL`` app setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[0-9A-Za-z-]{1,127}$")
    vault_url: str | None = None
    version: str | None = None


class DbServer(BaseModel):
    """A PostgreSQL flexible server: its ARM id and how the DR tooling connects to it.

    ``host``/``port`` override the server's ARM ``fullyQualifiedDomainName`` (local PostgreSQL
    instances listen on 127.0.0.1 with their own port). The admin password comes from Key Vault;
    without one the connection relies on the server's own authentication (local trust).
    """

    model_config = ConfigDict(extra="forbid")

    server_id: str
    host: str | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = "postgres"
    admin_user: str = "postgres"
    admin_password_secret: SecretRef | None = None
    sslmode: str = "prefer"

    @field_validator("server_id")
    @classmethod
    def _server_id(cls, value: str) -> str:
        return _check_resource_id(value, "Microsoft.DBforPostgreSQL", "flexibleServers")

    @property
    def resource(self) -> ResourceId:
        return parse_resource_id(self.server_id)


class AppCredential(BaseModel):
    """The application's database role and the Key Vault secret that holds its password."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    password_secret: SecretRef
    dbname: str = "postgres"


class TrafficEndpoint(BaseModel):
    """One endpoint of a Traffic Manager profile."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str
    endpoint_type: Literal["AzureEndpoints", "ExternalEndpoints", "NestedEndpoints"] = (
        "ExternalEndpoints"
    )
    name: str = Field(min_length=1)

    @field_validator("profile_id")
    @classmethod
    def _profile_id(cls, value: str) -> str:
        return _check_resource_id(value, "Microsoft.Network", "trafficmanagerprofiles")


# --------------------------------------------------------------------------------------------
# Database evidence and the RPO exposure estimate


class ServerObservation(BaseModel):
    """What one server said (or that it did not answer) when evidence was gathered."""

    server_id: str
    reachable: bool
    error: str | None = None
    observed_at: datetime
    in_recovery: bool | None = None
    current_lsn: str | None = Field(default=None, description="primary: pg_current_wal_lsn()")
    receive_lsn: str | None = Field(default=None, description="standby: last WAL received")
    replay_lsn: str | None = Field(default=None, description="standby: last WAL replayed")
    last_commit_at: datetime | None = Field(
        default=None, description="primary: pg_last_committed_xact() (track_commit_timestamp)"
    )
    last_replay_at: datetime | None = Field(
        default=None, description="standby: pg_last_xact_replay_timestamp()"
    )
    wal_receiver_status: str | None = None
    arm_state: str | None = None
    arm_role: str | None = None
    arm_replication_state: str | None = None
    arm_error: str | None = None
    earliest_restore_at: datetime | None = Field(
        default=None, description="ARM backup.earliestRestoreDate: the oldest restorable point"
    )
    latest_backup_at: datetime | None = Field(
        default=None, description="completion time of the newest backup ARM lists"
    )


class EarlierObservation(BaseModel):
    """What an earlier evidence run saw of the primary, carried forward by the orchestrator."""

    model_config = ConfigDict(extra="forbid")

    observed_at: datetime
    primary_lsn: str | None = None
    primary_last_commit_at: datetime | None = None

    @field_validator("observed_at", "primary_last_commit_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


class RpoExposure(BaseModel):
    """The estimated data loss of promoting the replica now, with its basis in words."""

    seconds: float | None = Field(description="best estimate of the committed time that is lost")
    upper_bound_seconds: float | None = Field(
        default=None, description="the most that can be lost given what is known"
    )
    bytes: int | None = Field(default=None, description="WAL bytes committed but not replayed")
    basis: ExposureBasis
    reason: str


def estimate_exposure(
    primary: ServerObservation,
    replica: ServerObservation,
    earlier: EarlierObservation | None,
    now: datetime,
) -> RpoExposure:
    """Estimate what a promotion of ``replica`` now would lose.

    - Both answer: bytes = primary's current WAL position minus the standby's replayed position;
      seconds = primary's last commit time minus the standby's last replayed commit time
      (0 when nothing is outstanding). This is a measurement, not an estimate.
    - Primary silent, earlier observation of it: what it had committed then and the standby
      has not replayed is known lost (lower bound, the estimate); anything it committed after
      the observation until it went silent is unknown, so the upper bound runs to ``now``.
    - Primary silent, nothing earlier: only the age of the standby's last replayed transaction
      is known; it bounds the loss from above (it includes idle time), and is the estimate.
    """
    replay_at = replica.last_replay_at
    replay_pos = _position(replica.replay_lsn or replica.receive_lsn)

    if primary.reachable and replica.reachable:
        return _measured_exposure(primary, replica, replay_pos)

    if not replica.reachable:
        return RpoExposure(
            seconds=None,
            basis="unknown",
            reason="the replica did not answer, so nothing it holds can be measured",
        )

    upper = (now - replay_at).total_seconds() if replay_at else None
    if earlier and (earlier.primary_last_commit_at or earlier.primary_lsn):
        lost_bytes = None
        if earlier.primary_lsn and replay_pos is not None:
            lost_bytes = max(0, lsn_to_int(earlier.primary_lsn) - replay_pos)
        seconds = 0.0
        if earlier.primary_last_commit_at and replay_at:
            seconds = max(0.0, (earlier.primary_last_commit_at - replay_at).total_seconds())
        elif lost_bytes:
            seconds = None
        return RpoExposure(
            seconds=seconds,
            upper_bound_seconds=max(upper, seconds or 0.0) if upper is not None else None,
            bytes=lost_bytes,
            basis="earlier_observation",
            reason=(
                f"the primary does not answer; at {earlier.observed_at.isoformat()} it had "
                f"committed {_fmt_s(seconds)} beyond the replica's last replayed transaction"
                f"{_fmt_bytes(lost_bytes)}; commits after that observation are unknown, so "
                f"the loss is at most {_fmt_s(upper)}"
            ),
        )

    if replay_at is None:
        return RpoExposure(
            seconds=None,
            basis="unknown",
            reason=(
                "the primary does not answer and the replica has replayed no transaction "
                "since it started, so the loss cannot be estimated"
            ),
        )
    return RpoExposure(
        seconds=upper,
        upper_bound_seconds=upper,
        basis="replay_age",
        reason=(
            f"the primary does not answer; the replica's last replayed transaction is "
            f"{_fmt_s(upper)} old, which bounds the loss from above (idle time counts as loss "
            "because nothing shows whether the primary committed in it)"
        ),
    )


def _measured_exposure(
    primary: ServerObservation, replica: ServerObservation, replay_pos: int | None
) -> RpoExposure:
    primary_pos = _position(primary.current_lsn)
    lag_bytes = None
    if primary_pos is not None and replay_pos is not None:
        lag_bytes = max(0, primary_pos - replay_pos)
    seconds: float | None = None
    if lag_bytes == 0:
        seconds = 0.0
    elif primary.last_commit_at and replica.last_replay_at:
        seconds = max(0.0, (primary.last_commit_at - replica.last_replay_at).total_seconds())
    elif lag_bytes:
        seconds = None
    if lag_bytes == 0:
        reason = "both servers answer and the replica has replayed all of the primary's WAL"
    else:
        reason = (
            f"both servers answer; the replica is {_fmt_bytes(lag_bytes, lead='')} behind and "
            f"its last replayed commit is {_fmt_s(seconds)} older than the primary's last commit"
        )
        if seconds is None:
            reason += " (the primary does not track commit timestamps, so time is unknown)"
    return RpoExposure(
        seconds=seconds,
        upper_bound_seconds=seconds,
        bytes=lag_bytes,
        basis="measured",
        reason=reason,
    )


def _position(lsn: str | None) -> int | None:
    return lsn_to_int(lsn) if lsn else None


def _fmt_s(seconds: float | None) -> str:
    return "an unknown time" if seconds is None else f"{seconds:.1f} s"


def _fmt_bytes(value: int | None, lead: str = " and ") -> str:
    return "" if value is None else f"{lead}{value} bytes of WAL"


def decide_promote_option(
    primary: ServerObservation, replica: ServerObservation
) -> tuple[PromoteOption, str]:
    """Planned when the primary answers and still streams to the replica; forced otherwise.

    A planned promotion waits until the replica has replayed everything, which only ends if
    the primary can still send it: with the link broken it would wait for ever.
    """
    if not primary.reachable:
        return "Forced", "forced: the primary does not answer, so nothing more can be replayed"
    if primary.in_recovery:
        return "Forced", "forced: the 'primary' is itself in recovery, so it is no primary"
    if not replica.reachable:
        return "Forced", "forced: the replica does not answer, so it cannot catch up first"
    state = (replica.arm_replication_state or "").lower()
    if state == "broken" or replica.wal_receiver_status != "streaming":
        return "Forced", (
            "forced: the primary answers but the replication link is down "
            f"(replicationState {replica.arm_replication_state or 'unknown'}, "
            f"WAL receiver {replica.wal_receiver_status or 'not running'}), "
            "so a planned promotion could not catch up"
        )
    return "Planned", "planned: the primary answers and streams to the replica, so nothing is lost"


def rpo_within_target(exposure: RpoExposure, target_s: float) -> tuple[bool, str]:
    """Whether the exposure is inside the RPO target; the upper bound decides when unsure."""
    figure = exposure.upper_bound_seconds
    if figure is None:
        figure = exposure.seconds
    if figure is None:
        return False, f"the data loss is unknown, so the RPO target of {target_s:.0f} s is at risk"
    if figure <= target_s:
        return True, f"estimated loss of at most {figure:.1f} s is within the {target_s:.0f} s RPO"
    return False, f"estimated loss of up to {figure:.1f} s exceeds the {target_s:.0f} s RPO"


class EvidenceRequest(ActivityRequest):
    """db_evidence input: the two servers and what an earlier run saw of the primary."""

    primary: DbServer
    replica: DbServer
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)
    earlier: EarlierObservation | None = None
    rpo_target_s: float | None = Field(default=None, ge=0)


class DbEvidence(BaseModel):
    """db_evidence result: both observations, the exposure and the promotion decision."""

    observed_at: datetime
    primary: ServerObservation
    replica: ServerObservation
    lag_bytes: int | None
    lag_seconds: float | None
    exposure: RpoExposure
    promote_option: PromoteOption
    promote_reason: str
    rpo_within_target: bool | None = None
    rpo_reason: str | None = None
    backup_age_s: float | None = Field(
        default=None, description="seconds since the primary's newest completed backup"
    )
    carry_forward: EarlierObservation | None = Field(
        default=None, description="pass as `earlier` to the next evidence run"
    )

    def facts(self, source: str = "db_evidence") -> list[Evidence]:
        """The observations as classification evidence (``shared.models.EvidenceKey``)."""
        values: list[tuple[EvidenceKey, Any]] = [
            (EvidenceKey.PRIMARY_REACHABLE, self.primary.reachable),
            (
                EvidenceKey.REPLICA_HEALTHY,
                self.replica.reachable and bool(self.replica.in_recovery),
            ),
            (EvidenceKey.REPLICA_LAG_SECONDS, self.lag_seconds),
            (EvidenceKey.REPLICA_LAG_BYTES, self.lag_bytes),
        ]
        return [
            Evidence(key=k, value=v, observed_at=self.observed_at, source=source) for k, v in values
        ]


# --------------------------------------------------------------------------------------------
# Fencing


class CanaryResult(BaseModel):
    """A write attempted on the old primary with the application's old credentials."""

    attempted: bool
    wrote: bool
    error: str | None = None
    refused_by: Literal["connection", "authentication", "read_only", "other"] | None = None


class FenceRequest(ActivityRequest):
    """db_fence input: the old primary, the application's credential, its traffic endpoint."""

    old_primary: DbServer
    app: AppCredential
    endpoint: TrafficEndpoint | None = None
    stop_server: Literal["always", "unless_shut_out", "never"] = Field(
        default="unless_shut_out",
        description=(
            "unless_shut_out: stop the server through ARM unless the application role was shut "
            "out of it (a server that answers stays up, so a planned promotion can still catch "
            "up from it; one that does not answer is stopped so it cannot return as a primary)"
        ),
    )
    stop_timeout_s: float = Field(default=120, ge=1, le=1800)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)


class FenceFacts(BaseModel):
    """The outcome of each fencing action; None means it could not be attempted."""

    server_stopped: bool | None = None
    server_stop_detail: str = ""
    secret_rotated: bool = False
    server_password_rotated: bool | None = None
    server_password_detail: str = ""
    endpoint_disabled: bool | None = None
    canary: CanaryResult


class FenceResult(BaseModel):
    """db_fence result: fenced or not, each proof as a sentence, and what is missing."""

    fenced: bool
    proofs: list[str]
    gaps: list[str]
    facts: FenceFacts
    new_secret_version: str | None = None


def evaluate_fence(facts: FenceFacts) -> tuple[bool, list[str], list[str]]:
    """Decide whether the old primary is proven unable to take the application's writes.

    Fenced needs the canary write with the old credentials to fail, and a reason it will keep
    failing: the server is stopped, or it no longer accepts the old password, or (when it does
    not answer at all) the application's secret is rotated so it cannot log in when it returns
    and its traffic endpoint is disabled.
    """
    proofs: list[str] = []
    gaps: list[str] = []
    canary = facts.canary

    if canary.wrote:
        gaps.append("the canary write with the old credentials succeeded: the old primary is live")
        return False, proofs, gaps
    if canary.attempted:
        proofs.append(f"canary write with the old credentials failed ({canary.error})")
    else:
        gaps.append("no canary write could be attempted")

    if facts.server_stopped:
        proofs.append(f"the old primary is stopped through ARM ({facts.server_stop_detail})")
    elif facts.server_stopped is False:
        gaps.append(f"the old primary could not be stopped ({facts.server_stop_detail})")
    if facts.server_password_rotated:
        proofs.append(
            "the application role is shut out of the old primary "
            f"({facts.server_password_detail or 'NOLOGIN, password changed'})"
        )
    elif facts.server_password_rotated is False:
        gaps.append(
            "the application role could not be shut out of the old primary "
            f"({facts.server_password_detail})"
        )
    if facts.secret_rotated:
        proofs.append("the application's database password in Key Vault was rotated")
    else:
        gaps.append("the application's password in Key Vault was not rotated")
    if facts.endpoint_disabled:
        proofs.append("the old primary's Traffic Manager endpoint is disabled")
    elif facts.endpoint_disabled is False:
        gaps.append("the old primary's Traffic Manager endpoint could not be disabled")

    refused_for_good = canary.refused_by in ("authentication", "read_only")
    unreachable_but_cut_off = (
        canary.refused_by == "connection"
        and facts.secret_rotated
        and facts.endpoint_disabled is not False
    )
    if facts.server_stopped and canary.attempted:
        return True, proofs, gaps
    if refused_for_good:
        return True, proofs, gaps
    if unreachable_but_cut_off:
        # Limitation: a server that does not answer us may still answer application servers in
        # its own region; what keeps them out is the rotated secret (at their next login) and the
        # disabled endpoint, not a positive refusal we saw.
        gaps.append(
            "the old primary does not answer, so its refusal could not be seen; application "
            "servers holding open connections there may write until they reconnect"
        )
        return True, proofs, gaps
    gaps.append("nothing shows the old primary would refuse the application's writes")
    return False, proofs, gaps


# --------------------------------------------------------------------------------------------
# Promotion, point-in-time restore, backups, secrets


class PromoteRequest(ActivityRequest):
    """db_promote input: the replica to promote and the option the evidence chose."""

    replica: DbServer
    option: PromoteOption
    reason: str = ""
    app: AppCredential | None = Field(
        default=None, description="give this role its Key Vault password on the promoted server"
    )
    timeout_s: float = Field(default=600, ge=5, le=3600)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)


class WriteProof(BaseModel):
    """A write made on a server to show it takes writes."""

    writable: bool
    detail: str


class PromoteResult(BaseModel):
    server_id: str
    option: PromoteOption
    promoted: bool
    already_promoted: bool
    role_after: str | None
    writable: WriteProof
    duration_s: float
    reason: str


class PitrRequest(ActivityRequest):
    """db_pitr input: restore ``source`` at ``point_in_time`` into the server ``target_name``."""

    source: DbServer
    target_name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    point_in_time: datetime
    target_host: str | None = None
    target_port: int | None = Field(default=None, ge=1, le=65535)
    timeout_s: float = Field(default=1800, ge=5, le=7200)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)

    @field_validator("point_in_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return _utc(value)


class PitrResult(BaseModel):
    server_id: str
    server: DbServer = Field(description="the restored server, ready to pass to the next steps")
    point_in_time: datetime
    already_existed: bool
    state: str | None
    in_recovery: bool
    host: str | None
    port: int | None
    duration_s: float
    detail: str


class ForensicBackupRequest(ActivityRequest):
    server: DbServer
    backup_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
    timeout_s: float = Field(default=900, ge=5, le=7200)


class ForensicBackupResult(BaseModel):
    server_id: str
    backup_name: str
    already_existed: bool
    completed_at: datetime | None
    detail: str


def forensic_backup_name(incident_id: str) -> str:
    """The distinct on-demand backup name for an incident (never a scheduled backup's name)."""
    safe = re.sub(r"[^A-Za-z0-9-]", "-", incident_id).strip("-")[:100] or "incident"
    return f"forensic-{safe}"


class SecretsRequest(ActivityRequest):
    """db_secrets input: which secrets to resolve; values only when ``reveal`` is set."""

    secrets: dict[str, SecretRef]
    reveal: bool = False


class SecretInfo(BaseModel):
    name: str
    vault_url: str
    version: str | None
    id: str | None
    updated_at: datetime | None
    value: str | None = Field(default=None, description="only when the request asked to reveal")


class SecretsResult(BaseModel):
    secrets: dict[str, SecretInfo]
    revealed: bool


def now_utc() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Compute: AKS clusters, agent pools, Kubernetes deployments, scheduled jobs


def _cluster_id(value: str) -> str:
    return _check_resource_id(value, "Microsoft.ContainerService", "managedClusters")


class ClusterRequest(ActivityRequest):
    """A request about one AKS managed cluster (its ARM id)."""

    cluster: str
    timeout_s: float = Field(default=900, ge=5, le=3600)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        return _cluster_id(value)


class StartClusterResult(BaseModel):
    cluster: str
    power_before: str | None
    power_after: str | None
    started: bool
    detail: str


class ScalePoolRequest(ClusterRequest):
    pool: str = Field(pattern=r"^[a-z][a-z0-9]{0,11}$")
    count: int = Field(ge=0, le=1000)


class ScalePoolResult(BaseModel):
    cluster: str
    pool: str
    count_before: int | None
    count_after: int | None
    changed: bool
    detail: str


class ScaleDeploymentRequest(ClusterRequest):
    """Set the replicas of one deployment, or of several through ``deployments``."""

    namespace: str = "odoo"
    deployment: str | None = None
    replicas: int | None = Field(default=None, ge=0, le=1000)
    deployments: dict[str, int] = Field(default_factory=dict)
    wait_ready: bool = True

    @model_validator(mode="after")
    def _something_to_scale(self) -> ScaleDeploymentRequest:
        if self.deployment is not None and self.replicas is None:
            raise ValueError(f"deployment {self.deployment!r} needs a replicas count")
        if self.deployment is None and not self.deployments:
            raise ValueError("name a deployment and replicas, or give deployments")
        return self

    def targets(self) -> dict[str, int]:
        found = dict(self.deployments)
        if self.deployment is not None and self.replicas is not None:
            found[self.deployment] = self.replicas
        return found


class DeploymentScale(BaseModel):
    name: str
    before: int
    after: int
    ready: int
    changed: bool


class ScaleDeploymentResult(BaseModel):
    cluster: str
    namespace: str
    deployments: list[DeploymentScale]
    detail: str


class JobsRequest(ActivityRequest):
    """jobs_hold / jobs_release: the cron deployment, and the Odoo database's ir_cron rows.

    Either part may be left out. Holding records what it paused (previous replicas, the ids
    of the cron jobs it deactivated), so releasing restores exactly that and no more.
    """

    cluster: str | None = None
    namespace: str = "odoo"
    deployment: str = "odoo-cron"
    server: DbServer | None = None
    database: str | None = None
    replicas: int | None = Field(
        default=None, ge=0, le=100, description="release: replicas to restore (default: held)"
    )
    signed_off_by: str | None = Field(
        default=None, description="release: the finance controller whose sign-off allows it"
    )
    timeout_s: float = Field(default=300, ge=5, le=3600)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        return None if value is None else _cluster_id(value)


class JobsResult(BaseModel):
    held: bool
    deployment_replicas_before: int | None = None
    deployment_replicas_after: int | None = None
    crons_changed: list[int] = Field(default_factory=list)
    crons_held_total: int = 0
    detail: str


# --------------------------------------------------------------------------------------------
# Traffic


class TrafficCutoverRequest(ActivityRequest):
    """Make ``endpoint`` the one that answers, take ``disable_endpoints`` out of routing."""

    profile: str
    endpoint: str = Field(min_length=1)
    endpoint_type: Literal["AzureEndpoints", "ExternalEndpoints", "NestedEndpoints"] = (
        "ExternalEndpoints"
    )
    disable_endpoints: list[str] = Field(default_factory=list)
    strategy: Literal["enable_disable", "swap_priority"] = "enable_disable"
    frontdoor: str | None = Field(default=None, description="default: DR_FRONTDOOR_URL")
    region: str | None = Field(default=None, description="the region that must answer")
    health_path: str = "/web/health"
    max_ttl_wait_s: float = Field(default=120, ge=0, le=3600)
    monitor_timeout_s: float = Field(default=180, ge=0, le=3600)
    check_timeout_s: float = Field(default=120, ge=1, le=3600)
    require_writable: bool = True

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        return _check_resource_id(value, "Microsoft.Network", "trafficmanagerprofiles")


class EndpointState(BaseModel):
    name: str
    status: str | None
    monitor_status: str | None
    priority: int | None


class FrontDoorCheck(BaseModel):
    url: str
    ok: bool
    status_code: int | None = None
    region: str | None = None
    database_writable: bool | None = None
    detail: str


class TrafficResult(BaseModel):
    profile: str
    changed: list[str]
    endpoints: list[EndpointState]
    ttl_waited_s: float
    frontdoor: FrontDoorCheck | None
    ok: bool
    detail: str


# --------------------------------------------------------------------------------------------
# Cache, release, isolation, dependencies


class CacheFlushRequest(ActivityRequest):
    """Delete Odoo sessions in Redis by key prefix (``flush_all`` empties the database)."""

    redis: str | None = Field(default=None, description="redis:// URL; default DR_REDIS_URL")
    redis_secret: SecretRef | None = Field(default=None, description="a secret holding the URL")
    prefix: str = Field(default="session:", min_length=1)
    flush_all: bool = False
    batch: int = Field(default=500, ge=1, le=10_000)
    timeout_s: float = Field(default=5, ge=0.5, le=60)


class CacheFlushResult(BaseModel):
    deleted: int
    pattern: str | None
    flushed_all: bool
    keys_after: int
    detail: str


class ReleaseRollbackRequest(ClusterRequest):
    """Roll deployments back to a revision (default: the newest one before the current)."""

    namespace: str = "odoo"
    deployment: str = "odoo-web"
    deployments: list[str] = Field(default_factory=list, description="others to roll back too")
    revision: int | None = Field(default=None, ge=1)


class ReleaseRecord(BaseModel):
    """One release of a deployment: revision, images and configuration hash."""

    revision: int
    images: dict[str, str]
    config_hash: str | None = None
    current: bool = False


class DeploymentRollback(BaseModel):
    deployment: str
    from_revision: int
    to_revision: int
    images: dict[str, str]
    already_current: bool
    ready: bool


class ReleaseRollbackResult(BaseModel):
    cluster: str
    rollbacks: list[DeploymentRollback]
    rollout_s: float
    detail: str


def choose_rollback(
    history: list[ReleaseRecord], revision: int | None
) -> tuple[ReleaseRecord, ReleaseRecord, str]:
    """(current, target, reason): the named revision, else the newest before the current one.

    A revision with the same images and configuration as the current one is skipped: rolling
    back to it would change nothing.
    """
    if not history:
        raise ValueError("the deployment has no recorded releases to roll back to")
    ordered = sorted(history, key=lambda r: r.revision)
    current = next((r for r in ordered if r.current), ordered[-1])
    if revision is not None:
        target = next((r for r in ordered if r.revision == revision), None)
        if target is None:
            known = ", ".join(str(r.revision) for r in ordered)
            raise ValueError(f"revision {revision} is not recorded (known: {known})")
        return current, target, f"revision {revision} was asked for"
    same = (current.images, current.config_hash)
    for candidate in reversed(ordered):
        if (
            candidate.revision < current.revision
            and (
                candidate.images,
                candidate.config_hash,
            )
            != same
        ):
            return (
                current,
                candidate,
                (
                    f"revision {candidate.revision} is the newest release before the current "
                    f"revision {current.revision} that differs from it"
                ),
            )
    raise ValueError(f"no release before revision {current.revision} differs from it")


class LockRequest(ActivityRequest):
    """isolation_lock: a CanNotDelete management lock on each affected resource."""

    resources: list[str] = Field(min_length=1)
    lock_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,90}$")
    level: Literal["CanNotDelete", "ReadOnly"] = "CanNotDelete"
    notes: str | None = None

    @field_validator("resources")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for rid in value:
            parse_resource_id(rid)
        return value


class LockRecord(BaseModel):
    resource: str
    lock_id: str
    level: str
    created: bool


class LockResult(BaseModel):
    locks: list[LockRecord]
    detail: str


class RotateSecret(BaseModel):
    """One secret to rotate; with ``db_role`` the new value is also set as that role's
    password on each reachable server in ``servers``."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretRef
    db_role: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    servers: list[DbServer] = Field(default_factory=list)


class RotateSecretsRequest(ActivityRequest):
    secrets: list[RotateSecret] = Field(min_length=1)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)


class RotatedSecret(BaseModel):
    name: str
    new_version: str | None
    applied_on: list[str]
    not_applied: dict[str, str] = Field(default_factory=dict)


class RotateSecretsResult(BaseModel):
    rotated: list[RotatedSecret]
    detail: str


class DisableEndpointsRequest(ActivityRequest):
    endpoints: list[TrafficEndpoint] = Field(min_length=1)


class EndpointChange(BaseModel):
    profile: str
    name: str
    disabled: bool
    detail: str


class DisableEndpointsResult(BaseModel):
    endpoints: list[EndpointChange]
    all_disabled: bool
    detail: str


class RedisRemediationRequest(CacheFlushRequest):
    """dependency_redis: flush sessions, flush everything, or drop every client connection."""

    action: Literal["flush_sessions", "flush_all", "reset_connections"] = "flush_sessions"


class RedisRemediationResult(BaseModel):
    action: str
    ping_ok: bool
    deleted: int = 0
    clients_killed: int = 0
    detail: str


class StorageSwitchRequest(ActivityRequest):
    """dependency_storage: point the attachment store at another account (a Key Vault value)."""

    setting: SecretRef = Field(description="the secret the application reads the account from")
    account_url: str = Field(min_length=8, description="blob endpoint of the account to use")
    check: bool = True
    timeout_s: float = Field(default=5, ge=0.5, le=60)


class StorageSwitchResult(BaseModel):
    previous: str | None
    current: str
    changed: bool
    new_version: str | None
    reachable: bool | None
    detail: str


class QueuesRequest(ClusterRequest):
    """dependency_queues_pause / _resume: integration worker deployments to zero and back."""

    namespace: str = "odoo"
    workers: dict[str, int] = Field(
        min_length=1, description="deployment -> replicas to resume to (ignored by pause)"
    )


class QueuesResult(BaseModel):
    paused: bool
    deployments: list[DeploymentScale]
    detail: str


# --------------------------------------------------------------------------------------------
# Validation


class TechnicalValidationRequest(ActivityRequest):
    """validate_technical: the recovered database, and the application through the front door."""

    server: DbServer
    frontdoor: str | None = Field(default=None, description="default: DR_FRONTDOOR_URL")
    region: str | None = None
    health_path: str = "/web/health"
    timeout_s: float = Field(default=10, ge=1, le=120)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)


class TechnicalCheck(BaseModel):
    id: Literal["database.writable", "app.health", "ingress.region"]
    status: Literal["pass", "fail", "skip"]
    detail: str


class TechnicalReport(BaseModel):
    ok: bool
    checks: list[TechnicalCheck]


class FinanceValidationRequest(ActivityRequest):
    """validate_finance: which database to check and against what recovery point.

    The DSN comes from Key Vault: ``dsn_secret`` holds a whole libpq DSN; without it the DSN is
    built from ``server`` (its admin login, password from Key Vault) and ``database``.
    """

    server: DbServer | None = None
    database: str = "odoo"
    dsn_secret: SecretRef | None = None
    recovery_point: datetime | None = None
    expect_jobs_held: bool = False
    strict: bool = Field(
        default=False, description="a failing check fails the activity (security incidents)"
    )
    companies: list[int] | None = None
    blob_container_url: str | None = None
    filestore: str | None = Field(
        default=None, description="the database's filestore folder, as mounted for this app"
    )
    statement_timeout_s: float = Field(default=600, gt=0, le=3600)
    connect_timeout_s: float = Field(default=10, gt=0, le=60)

    @field_validator("recovery_point")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)


# --------------------------------------------------------------------------------------------
# Servers this product creates carry this tag (a point-in-time restore, for one).

CREATED_BY_TAG = "created-by"
CREATED_BY = "odoo-finance-dr"
