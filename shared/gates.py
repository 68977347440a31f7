"""Gates: who may decide one, whether the decisions recorded so far decide it, and which are open.

The evaluation is pure: the recorded decisions, the gate's policy and the declarer in, a verdict
with its reason out. Four-eyes holds here as well as at the endpoint: whoever declared the
incident never counts as an approver, and a gate that needs N people needs N distinct subjects.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from shared.auth import is_declarer, tally_gate
from shared.config import Environment, GateRequirement
from shared.models import ApprovalDecision, Gate, IncidentSummary, Principal
from shared.stores import _digest, _Table

log = logging.getLogger(__name__)

ExpiryPolicy = Literal["abort", "deny"]
# What an expired gate means for the run: no answer to "may we fail over" aborts the run,
# no answer to "may we lose data" or "may we promote unfenced" denies that one action.
EXPIRY_POLICY: dict[str, ExpiryPolicy] = {
    "recovery": "abort",
    "rpo": "deny",
    "fence": "deny",
    "cutover": "deny",
    "signoff": "deny",
}


class GroupView(BaseModel):
    name: str
    role: str
    members: list[str]


class GatePolicyView(BaseModel):
    """A gate as opened for one incident: who may decide it, how many, and when it times out."""

    incident_id: str
    gate: str
    instance_id: str
    path: str
    roles: list[str]
    groups: list[GroupView]
    required_approvals: int = Field(ge=1)
    required_roles: list[str] = Field(default_factory=list)
    remind_after_s: float
    escalate_after_s: float
    expire_after_s: float
    on_expiry: ExpiryPolicy
    declared_by: str
    declarers: list[str] = Field(
        default_factory=list,
        description="subjects and names of every operator who declared into the incident; "
        "read again from the incident index whenever the gate is decided",
    )
    opened_at: datetime
    explain: str = ""
    reason: str = ""
    quiet_period_s: float = 300.0


class Verdict(BaseModel):
    """Whether the decisions so far decide the gate, with the sentence that says why."""

    state: Literal["pending", "approved", "rejected"]
    reason: str
    approvers: list[str] = Field(default_factory=list)
    counted: int = 0
    refused: list[str] = Field(default_factory=list)


def policy_for(
    env: Environment,
    *,
    incident_id: str,
    gate: str,
    instance_id: str,
    path: str,
    runbook_roles: list[str],
    runbook_min: int,
    declared_by: str,
    opened_at: datetime,
    explain: str = "",
    reason: str = "",
    quiet_period_s: float = 300.0,
    declarers: list[str] | None = None,
) -> GatePolicyView:
    """The configured policy of ``gate``, made at least as strict as the runbook asks."""
    policy = env.approvals[Gate(gate)]
    requirement = policy.requirement(path if path in _PATHS else None)
    roles = sorted({g.role.value for g in policy.groups} | set(runbook_roles))
    return GatePolicyView(
        incident_id=incident_id,
        gate=gate,
        instance_id=instance_id,
        path=path,
        roles=roles,
        groups=[
            GroupView(name=g.name, role=g.role.value, members=list(g.members))
            for g in policy.groups
        ],
        required_approvals=max(requirement.required_approvals, runbook_min),
        required_roles=[r.value for r in requirement.required_roles],
        remind_after_s=policy.timings.remind_after.total_seconds(),
        escalate_after_s=policy.timings.escalate_after.total_seconds(),
        expire_after_s=policy.timings.expire_after.total_seconds(),
        on_expiry=EXPIRY_POLICY.get(gate, "deny"),
        declared_by=declared_by,
        declarers=list(declarers or []),
        opened_at=opened_at,
        explain=explain,
        reason=reason,
        quiet_period_s=quiet_period_s,
    )


_PATHS = {
    "regional-outage",
    "database-corruption",
    "failed-release",
    "security-incident",
    "dependency-failure",
    "ha-handled",
}


def with_declarers(policy: GatePolicyView, incident: IncidentSummary | None) -> GatePolicyView:
    """The policy with the incident's declarers as the index has them now: an operator can
    declare into an incident while its gate is open."""
    if incident is None or incident.declarers == policy.declarers:
        return policy
    return policy.model_copy(update={"declarers": list(incident.declarers)})


def refusal(policy: GatePolicyView, principal: Principal) -> str | None:
    """Why this person may not decide this gate, or None when they may."""
    declarers = [policy.declared_by, *policy.declarers]
    if any(is_declarer(principal, declarer) for declarer in declarers):
        return (
            f"{principal.name} declared incident {policy.incident_id} and cannot decide its "
            f"'{policy.gate}' gate (four-eyes)"
        )
    if not set(principal.roles) & set(policy.roles):
        return (
            f"the '{policy.gate}' gate is decided by {' or '.join(policy.roles)}; "
            f"{principal.name} holds {', '.join(principal.roles) or 'no role'}"
        )
    return None


def same_person(a: Principal, b: Principal) -> bool:
    """One person behind two identities: the same subject (object id) or the same name (UPN).

    The approvals endpoint knows a person by the token's object id, the card relay by the
    responder Teams names (its UPN, and the object id when the relay passes it on), so a
    decision by card and one by HTTP from the same person must not count as two people.
    """
    if a.subject and a.subject.lower() == (b.subject or "").lower():
        return True
    return bool(a.name) and a.name.strip().lower() == (b.name or "").strip().lower()


def one_per_person(decisions: list[ApprovalDecision]) -> list[ApprovalDecision]:
    """The first decision of each person, in order (a person decides a gate once)."""
    kept: list[ApprovalDecision] = []
    for decision in decisions:
        if not any(same_person(decision.approver, k.approver) for k in kept):
            kept.append(decision)
    return kept


def evaluate(policy: GatePolicyView, decisions: list[ApprovalDecision]) -> Verdict:
    """Decide the gate from the decisions recorded at it since it opened."""
    valid: list[ApprovalDecision] = []
    refused: list[str] = []
    for decision in decisions:
        if decision.gate.value != policy.gate or decision.decided_at < policy.opened_at:
            continue
        if decision.gate_instance not in (None, policy.instance_id):
            continue  # decided at another opening of this gate
        why = refusal(policy, decision.approver)
        if why:
            refused.append(why)
        else:
            valid.append(decision)
    tally = tally_gate(
        one_per_person(sorted(valid, key=lambda d: d.decided_at)),
        GateRequirement(
            required_approvals=policy.required_approvals, required_roles=policy.required_roles
        ),
        declared_by=policy.declared_by,
    )
    state = "rejected" if tally.rejected else "approved" if tally.approved else "pending"
    return Verdict(
        state=state,
        reason=tally.reason,
        approvers=tally.approvers,
        counted=len(valid),
        refused=refused,
    )


class OpenGate(BaseModel):
    """A gate row: open while its sub-orchestration waits, then closed with its outcome."""

    policy: GatePolicyView
    state: Literal["open", "closed"] = "open"
    outcome: str | None = None
    closed_at: datetime | None = None


class GateRegistry:
    """Which gates of an incident are open, and the policy each was opened with."""

    def __init__(self, table: _Table):
        self.table = table

    def open(self, policy: GatePolicyView) -> None:
        row = OpenGate(policy=policy)
        entity = {
            "PartitionKey": policy.incident_id,
            "RowKey": f"{policy.gate}.{_digest(policy.instance_id, 16)}",
            "gate": policy.gate,
            "state": "open",
            "body": row.model_dump_json(),
        }
        if not self.table.insert(entity):
            self.table.merge(entity)

    def close(self, policy: GatePolicyView, outcome: str) -> None:
        row = OpenGate(policy=policy, state="closed", outcome=outcome, closed_at=datetime.now(UTC))
        self.table.merge(
            {
                "PartitionKey": policy.incident_id,
                "RowKey": f"{policy.gate}.{_digest(policy.instance_id, 16)}",
                "gate": policy.gate,
                "state": "closed",
                "body": row.model_dump_json(),
            }
        )

    def all(self, incident_id: str) -> list[OpenGate]:
        rows = self.table.partition(incident_id)
        gates = [OpenGate.model_validate_json(r["body"]) for r in rows]
        return sorted(gates, key=lambda g: g.policy.opened_at)

    def current(self, incident_id: str, gate: str) -> OpenGate | None:
        """The open gate of that name, if one is open."""
        for row in reversed(self.all(incident_id)):
            if row.policy.gate == gate and row.state == "open":
                return row
        return None
