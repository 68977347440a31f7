"""Adaptive Cards (1.5) that ask for an approval in Teams, and the webhook message around them.

The card shows what an approver must weigh: the runbook path and why, the data a recovery
would lose (replica lag against the RPO target), the plan with its prestaged steps, and the
estimated RTO. Text that came from a signal (alert rule names, descriptions, reasons quoting
them) is untrusted: it goes into ``TextRun`` elements, which hosts never read as markdown,
after ``plain_text`` has removed control characters and defanged URLs. Only text this module
writes itself goes into markdown-capable ``TextBlock`` elements.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from shared.models import Decision, Gate, RunbookPath

log = logging.getLogger(__name__)

CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
ACTION_KIND = "dr.approval"
MAX_TEXT = 300
MAX_COMMENT = 500

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,20}):(//)")


def plain_text(value: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text made safe to show: no control or direction characters, no live URLs
    (``https://x`` becomes ``https[:]//x``), single spaces, at most ``limit`` characters."""
    text = "" if value is None else str(value)
    text = _CONTROL.sub("", text)
    text = _SCHEME.sub(r"\1[:]\2", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PlanStepSummary(BaseModel):
    name: str
    prestage: bool = False
    estimate: timedelta | None = None
    gate: Gate | None = None


class RpoExposure(BaseModel):
    """The data a recovery now would lose, against the tightest affected target."""

    lag_seconds: float | None = None
    lag_bytes: int | None = None
    target: timedelta
    workload: str

    @property
    def exceeds_target(self) -> bool:
        return self.lag_seconds is None or self.lag_seconds > self.target.total_seconds()


class ApprovalCardRequest(BaseModel):
    incident_id: str
    environment: str
    gate: Gate
    path: RunbookPath
    rule_name: str | None = Field(default=None, description="untrusted: the alert rule's name")
    reasons: list[str] = Field(default_factory=list, description="untrusted: may quote signals")
    rpo: RpoExposure | None = None
    plan: list[PlanStepSummary] = Field(default_factory=list)
    estimated_rto: timedelta | None = None
    rto_target: timedelta | None = None
    required_approvals: int = 1
    expires_at: datetime | None = None
    approve_token: str | None = Field(default=None, description="None: no card actions")
    reject_token: str | None = None
    notice: str | None = Field(default=None, description="e.g. 'Reminder' or 'Escalated to ...'")
    asked: str | None = Field(default=None, description="the approver group asked")
    action: Literal["submit", "execute"] = "submit"
    teams_full_width: bool = True


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "unknown"
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _bytes(value: int | None) -> str:
    if value is None:
        return "unknown"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value} B"


def _runs(*parts: tuple[str, dict] | str) -> dict:
    """A RichTextBlock of TextRuns; strings are trusted labels, tuples (text, style) too."""
    inlines = []
    for part in parts:
        text, style = (part, {}) if isinstance(part, str) else part
        if text:
            inlines.append({"type": "TextRun", "text": text, **style})
    return {"type": "RichTextBlock", "inlines": inlines, "spacing": "Small"}


def _heading(text: str) -> dict:
    return {
        "type": "TextBlock",
        "text": text,
        "weight": "Bolder",
        "wrap": True,
        "spacing": "Medium",
    }


def _rpo_block(rpo: RpoExposure) -> dict:
    lag = "unknown" if rpo.lag_seconds is None else _duration(timedelta(seconds=rpo.lag_seconds))
    verdict = (
        "above the target: approving accepts this data loss"
        if rpo.exceeds_target
        else "within the target"
    )
    return _runs(
        "Replica lag ",
        (f"{lag} ({_bytes(rpo.lag_bytes)})", {"weight": "Bolder"}),
        f" against an RPO target of {_duration(rpo.target)} ({plain_text(rpo.workload, 40)}): ",
        (verdict, {"color": "Attention" if rpo.exceeds_target else "Good"}),
    )


def _plan_blocks(plan: list[PlanStepSummary]) -> list[dict]:
    blocks = [_heading("Plan")]
    for number, step in enumerate(plan, start=1):
        notes = []
        if step.prestage:
            notes.append("prestaged: already started, reversible")
        if step.gate is not None:
            notes.append(f"waits for the {step.gate.value} gate")
        if step.estimate is not None:
            notes.append(f"about {_duration(step.estimate)}")
        blocks.append(
            _runs(
                f"{number}. ",
                (plain_text(step.name, 120), {}),
                (f" ({'; '.join(notes)})" if notes else "", {"isSubtle": True}),
            )
        )
    return blocks


def _action(request: ApprovalCardRequest, decision: Decision) -> dict:
    token = request.approve_token if decision == Decision.APPROVE else request.reject_token
    data = {
        "kind": ACTION_KIND,
        "incidentId": request.incident_id,
        "gate": request.gate.value,
        "decision": decision.value,
        "actionToken": token,
    }
    action: dict[str, Any] = {
        "type": "Action.Execute" if request.action == "execute" else "Action.Submit",
        "title": "Approve" if decision == Decision.APPROVE else "Reject",
        "style": "positive" if decision == Decision.APPROVE else "destructive",
        "data": data,
        "associatedInputs": "auto",
    }
    if request.action == "execute":
        action["verb"] = f"{ACTION_KIND}.{decision.value}"
    return action


def approval_card(request: ApprovalCardRequest) -> dict:
    """The Adaptive Card asking for a decision at one gate of one incident."""
    title = f"Approval needed: {request.gate.value} gate, {request.path.value}"
    if request.notice:
        title = f"{request.notice}: {title[0].lower()}{title[1:]}"
    body: list[dict] = [
        {"type": "TextBlock", "text": title, "size": "Large", "weight": "Bolder", "wrap": True},
        _runs(
            "Incident ",
            (plain_text(request.incident_id, 80), {"fontType": "Monospace"}),
            f" in {plain_text(request.environment, 40)}",
            (
                f", raised by the alert rule {plain_text(request.rule_name, 120)}"
                if request.rule_name
                else "",
                {},
            ),
        ),
    ]
    if request.asked:
        body.append(_runs("Asked: ", (plain_text(request.asked, 120), {"weight": "Bolder"})))
    if request.reasons:
        body.append(_heading("Why this path"))
        body.extend(_runs(f"• {plain_text(r)}") for r in request.reasons[:8])
    if request.rpo is not None:
        body.append(_heading("Data at risk (RPO)"))
        body.append(_rpo_block(request.rpo))
    if request.plan:
        body.extend(_plan_blocks(request.plan))
    body.append(
        {
            "type": "FactSet",
            "facts": [
                {"title": "Estimated RTO", "value": _duration(request.estimated_rto)},
                {"title": "RTO target", "value": _duration(request.rto_target)},
                {"title": "Approvals needed", "value": str(request.required_approvals)},
                {
                    "title": "Expires",
                    "value": request.expires_at.strftime("%Y-%m-%d %H:%M UTC")
                    if request.expires_at
                    else "no expiry given",
                },
            ],
        }
    )
    body.append(
        {
            "type": "Input.Text",
            "id": "comment",
            "label": "Comment (recorded in the audit trail)",
            "isMultiline": True,
            "maxLength": MAX_COMMENT,
            "placeholder": "Why you approve or reject",
        }
    )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "fallbackText": f"{title} (incident {plain_text(request.incident_id, 80)})",
        "body": body,
    }
    if request.approve_token and request.reject_token:
        card["actions"] = [_action(request, Decision.APPROVE), _action(request, Decision.REJECT)]
    else:
        body.append(
            {
                "type": "TextBlock",
                "text": "Card actions are not configured: decide through the approvals endpoint "
                f"of incident {plain_text(request.incident_id, 80)}.",
                "wrap": True,
                "isSubtle": True,
            }
        )
    if request.teams_full_width:
        card["msteams"] = {"width": "Full"}
    return card


def outcome_card(incident_id: str, gate: Gate, sentence: str) -> dict:
    """The card that replaces a decided request (the answer to ``Action.Execute``)."""
    return {
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": [
            {"type": "TextBlock", "text": f"{gate.value} gate", "weight": "Bolder", "wrap": True},
            _runs(plain_text(incident_id, 80), ": ", plain_text(sentence)),
        ],
    }


def teams_message(card: dict) -> dict:
    """The message a Teams incoming webhook (or the Logic App) posts: one card attachment."""
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


class _GateView(Protocol):
    incident_id: str
    gate: str
    path: str
    required_approvals: int
    opened_at: datetime
    expire_after_s: float
    reason: str
    explain: str


class _GroupView(Protocol):
    name: str
    role: str


_NOTICES = {"request": None, "reminder": "Reminder", "escalation": "Escalated"}


def approval_card_message(
    policy: _GateView,
    *,
    kind: str,
    group: _GroupView,
    environment: str | None = None,
    rpo: RpoExposure | None = None,
    plan: list[PlanStepSummary] | None = None,
    estimated_rto: timedelta | None = None,
    rto_target: timedelta | None = None,
    signer: Any = None,
    now: datetime | None = None,
) -> dict:
    """The Teams message asking ``group`` to decide an open gate (kind: request, reminder,
    escalation), with action tokens that expire with the gate.

    ``signer`` defaults to ``ActionTokenSigner.from_settings()``; without an action token key
    the card is sent without actions and says where to decide instead.
    """
    from shared.auth import ActionTokenSigner, AuthConfigError

    if kind not in _NOTICES:
        raise ValueError(f"kind must be one of {', '.join(_NOTICES)}, not {kind!r}")
    now = now or datetime.now(UTC)
    expires_at = policy.opened_at + timedelta(seconds=policy.expire_after_s)
    ttl = max(expires_at - now, timedelta(minutes=1))
    approve = reject = None
    try:
        signer = signer or ActionTokenSigner.from_settings()
        approve = signer.issue(
            policy.incident_id, Gate(policy.gate), Decision.APPROVE, ttl=ttl, now=now
        )
        reject = signer.issue(
            policy.incident_id, Gate(policy.gate), Decision.REJECT, ttl=ttl, now=now
        )
    except AuthConfigError as exc:
        log.warning("approval card for '%s' sent without actions: %s", policy.incident_id, exc)
    notice = _NOTICES[kind]
    if kind == "escalation":
        notice = f"Escalated to {group.name}"
    reason = policy.reason or policy.explain
    request = ApprovalCardRequest(
        incident_id=policy.incident_id,
        environment=environment or policy.incident_id.split(".", 1)[0],
        gate=Gate(policy.gate),
        path=RunbookPath(policy.path),
        reasons=[reason] if reason else [],
        rpo=rpo,
        plan=plan or [],
        estimated_rto=estimated_rto,
        rto_target=rto_target,
        required_approvals=policy.required_approvals,
        expires_at=expires_at,
        approve_token=approve,
        reject_token=reject,
        notice=notice,
        asked=f"{group.name} ({group.role})",
    )
    return teams_message(approval_card(request))
