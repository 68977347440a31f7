"""Domain models shared by triggers, orchestrators, activities and the command line.

Every value that crosses a layer is one of these pydantic models, so a field added later
breaks no caller and a bad value is refused where it enters.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Phase(StrEnum):
    """Where an incident stands; the names are the ones the HTTP API reports."""

    DECLARED = "declared"
    ASSESSING = "assessing"
    HA_HANDLED = "ha-handled"
    AWAITING_APPROVAL = "awaiting-approval"
    RECOVERING = "recovering"
    VALIDATING = "validating"
    AWAITING_SIGNOFF = "awaiting-signoff"
    RECOVERED = "recovered"
    STOOD_DOWN = "stood-down"
    NEEDS_OPERATOR = "needs-operator"
    ABORTED = "aborted"


# ha-handled is not terminal: the same incident can still grow into a disaster.
TERMINAL_PHASES = frozenset({Phase.RECOVERED, Phase.STOOD_DOWN, Phase.ABORTED})


class Gate(StrEnum):
    """A point in a run that needs a person's decision."""

    RECOVERY = "recovery"
    RPO = "rpo"
    FENCE = "fence"
    CUTOVER = "cutover"
    SIGNOFF = "signoff"


class GateOutcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Role(StrEnum):
    """App roles carried in the ``roles`` claim of a bearer token."""

    OPERATOR = "DR.Operator"
    APPROVER = "DR.Approver"
    FINANCE_CONTROLLER = "Finance.Controller"
    SECURITY_OFFICER = "Security.Officer"


# The app role of the identity that relays Teams card answers (the Logic App's). It is not a
# person's role, so no gate may name it and it is not a ``Role``; tokens may carry it.
RELAY_ROLE = "DR.ApprovalRelay"
# Every app role of the app registration: what a bearer token's ``roles`` claim may hold.
APP_ROLES = (*(role.value for role in Role), RELAY_ROLE)


class RunbookPath(StrEnum):
    """The runbook paths an incident can be classified into."""

    REGIONAL_OUTAGE = "regional-outage"
    DATABASE_CORRUPTION = "database-corruption"
    FAILED_RELEASE = "failed-release"
    SECURITY_INCIDENT = "security-incident"
    DEPENDENCY_FAILURE = "dependency-failure"
    HA_HANDLED = "ha-handled"


class ScenarioFamily(StrEnum):
    """Signals of one family in one environment fold into one incident.

    Paths that can turn into each other during one outage share a family: an incident that
    starts as ha-handled ingress trouble and grows into a regional outage stays one incident.
    """

    AVAILABILITY = "availability"
    DATA = "data"
    SECURITY = "security"
    DEPENDENCY = "dependency"


class SignalSource(StrEnum):
    AZURE_MONITOR = "azure-monitor"
    EVENT_GRID = "event-grid"
    OPERATOR = "operator"


class SignalKind(StrEnum):
    """What a signal is, independent of the schema it arrived in."""

    METRIC = "metric"
    METRIC_DYNAMIC = "metric-dynamic"
    LOG_SEARCH = "log-search"
    ACTIVITY_ADMINISTRATIVE = "activity-administrative"
    ACTIVITY_SECURITY = "activity-security"
    ACTIVITY_OTHER = "activity-other"
    RESOURCE_HEALTH = "resource-health"
    SERVICE_HEALTH = "service-health"
    SMART_DETECTOR = "smart-detector"
    ALERT_OTHER = "alert-other"
    AVAILABILITY_STATUS_CHANGED = "availability-status-changed"
    RESOURCE_ANNOTATED = "resource-annotated"
    RESOURCE_WRITE = "resource-write"
    RESOURCE_DELETE = "resource-delete"
    RESOURCE_ACTION = "resource-action"
    KEYVAULT_NEAR_EXPIRY = "keyvault-near-expiry"
    KEYVAULT_EXPIRED = "keyvault-expired"
    KEYVAULT_OTHER = "keyvault-other"
    EVENT_OTHER = "event-other"
    DECLARATION = "declaration"


class MonitorCondition(StrEnum):
    FIRED = "fired"
    RESOLVED = "resolved"


class Disposition(StrEnum):
    """What intake did with a signal (the ``disposition`` of ``POST /api/alerts``)."""

    STARTED = "started"
    FOLDED = "folded"
    IGNORED = "ignored"


class RawRef(BaseModel):
    """Where the exact bytes of a signal are kept: their sha256 and the blob they go to."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    blob: str
    size: int


class AlertCondition(BaseModel):
    """One criterion of a metric or log search alert, with numbers parsed where they parse."""

    metric_name: str | None = None
    metric_namespace: str | None = None
    operator: str | None = None
    threshold: float | None = None
    threshold_text: str | None = None
    metric_value: float | None = None
    time_aggregation: str | None = None
    dimensions: dict[str, str] = Field(default_factory=dict)
    search_query: str | None = None


FactValue = str | int | float | bool | None


class Signal(BaseModel):
    """One alert or event, normalised: every field but source, kind and dedupe key may be None."""

    source: SignalSource
    kind: SignalKind
    schema_id: str | None = None
    monitoring_service: str | None = None
    signal_type: str | None = None
    event_type: str | None = None
    rule_name: str | None = None
    rule_id: str | None = None
    description: str | None = None
    resource_id: str | None = None
    resource_ids: list[str] = Field(default_factory=list)
    environment: str | None = None
    component: str | None = Field(
        default=None, description="role of the resource in the environment, e.g. postgres-primary"
    )
    region: str | None = None
    severity: int | None = Field(default=None, ge=0, le=4, description="0 (critical) to 4")
    condition: MonitorCondition = MonitorCondition.FIRED
    occurred_at: datetime | None = None
    dedupe_key: str
    raw: RawRef | None = None
    conditions: list[AlertCondition] = Field(default_factory=list)
    facts: dict[str, FactValue] = Field(default_factory=dict)
    custom_properties: dict[str, str] = Field(default_factory=dict)

    @property
    def fired(self) -> bool:
        return self.condition == MonitorCondition.FIRED

    def text(self) -> str:
        """The human-written words of the signal (rule name, description), for keyword rules."""
        parts = [self.rule_name, self.description, *self.custom_properties.values()]
        parts += [str(v) for k, v in self.facts.items() if isinstance(v, str) and k in _TEXT_FACTS]
        return " ".join(p for p in parts if p)


_TEXT_FACTS = {"title", "summary", "reason", "operation_name", "annotation_name", "search_query"}


class Evidence(BaseModel):
    """One observation gathered about an incident, e.g. ``postgres.primary.reachable = False``.

    Well-known keys are listed in ``EvidenceKey``; the assess activities produce them.
    """

    key: str
    value: FactValue = None
    observed_at: datetime
    source: str = Field(description="what observed it: an activity name or 'signal'")
    detail: str | None = None


class EvidenceKey(StrEnum):
    """Evidence keys that classification reads; producers use these names."""

    PRIMARY_REACHABLE = "postgres.primary.reachable"
    PRIMARY_REGION_AVAILABLE = "region.primary.available"
    REPLICA_HEALTHY = "postgres.replica.healthy"
    REPLICA_LAG_SECONDS = "postgres.replica.lag_seconds"
    REPLICA_LAG_BYTES = "postgres.replica.lag_bytes"
    DATA_DAMAGE = "finance.data_damage"
    RECENT_RELEASE = "release.recent"
    APP_HEALTHY = "app.healthy"
    SECURITY_COMPROMISE = "security.compromise_suspected"
    DEPENDENCY_DOWN = "dependency.down"
    PERIOD_CLOSE = "finance.period_close"


class Classification(BaseModel):
    """The runbook path chosen for an incident, and why, in sentences a person can check."""

    path: RunbookPath
    family: ScenarioFamily
    confidence: float = Field(ge=0.0, le=1.0)
    disaster: bool = Field(description="above the disaster threshold; False means HA handling")
    reasons: list[str]
    candidates: dict[str, float] = Field(
        default_factory=dict, description="score of every path considered"
    )


class Principal(BaseModel):
    """The authenticated person (or app) behind a request."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(description="stable id: the oid claim, else sub")
    name: str = Field(description="preferred_username, else name, else the subject")
    roles: tuple[str, ...] = ()
    tenant: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


class ApprovalDecision(BaseModel):
    """One person's decision at one gate of one incident."""

    incident_id: str
    gate: Gate
    decision: Decision
    approver: Principal
    comment: str = ""
    decided_at: datetime
    via: str = Field(default="http", description="http or card")
    gate_instance: str | None = Field(
        default=None,
        description="the orchestration instance of the gate opening decided (a gate that "
        "opens again takes new decisions)",
    )


class IncidentSummary(BaseModel):
    """The incident index row: enough to list incidents and find their orchestration."""

    incident_id: str
    correlation_key: str
    environment: str
    family: ScenarioFamily
    generation: int = Field(ge=1)
    phase: Phase = Phase.DECLARED
    path: RunbookPath | None = None
    declared_by: str
    declarers: list[str] = Field(
        default_factory=list,
        description="subjects and names of every operator who declared into the incident (the "
        "one who started it included); four-eyes counts each as a declarer",
    )
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str | None = None
    first_signal: str | None = Field(default=None, description="dedupe key of the first signal")
