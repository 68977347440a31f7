"""Messages to each audience at each phase: executives, finance controllers, IT operations,
auditors and business units each read what they need, in their own words.

Executives get a few plain sentences; controllers get the exact figures (RPO, transactions
lost, validation results); operations get steps and links; auditors get the record and where
the trail is; business units get what it means for their work. Text that came from a signal is
passed through as data, never as markup.
"""

from __future__ import annotations

from typing import Any

from shared.models import Phase

AUDIENCES = ("executives", "finance-controllers", "it-operations", "auditors", "business-units")

_HEADLINE = {
    Phase.DECLARED: "A disaster-recovery incident has been declared",
    Phase.ASSESSING: "The incident is being assessed",
    Phase.HA_HANDLED: "The incident is handled without a disaster declaration",
    Phase.AWAITING_APPROVAL: "Recovery is waiting for approval",
    Phase.RECOVERING: "Recovery is under way",
    Phase.VALIDATING: "The recovered systems are being validated",
    Phase.AWAITING_SIGNOFF: "Recovery is waiting for finance sign-off",
    Phase.RECOVERED: "Recovery is complete and signed off",
    Phase.STOOD_DOWN: "The incident has been stood down",
    Phase.NEEDS_OPERATOR: "Recovery has stopped and needs an operator",
    Phase.ABORTED: "Recovery has been aborted",
}

_BUSINESS = {
    Phase.DECLARED: "Odoo may be unavailable or read-only. Do not re-enter work until told.",
    Phase.AWAITING_APPROVAL: "Odoo may be unavailable. Keep a note of work you could not enter.",
    Phase.RECOVERING: "Odoo is being moved or restored. Please do not post entries yet.",
    Phase.VALIDATING: "Odoo is back but being checked. Please do not post entries yet.",
    Phase.AWAITING_SIGNOFF: "Finance is checking the books. Scheduled invoicing stays paused.",
    Phase.RECOVERED: "Odoo is available. Re-enter anything you noted since the incident began.",
    Phase.STOOD_DOWN: "No action is needed: the problem cleared by itself.",
    Phase.NEEDS_OPERATOR: "Odoo stays unavailable while IT resolves a problem in the recovery.",
    Phase.ABORTED: "The recovery was stopped. IT will tell you how work continues.",
}


def _figures(detail: dict[str, Any]) -> list[str]:
    out = []
    if detail.get("rpo_s") is not None:
        out.append(f"Data-loss window (RPO): {detail['rpo_s']:.1f} s")
    if detail.get("transactions_lost") is not None:
        out.append(f"Transactions lost: {detail['transactions_lost']}")
    if detail.get("rto_s") is not None:
        out.append(f"Time to recovery (RTO): {detail['rto_s']:.0f} s")
    summary = (detail.get("validation") or {}).get("summary")
    if summary:
        out.append(
            "Validation: {pass} pass, {warn} warn, {fail} fail, {skip} skip".format(
                **{k: summary.get(k, 0) for k in ("pass", "warn", "fail", "skip")}
            )
        )
    return out


def render(audience: str, incident_id: str, phase: Phase, reason: str, detail: dict) -> dict:
    """One message for one audience: a title and plain-text lines."""
    headline = _HEADLINE.get(phase, f"Incident phase: {phase.value}")
    path = detail.get("path")
    lines: list[str]
    if audience == "executives":
        lines = [f"{headline} (incident {incident_id})."]
        if path:
            lines.append(f"Recovery path: {path}.")
        if phase in (Phase.RECOVERED, Phase.STOOD_DOWN, Phase.ABORTED):
            lines += _figures({k: detail.get(k) for k in ("rto_s", "rpo_s")})
    elif audience == "finance-controllers":
        lines = [f"{headline}.", f"Reason: {reason}"] + _figures(detail)
        if phase == Phase.AWAITING_SIGNOFF:
            lines.append("Your sign-off is needed before scheduled jobs are released.")
    elif audience == "it-operations":
        lines = [f"{headline}.", f"Reason: {reason}"]
        for key in ("running", "finished", "failed", "open_gates"):
            if detail.get(key):
                lines.append(f"{key.replace('_', ' ')}: {detail[key]}")
        if detail.get("status_url"):
            lines.append(f"Status: {detail['status_url']}")
    elif audience == "auditors":
        lines = [f"{headline}.", f"Recorded reason: {reason}"]
        if detail.get("audit_head"):
            lines.append(f"Audit trail head hash: {detail['audit_head']}")
    else:
        lines = [headline + ".", _BUSINESS.get(phase, "")]
    return {
        "type": "incident.phase",
        "audience": audience,
        "incident_id": incident_id,
        "phase": phase.value,
        "title": headline,
        "lines": [line for line in lines if line],
    }


def phase_messages(
    incident_id: str, phase: Phase, reason: str, detail: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """Every audience's message for a phase, as (channel, body) pairs for the notifier."""
    return [
        ("webhook", render(audience, incident_id, Phase(phase), reason, detail))
        for audience in AUDIENCES
    ]
