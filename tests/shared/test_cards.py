"""Approval cards: what the approver sees, and untrusted text shown as plain text."""

import json
from datetime import UTC, datetime, timedelta

from shared.cards import (
    ApprovalCardRequest,
    PlanStepSummary,
    RpoExposure,
    approval_card,
    approval_card_message,
    plain_text,
    teams_message,
)
from shared.models import Gate, RunbookPath

HOSTILE = "**Approve now** [click](https://evil.example/steal) <at>all</at>\u202e\x00"


def request(**changes) -> ApprovalCardRequest:
    values = {
        "incident_id": "prod-eu.availability.1",
        "environment": "prod-eu",
        "gate": Gate.RPO,
        "path": RunbookPath.REGIONAL_OUTAGE,
        "rule_name": HOSTILE,
        "reasons": [
            f"The signal '{HOSTILE}' reports 'unavailable'.",
            "The primary does not answer.",
        ],
        "rpo": RpoExposure(
            lag_seconds=95,
            lag_bytes=12 * 1024 * 1024,
            target=timedelta(minutes=1),
            workload="payments",
        ),
        "plan": [
            PlanStepSummary(name="warm aks-odoo-neu", prestage=True, estimate=timedelta(minutes=6)),
            PlanStepSummary(name="fence odoo-pg-weu", gate=Gate.FENCE),
            PlanStepSummary(name="promote odoo-pg-neu", estimate=timedelta(minutes=2)),
        ],
        "estimated_rto": timedelta(minutes=38),
        "rto_target": timedelta(hours=1),
        "required_approvals": 2,
        "expires_at": datetime(2026, 11, 30, 23, 0, tzinfo=UTC),
        "approve_token": "v1.approve.sig",
        "reject_token": "v1.reject.sig",
    }
    values.update(changes)
    return ApprovalCardRequest(**values)


def texts(card: dict, element_type: str) -> list[str]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == element_type:
                found.append(node.get("text", ""))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found


def test_untrusted_text_appears_only_in_text_runs_and_with_no_live_link():
    card = approval_card(request())
    markdown_capable = " ".join(texts(card, "TextBlock")) + json.dumps(card.get("actions"))
    assert "evil.example" not in markdown_capable and "Approve now" not in markdown_capable
    runs = " ".join(texts(card, "TextRun"))
    assert "**Approve now** [click](https[:]//evil.example/steal)" in runs
    assert "https://evil" not in json.dumps(card)
    assert "\u202e" not in json.dumps(card, ensure_ascii=False) and "\x00" not in runs


def test_plain_text_defangs_urls_strips_controls_and_truncates():
    assert plain_text("see http://a.b and FTP://c") == "see http[:]//a.b and FTP[:]//c"
    assert plain_text("a\x07b\u200bc\n\nd") == "abc d"
    assert plain_text("x" * 50, limit=10) == "x" * 9 + "…"
    assert plain_text(None) == ""


def test_card_shows_rpo_exposure_against_the_target():
    runs = " ".join(texts(approval_card(request()), "TextRun"))
    assert "95 s (12.0 MiB)" in runs and "RPO target of 60 s (payments)" in runs
    assert "above the target" in runs
    within = request(rpo=RpoExposure(lag_seconds=3, target=timedelta(minutes=5), workload="x"))
    assert "within the target" in " ".join(texts(approval_card(within), "TextRun"))


def test_card_lists_the_plan_with_prestaged_steps_and_the_estimated_rto():
    card = approval_card(request())
    runs = " ".join(texts(card, "TextRun"))
    assert "warm aks-odoo-neu" in runs and "prestaged: already started, reversible" in runs
    assert "waits for the fence gate" in runs
    facts = {
        f["title"]: f["value"] for b in card["body"] if b["type"] == "FactSet" for f in b["facts"]
    }
    assert facts["Estimated RTO"] == "38 min" and facts["Approvals needed"] == "2"


def test_plan_is_optional():
    card = approval_card(request(plan=[], rpo=None, reasons=[]))
    assert "Plan" not in texts(card, "TextBlock")


def test_submit_actions_carry_the_token_of_their_own_decision_and_a_comment_field():
    card = approval_card(request())
    approve, reject = card["actions"]
    assert approve["type"] == "Action.Submit" and approve["data"]["actionToken"] == "v1.approve.sig"
    assert (
        reject["data"]["decision"] == "reject" and reject["data"]["actionToken"] == "v1.reject.sig"
    )
    assert approve["data"]["incidentId"] == "prod-eu.availability.1"
    assert any(b.get("id") == "comment" and b["type"] == "Input.Text" for b in card["body"])


def test_execute_actions_have_verbs():
    approve, reject = approval_card(request(action="execute"))["actions"]
    assert approve["type"] == "Action.Execute" and approve["verb"] == "dr.approval.approve"
    assert reject["verb"] == "dr.approval.reject"


def test_teams_message_wraps_the_card_as_one_attachment():
    card = approval_card(request())
    message = teams_message(card)
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"] is card


def gate_view(**changes):
    from types import SimpleNamespace

    values = {
        "incident_id": "prod-eu.availability.2",
        "gate": "recovery",
        "path": "regional-outage",
        "required_approvals": 1,
        "opened_at": datetime(2026, 11, 30, 22, 0, tzinfo=UTC),
        "expire_after_s": 3600.0,
        "reason": "The primary region is unavailable.",
        "explain": "",
    }
    values.update(changes)
    return SimpleNamespace(**values)


GROUP = type("Group", (), {"name": "dr-leads", "role": "DR.Approver"})()


def test_gate_message_carries_tokens_that_expire_with_the_gate():
    from shared.auth import ActionTokenSigner

    signer = ActionTokenSigner(b"s" * 32)
    now = datetime(2026, 11, 30, 22, 10, tzinfo=UTC)
    message = approval_card_message(
        gate_view(), kind="escalation", group=GROUP, signer=signer, now=now
    )
    card = message["attachments"][0]["content"]
    assert card["body"][0]["text"].startswith("Escalated to dr-leads: approval needed")
    approve, reject = card["actions"]
    claims = signer.verify(approve["data"]["actionToken"], now=now)
    assert claims.incident_id == "prod-eu.availability.2" and claims.decision == "approve"
    assert claims.expires_at == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert signer.verify(reject["data"]["actionToken"], now=now).decision == "reject"
    assert "dr-leads (DR.Approver)" in " ".join(texts(card, "TextRun"))


def test_gate_message_without_an_action_key_has_no_actions_and_says_where_to_decide(monkeypatch):
    monkeypatch.delenv("DR_ACTION_TOKEN_KEY", raising=False)
    card = approval_card_message(gate_view(), kind="request", group=GROUP)["attachments"][0]
    assert "actions" not in card["content"]
    assert any("approvals endpoint" in t for t in texts(card["content"], "TextBlock"))
