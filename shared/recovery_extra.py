"""Inputs and results of the recovery activities that complete the action catalogue.

The request models follow the inputs the runbooks give each action (``shared.runbooks``): a
step's inputs plus ``incident_id`` and ``step_id`` validate into the model, nothing else is
needed. Where the runbook names a resource only (a server name, a dependency's name), the
activity finds the rest in the environment's configuration (``shared.config``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from shared.recovery import (
    ActivityRequest,
    AppCredential,
    DbServer,
    FrontDoorCheck,
    LockRecord,
    QueuesResult,
    RotateSecretsResult,
    StorageSwitchResult,
    _check_resource_id,
    _utc,
)

MILLISECOND = timedelta(milliseconds=1)


def _cluster(value: str) -> str:
    return _check_resource_id(value, "Microsoft.ContainerService", "managedClusters")


# --------------------------------------------------------------------------------------------
# db_find_recovery_point, db_drop_server


class FindRecoveryPointRequest(ActivityRequest):
    """Where to look for damage: the server, and when it is suspected to have started.

    ``suspected_since`` (database corruption) or ``before`` (security incident: the point must be
    earlier than the compromise) bounds the search; at least one is needed.
    """

    server: DbServer
    suspected_since: datetime | None = None
    before: datetime | None = None
    database: str | None = Field(
        default=None, description="the Odoo database (default: the environment's, else odoo)"
    )
    margin_s: float = Field(
        default=300, ge=0, le=86_400, description="search this long before the suspected time"
    )
    sample_limit: int = Field(default=50, ge=1, le=1000)
    connect_timeout_s: float = Field(default=5.0, ge=0.5, le=30.0)
    statement_timeout_s: float = Field(default=120, ge=1, le=1800)

    @field_validator("suspected_since", "before")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _bounded(self) -> FindRecoveryPointRequest:
        if self.suspected_since is None and self.before is None:
            raise ValueError("give suspected_since or before: the search needs a starting time")
        return self

    def window_start(self) -> datetime:
        """The earliest write the search looks at."""
        anchor = min(t for t in (self.suspected_since, self.before) if t is not None)
        return anchor - timedelta(seconds=self.margin_s)


class DamagedMove(BaseModel):
    """A posted journal entry that fails the ledger checks, and when its damage was committed."""

    move_id: int
    name: str | None
    problem: str
    committed_at: datetime | None
    commit_time_basis: Literal["commit_timestamp", "write_date"]


class RecoveryPointResult(BaseModel):
    point_in_time: datetime
    basis: Literal["damage_found", "no_damage_found"]
    first_damage_at: datetime | None
    damaged_count: int
    damaged_moves: list[DamagedMove]
    searched_since: datetime
    reason: str


class DropServerRequest(ActivityRequest):
    """The server to delete: an ARM id, or a bare name in the incident environment's group."""

    server: str | DbServer
    timeout_s: float = Field(default=900, ge=5, le=3600)

    @field_validator("server")
    @classmethod
    def _server(cls, value: str | DbServer) -> str | DbServer:
        if isinstance(value, str) and "/" in value:
            _check_resource_id(value, "Microsoft.DBforPostgreSQL", "flexibleServers")
        elif isinstance(value, str) and not value.strip():
            raise ValueError("server must name a flexible server")
        return value


class DropServerResult(BaseModel):
    server_id: str
    deleted: bool
    already_gone: bool
    detail: str


# --------------------------------------------------------------------------------------------
# app_maintenance, app_repoint_database, compute_restart_deployment


class DeploymentRequest(ActivityRequest):
    """One Kubernetes deployment of the Odoo application in an AKS cluster."""

    cluster: str
    deployment: str = Field(min_length=1)
    namespace: str = "odoo"
    timeout_s: float = Field(default=300, ge=5, le=3600)

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str) -> str:
        return _cluster(value)


class MaintenanceRequest(DeploymentRequest):
    enabled: bool


class MaintenanceResult(BaseModel):
    cluster: str
    deployment: str
    enabled: bool
    changed: bool
    revision: str | None
    ready: int
    detail: str


class RepointRequest(DeploymentRequest):
    """Point the deployment's database settings at ``server`` and check the health says so."""

    server: DbServer
    app: AppCredential | None = Field(
        default=None,
        description=(
            "give this role its current Key Vault password on the server first: a restored "
            "server carries the password of its recovery point, not the rotated one"
        ),
    )
    db_host_secret: str | None = Field(
        default=None, description="a Key Vault secret the application reads its host from"
    )
    health_url: str | None = Field(
        default=None, description="the application's health URL (default: DR_FRONTDOOR_URL)"
    )
    health_path: str = "/web/health"
    check_timeout_s: float = Field(default=60, ge=1, le=900)
    timeout_s: float = Field(default=600, ge=5, le=3600)


class RepointResult(BaseModel):
    cluster: str
    deployment: str
    server_id: str
    db_host: str
    previous_host: str | None
    changed: bool
    health: FrontDoorCheck | None
    detail: str


class RestartRequest(DeploymentRequest):
    timeout_s: float = Field(default=600, ge=5, le=3600)


class RestartResult(BaseModel):
    cluster: str
    deployment: str
    restarted_at: str
    already_restarted: bool
    ready: int
    rollout_s: float
    detail: str


# --------------------------------------------------------------------------------------------
# traffic_reroute


class RerouteRequest(ActivityRequest):
    """Take ``endpoint`` (a name, or ``primary``/``secondary`` by priority) out of rotation."""

    profile: str
    endpoint: str = Field(min_length=1)

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        return _check_resource_id(value, "Microsoft.Network", "trafficmanagerprofiles")


class RerouteResult(BaseModel):
    profile: str
    endpoint: str
    region: str | None
    rerouted: bool
    already_out: bool
    remaining: list[str]
    detail: str


# --------------------------------------------------------------------------------------------
# isolation_lock_environment, isolation_unlock, secrets_rotate


class IsolationRequest(ActivityRequest):
    """Lock (or unlock) the resources of an environment; ``resources`` narrows the set."""

    environment: str = Field(min_length=1)
    scope: str = "public-endpoints-and-identities"
    resources: list[str] = Field(default_factory=list)
    lock_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,90}$")


class UnlockResult(BaseModel):
    removed: list[LockRecord]
    already_gone: list[str]
    lock_name: str
    detail: str


class SecretsRotateRequest(ActivityRequest):
    """Rotate secrets of one vault by name (the vault's ARM id, name, or URL)."""

    vault: str = Field(min_length=1)
    names: list[str] = Field(min_length=1)
    connect_timeout_s: float = Field(default=2.0, ge=0.5, le=10.0)

    @field_validator("names")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 127 or not all(c.isalnum() or c == "-" for c in name):
                raise ValueError(f"{name!r} is not a Key Vault secret name")
        return value


class SecretsRotateResult(RotateSecretsResult):
    vault_url: str


# --------------------------------------------------------------------------------------------
# dependency_storage_failover/_failback, dependency_pause/resume_integration, dependency_check


class StorageFailoverRequest(ActivityRequest):
    """Switch the attachment store between the environment's attachment accounts."""

    account: str = Field(min_length=1, description="an attachment account (ARM id or name)")
    setting: str = Field(
        default="attachments-account",
        description="the Key Vault secret the application reads its account URL from",
    )
    account_url: str | None = Field(default=None, description="default: the account's blob URL")
    check: bool = True
    timeout_s: float = Field(default=5, ge=0.5, le=60)


class StorageFailoverResult(StorageSwitchResult):
    account: str


class IntegrationRequest(ActivityRequest):
    """Pause or resume an integration (bank, tax, identity) by name."""

    integration: str = Field(min_length=1)
    timeout_s: float = Field(default=300, ge=5, le=3600)


class IntegrationResult(QueuesResult):
    integration: str
    cluster: str


DependencyKind = Literal["redis", "storage", "integration", "identity", "dns", "other"]


class DependencyCheckRequest(ActivityRequest):
    dependency: str = Field(min_length=1)
    kind: DependencyKind | None = Field(default=None, description="default: found from the name")
    timeout_s: float = Field(default=5, ge=0.5, le=60)


class DependencyProbe(BaseModel):
    target: str
    ok: bool
    detail: str


class DependencyCheckResult(BaseModel):
    dependency: str
    kind: DependencyKind
    kind_reason: str
    healthy: bool | None
    probes: list[DependencyProbe]
    detail: str


# --------------------------------------------------------------------------------------------
# Which environment a step runs for


def environment_name(incident_id: str, known: list[str]) -> str:
    """The environment of an incident: its id starts with the environment's name.

    Incident ids are ``<environment>:<scenario>:<generation>``; a configuration with a single
    environment answers that one for any id (a drill or a hand-made id).
    """
    head = incident_id.split(":", 1)[0]
    if head in known:
        return head
    if len(known) == 1:
        return known[0]
    raise ValueError(
        f"incident {incident_id!r} names no configured environment "
        f"(known: {', '.join(sorted(known)) or 'none'})"
    )
