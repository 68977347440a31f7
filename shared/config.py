"""The product's configuration: environments, their Azure resources, targets and approvers.

Loaded from the YAML file named by ``DR_CONFIG`` (default ``config/workloads.yaml``) and
validated at load; an error names the field that is wrong. Resource ids left out of the file
are derived from the environment's subscription and resource group.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from shared.models import Gate, Role, RunbookPath

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "workloads.yaml"

# Durable timers of out-of-process runtimes are capped below seven days, and an approval
# that waits for days is a stale approval: every gate must expire well inside that.
MAX_GATE_EXPIRY = timedelta(hours=72)

FINANCE_WORKLOADS = ("accounting", "invoicing", "payments", "reporting")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """The workloads file is missing, not YAML, or has a field that is wrong."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or []


def _duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` (and what pydantic accepts)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resource(_Model):
    """One Azure resource: its name, region and (derived when omitted) ARM id."""

    name: str = Field(min_length=1)
    region: str | None = None
    resource_id: str | None = None


class PostgresConfig(_Model):
    primary: Resource
    replica: Resource
    database: str = "odoo"


class AksConfig(_Model):
    primary: Resource
    secondary: Resource
    namespace: str = "odoo"
    deployment: str = "odoo"


class TrafficManagerEndpoint(_Model):
    name: str = Field(min_length=1)
    region: str | None = None
    endpoint_type: str = Field(
        default="ExternalEndpoints", pattern="^(AzureEndpoints|ExternalEndpoints|NestedEndpoints)$"
    )
    target: str | None = None
    resource_id: str | None = None


class TrafficManagerConfig(_Model):
    profile: Resource
    endpoints: dict[str, TrafficManagerEndpoint] = Field(
        description="by role: 'primary' and 'secondary'"
    )

    @model_validator(mode="after")
    def _roles(self) -> TrafficManagerConfig:
        missing = {"primary", "secondary"} - set(self.endpoints)
        if missing:
            raise ValueError(f"endpoints must name a {' and a '.join(sorted(missing))} endpoint")
        return self


class StorageAccount(Resource):
    purpose: str = "attachments"


class WorkloadTarget(_Model):
    """Recovery targets of one finance workload."""

    rto: Duration = Field(description="time to recovered and signed off")
    rpo: Duration = Field(description="data that may be lost, measured from the last transaction")


class ApproverGroup(_Model):
    name: str = Field(min_length=1)
    role: Role
    members: list[str] = Field(default_factory=list)


class GateTimings(_Model):
    """Remind at T1, escalate to the next group at T2, expire at T3 (counted from opening)."""

    remind_after: Duration
    escalate_after: Duration
    expire_after: Duration

    @model_validator(mode="after")
    def _ordered(self) -> GateTimings:
        if not timedelta(0) < self.remind_after < self.escalate_after < self.expire_after:
            raise ValueError("timings must grow: 0 < remind_after < escalate_after < expire_after")
        if self.expire_after > MAX_GATE_EXPIRY:
            raise ValueError(
                f"expire_after {self.expire_after} is longer than {MAX_GATE_EXPIRY}: approvals "
                "must be bounded well under the six-day durable timer limit"
            )
        return self


class GateRequirement(_Model):
    """How many distinct people must approve, and which roles must be among them."""

    required_approvals: int = Field(default=1, ge=1, le=5)
    required_roles: list[Role] = Field(default_factory=list)

    @model_validator(mode="after")
    def _enough(self) -> GateRequirement:
        if len(set(self.required_roles)) > self.required_approvals:
            raise ValueError(
                "required_approvals must be at least the number of required_roles, "
                "because one person counts once"
            )
        return self


class GatePolicy(_Model):
    """Who decides a gate: groups in escalation order, how many approve, and the timings."""

    groups: list[ApproverGroup] = Field(min_length=1)
    required_approvals: int = Field(default=1, ge=1, le=5)
    required_roles: list[Role] = Field(default_factory=list)
    timings: GateTimings
    by_path: dict[RunbookPath, GateRequirement] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> GatePolicy:
        known = {g.role for g in self.groups}
        for where, req in [("", self.base_requirement()), *self._path_items()]:
            unknown = set(req.required_roles) - known
            if unknown:
                raise ValueError(
                    f"{where}required_roles {sorted(unknown)} are held by no approver group"
                )
        return self

    def _path_items(self) -> list[tuple[str, GateRequirement]]:
        return [(f"by_path.{p.value}: ", r) for p, r in self.by_path.items()]

    def base_requirement(self) -> GateRequirement:
        return GateRequirement(
            required_approvals=self.required_approvals, required_roles=self.required_roles
        )

    def requirement(self, path: RunbookPath | str | None = None) -> GateRequirement:
        """The requirement for an incident on ``path`` (a path override, else the base)."""
        if path is not None:
            override = self.by_path.get(RunbookPath(path))
            if override is not None:
                return override
        return self.base_requirement()

    @property
    def roles(self) -> set[str]:
        """Roles that may decide this gate."""
        return {g.role.value for g in self.groups}


class RecoverySettings(_Model):
    """How the recovery actions address the workload inside the environment's resources."""

    app_role: str = Field(default="odoo", description="the application's database role")
    app_password_secret: str = Field(
        default="odoo-db-password", description="Key Vault secret with the app role's password"
    )
    admin_password_secret: str | None = Field(
        default=None, description="Key Vault secret with the servers' admin password, if any"
    )
    restore_server: str = Field(
        default="odoo-pg-restore", description="name of the isolated point-in-time restore"
    )
    secondary_pool: str = Field(default="nodepool1", pattern=r"^[a-z][a-z0-9]{0,11}$")
    secondary_nodes: int = Field(default=3, ge=1, le=1000)
    idle_nodes: int = Field(default=1, ge=0, le=1000)
    web_replicas: int = Field(default=2, ge=1, le=100)
    cron_deployment: str = "odoo-cron"
    integration_deployments: list[str] = Field(default_factory=lambda: ["odoo-bank-sync"])
    rotate_secrets: list[str] = Field(default_factory=lambda: ["odoo-db-password"])
    quiet_period: Duration = Field(
        default=timedelta(minutes=5),
        description="how long every signal must stay resolved before the incident stands down",
    )
    filestore: str | None = Field(
        default=None,
        description=(
            "the Odoo filestore folder as mounted for the app (an Azure Files share); "
            "the app setting DR_ODOO_FILESTORE overrides it"
        ),
    )
    watch_interval: Duration = Field(
        default=timedelta(seconds=5),
        description="how often the replication monitor observes the primary",
    )


class Environment(_Model):
    """One Odoo deployment with its Azure resources, targets and approvers."""

    tenant: str = Field(min_length=1)
    tier: str = Field(min_length=1)
    subscription_id: str = Field(pattern=r"^[0-9a-fA-F-]{36}$")
    resource_group: str = Field(min_length=1)
    primary_region: str
    secondary_region: str
    postgres: PostgresConfig
    aks: AksConfig
    traffic_manager: TrafficManagerConfig
    key_vault: Resource
    storage_accounts: list[StorageAccount] = Field(default_factory=list)
    redis: Resource | None = None
    workloads: dict[str, WorkloadTarget]
    approvals: dict[Gate, GatePolicy]
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)

    @model_validator(mode="before")
    @classmethod
    def _derive_ids(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return _with_resource_ids(data)
        return data

    @model_validator(mode="after")
    def _complete(self) -> Environment:
        missing = [w for w in FINANCE_WORKLOADS if w not in self.workloads]
        if missing:
            raise ValueError(f"workloads is missing targets for {', '.join(missing)}")
        unknown = [w for w in self.workloads if w not in FINANCE_WORKLOADS]
        if unknown:
            raise ValueError(
                f"workloads has unknown {', '.join(unknown)}; known: {', '.join(FINANCE_WORKLOADS)}"
            )
        gates = [g.value for g in Gate if g not in self.approvals]
        if gates:
            raise ValueError(f"approvals is missing the gate(s) {', '.join(gates)}")
        return self

    def components(self) -> list[tuple[str, str, str | None]]:
        """(component, resource id, region) for every resource of the environment."""
        out: list[tuple[str, str, str | None]] = [
            ("postgres-primary", self.postgres.primary.resource_id, self.postgres.primary.region),
            ("postgres-replica", self.postgres.replica.resource_id, self.postgres.replica.region),
            ("aks-primary", self.aks.primary.resource_id, self.aks.primary.region),
            ("aks-secondary", self.aks.secondary.resource_id, self.aks.secondary.region),
            ("traffic-manager", self.traffic_manager.profile.resource_id, None),
            ("key-vault", self.key_vault.resource_id, self.key_vault.region),
        ]
        for role, endpoint in self.traffic_manager.endpoints.items():
            out.append((f"traffic-manager-{role}", endpoint.resource_id, endpoint.region))
        for account in self.storage_accounts:
            out.append(("storage", account.resource_id, account.region))
        if self.redis is not None:
            out.append(("redis", self.redis.resource_id, self.redis.region))
        return out

    def tightest_rpo(self) -> timedelta:
        return min(t.rpo for t in self.workloads.values())

    def tightest_rto(self) -> timedelta:
        return min(t.rto for t in self.workloads.values())


_PROVIDERS = {
    "postgres": "Microsoft.DBforPostgreSQL/flexibleServers",
    "aks": "Microsoft.ContainerService/managedClusters",
    "traffic_manager": "Microsoft.Network/trafficManagerProfiles",
    "key_vault": "Microsoft.KeyVault/vaults",
    "storage_accounts": "Microsoft.Storage/storageAccounts",
    "redis": "Microsoft.Cache/redis",
}


def _with_resource_ids(data: dict) -> dict:
    """Fill in ``resource_id`` wherever the file gives only a name."""
    sub, rg = data.get("subscription_id"), data.get("resource_group")
    if not isinstance(sub, str) or not isinstance(rg, str):
        return data
    base = f"/subscriptions/{sub}/resourceGroups/{rg}/providers"
    data = dict(data)

    def fill(item: Any, provider: str) -> Any:
        if (
            isinstance(item, dict)
            and "resource_id" not in item
            and isinstance(item.get("name"), str)
        ):
            return {**item, "resource_id": f"{base}/{provider}/{item['name']}"}
        return item

    for section in ("postgres", "aks"):
        if isinstance(data.get(section), dict):
            data[section] = {k: fill(v, _PROVIDERS[section]) for k, v in data[section].items()}
    for section in ("key_vault", "redis"):
        if section in data:
            data[section] = fill(data[section], _PROVIDERS[section])
    if isinstance(data.get("storage_accounts"), list):
        data["storage_accounts"] = [
            fill(a, _PROVIDERS["storage_accounts"]) for a in data["storage_accounts"]
        ]
    tm = data.get("traffic_manager")
    if isinstance(tm, dict):
        tm = dict(tm)
        if "profile" in tm:
            tm["profile"] = fill(tm["profile"], _PROVIDERS["traffic_manager"])
        profile = tm.get("profile")
        profile_id = profile.get("resource_id") if isinstance(profile, dict) else None
        if isinstance(tm.get("endpoints"), dict) and profile_id:
            tm["endpoints"] = {
                role: _endpoint_id(ep, profile_id) for role, ep in tm["endpoints"].items()
            }
        data["traffic_manager"] = tm
    return data


def _endpoint_id(endpoint: Any, profile_id: str) -> Any:
    if isinstance(endpoint, dict) and "resource_id" not in endpoint and "name" in endpoint:
        kind = endpoint.get("endpoint_type", "ExternalEndpoints")
        return {**endpoint, "resource_id": f"{profile_id}/{kind}/{endpoint['name']}"}
    return endpoint


class ResourceMatch(BaseModel):
    """What a resource id means to us: its environment, the role it plays, its region."""

    environment: str
    component: str
    region: str | None = None
    resource_id: str


class DrConfig(_Model):
    """The whole workloads file."""

    version: int = 1
    environments: dict[str, Environment]

    @model_validator(mode="after")
    def _names(self) -> DrConfig:
        for name in self.environments:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name):
                raise ValueError(
                    f"environment name {name!r} must be lower-case letters, digits and '-' "
                    "(it becomes part of incident ids and storage keys)"
                )
        return self

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            raise KeyError(f"no environment named {name!r} in the configuration") from None

    def locate(self, resource_id: str | None) -> ResourceMatch | None:
        """Find the environment of an ARM id, compared case-insensitively.

        A child of a configured resource (a database of the server, say) matches its parent;
        a bare subscription or resource group matches when exactly one environment lives there.
        """
        if not resource_id or not isinstance(resource_id, str):
            return None
        wanted = resource_id.strip().rstrip("/").lower()
        best: ResourceMatch | None = None
        for env_name, env in self.environments.items():
            for component, rid, region in env.components():
                known = rid.lower()
                if wanted == known or wanted.startswith(known + "/"):
                    if best is None or len(known) > len(best.resource_id):
                        best = ResourceMatch(
                            environment=env_name,
                            component=component,
                            region=region,
                            resource_id=rid,
                        )
        if best is not None:
            return best
        return self._locate_scope(wanted)

    def _locate_scope(self, wanted: str) -> ResourceMatch | None:
        hits: list[ResourceMatch] = []
        for env_name, env in self.environments.items():
            sub = f"/subscriptions/{env.subscription_id}".lower()
            rg = f"{sub}/resourcegroups/{env.resource_group}".lower()
            if wanted == rg or wanted.startswith(rg + "/"):
                hits.append(
                    ResourceMatch(
                        environment=env_name, component="resource-group", resource_id=wanted
                    )
                )
            elif wanted == sub:
                hits.append(
                    ResourceMatch(
                        environment=env_name, component="subscription", resource_id=wanted
                    )
                )
        # Limitation: a subscription holding several environments cannot say which one a
        # subscription-wide signal (service health) is about, so it matches none of them.
        return hits[0] if len(hits) == 1 else None

    def locate_any(self, resource_ids: list[str]) -> ResourceMatch | None:
        """The first of several ids that names a configured resource (exact ones first)."""
        matches = [m for m in (self.locate(r) for r in resource_ids) if m is not None]
        specific = [m for m in matches if m.component not in ("subscription", "resource-group")]
        return (specific or matches or [None])[0]


def _format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        out.append(f"{where}: {err['msg']}")
    return out


def parse_config(data: Any, source: str = "configuration") -> DrConfig:
    """Validate an already-loaded document; ``ConfigError`` names every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping with 'environments'")
    try:
        return DrConfig.model_validate(data)
    except ValidationError as exc:
        errors = _format_errors(exc)
        raise ConfigError(f"{source} is invalid: " + "; ".join(errors), errors) from None


def config_path(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    configured = env.get("DR_CONFIG")
    if not configured:
        return DEFAULT_CONFIG
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def load_config(path: str | Path | None = None) -> DrConfig:
    """Read and validate the workloads file (``DR_CONFIG``, default config/workloads.yaml)."""
    path = Path(path) if path is not None else config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the workloads file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    config = parse_config(data, str(path))
    log.debug("loaded %s environment(s) from %s", len(config.environments), path)
    return config


_cache: dict[tuple[str, float], DrConfig] = {}


def cached_config(path: str | Path | None = None) -> DrConfig:
    """``load_config`` once per file version (path and modification time)."""
    path = Path(path) if path is not None else config_path()
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return load_config(path)
    if key not in _cache:
        _cache.clear()
        _cache[key] = load_config(path)
    return _cache[key]
