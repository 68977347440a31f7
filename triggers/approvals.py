"""Approvals over HTTP: an approver's decision at an open gate, and the Teams card relay.

Order of checks, so that nothing leaks and nothing is half-done: the bearer token first (401
before any lookup), then the body (400), then the incident (404), the open gate (409), the
person's right to decide it (403, audited). The decision is recorded in the store before the
gate's doorbell rings, so a decision that arrives before the gate waits is applied once.

A card's action token is spent for its responder only after every one of these checks passed
and just before the decision is recorded: a press that is refused, or that repeats a decision
the responder made already, leaves the token to the rest of the approver group.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import AzureError
from pydantic import BaseModel, BeforeValidator, Field

from shared import runtime
from shared.audit import AuditError
from shared.auth import (
    ActionClaims,
    ActionTokenSigner,
    AuthConfigError,
    Unauthenticated,
)
from shared.folding import doorbell_event
from shared.gates import refusal, same_person, with_declarers
from shared.models import RELAY_ROLE, ApprovalDecision, Decision, Gate, Principal
from shared.stores import ActionTokenUses, StoreError
from triggers._http import (
    Refusal,
    answer,
    caller_and_body,
    error,
    in_thread,
    storage_failed,
)

log = logging.getLogger(__name__)

bp = df.Blueprint()


def _no_comment(value: Any) -> Any:
    """A null comment is no comment (a client or a card answer without one sends null)."""
    return "" if value is None else value


Comment = Annotated[str, Field(max_length=2000), BeforeValidator(_no_comment)]


class DecisionBody(BaseModel):
    gate: Gate
    decision: Decision
    comment: Comment = ""


class CardBody(BaseModel):
    """What the Logic App relays from a Teams card: the action token and who pressed it.

    Any text is taken as the action token: the token check answers 401 for one that is
    malformed, as for one that is forged or expired.
    """

    action_token: str = Field(alias="actionToken")
    responder: str = Field(min_length=1, max_length=320, description="the responder's UPN")
    responder_id: str | None = Field(default=None, alias="responderId", max_length=200)
    comment: Comment = ""

    model_config = {"populate_by_name": True}


class CardPress:
    """One responder's press of a card action: the token, spent for that responder once."""

    def __init__(self, uses: ActionTokenUses, claims: ActionClaims, responder: str):
        self.uses = uses
        self.claims = claims
        self.responder = responder

    def spend(self) -> bool:
        """True when this responder had not used the token yet (it is used now)."""
        return self.uses.use(
            self.claims.token_id,
            incident_id=self.claims.incident_id,
            expires_at=self.claims.expires_at,
            responder=self.responder,
        )

    def give_back(self) -> None:
        """Forget the use of a press whose decision was not stored (best effort)."""
        try:
            self.uses.give_back(self.claims.token_id, responder=self.responder)
        except StoreError as exc:
            log.warning(
                "card token use of %s for '%s' kept: %s",
                self.responder,
                self.claims.incident_id,
                exc,
            )


def decide(
    incident_id: str,
    principal: Principal,
    body: DecisionBody,
    via: str,
    press: CardPress | None = None,
) -> dict:
    """Check the gate and the person, record the decision; returns what to answer.

    ``press``, for a card answer, is spent once the decision is about to be recorded (409 when
    its responder used it already) and given back when recording it fails.
    """
    stores = runtime.stores()
    incident = stores.stores.incidents.get(incident_id)
    if incident is None:
        return {"status": 404, "error": f"no incident {incident_id!r}"}
    gate = stores.gates.current(incident_id, body.gate.value)
    if gate is None:
        return {
            "status": 409,
            "error": f"the '{body.gate.value}' gate of {incident_id} is not open",
        }
    why = refusal(with_declarers(gate.policy, incident), principal)
    if why:
        return _refused(incident_id, principal.name, why, body.gate, body.decision, via)
    earlier = next(
        (
            d
            for d in stores.stores.approvals.list(incident_id, body.gate)
            if d.decided_at >= gate.policy.opened_at
            and d.gate_instance in (None, gate.policy.instance_id)
            and same_person(d.approver, principal)
        ),
        None,
    )
    if earlier is not None:
        # The same person decided this gate already (perhaps by the other route): it stands.
        # This read only spares a card's token; the write below decides under concurrency.
        return _repeated(incident_id, body, gate, earlier, stores=stores)
    if press is not None and not press.spend():
        # Another press of this responder is being recorded, or this card decided an earlier
        # opening of the gate: a card answer is not replayed into a decision.
        return {"status": 409, "error": f"action token was already used by {press.responder}"}
    try:
        recorded = stores.stores.approvals.record(
            ApprovalDecision(
                incident_id=incident_id,
                gate=body.gate,
                decision=body.decision,
                approver=principal,
                comment=body.comment,
                decided_at=datetime.now(UTC),
                via=via,
                gate_instance=gate.policy.instance_id,
            )
        )
    except Exception:
        if press is not None:
            press.give_back()  # nothing stands for this press: the responder may press again
        raise
    if not recorded.created:
        # The same person's other request won the write (perhaps by the other route): that
        # decision stands, and this press used nothing.
        if press is not None:
            press.give_back()
        return _repeated(incident_id, body, gate, recorded.decision, stores=stores)
    runtime.audit().append(
        incident_id,
        f"approval.{body.decision.value}",
        actor=principal.name,
        reason=body.comment or f"{body.decision.value} at the '{body.gate.value}' gate",
        detail={"gate": body.gate.value, "subject": principal.subject, "via": via},
    )
    return _decided(incident_id, body, gate, recorded.decision, created=True, stores=stores)


def _repeated(incident_id: str, body, gate, earlier: ApprovalDecision, *, stores) -> dict:
    """A second decision of one person at one opening of a gate: the first one stands.

    The same decision again (a retry, a double click) is answered as the first was; another
    decision is refused with 409, so nobody takes a changed mind for a recorded one.
    """
    if earlier.decision != body.decision:
        return {
            "status": 409,
            "error": (
                f"{earlier.approver.name} already decided '{earlier.decision.value}' at the "
                f"'{body.gate.value}' gate of {incident_id} at {earlier.decided_at.isoformat()}; "
                "a decision stands once recorded"
            ),
        }
    return _decided(incident_id, body, gate, earlier, created=False, stores=stores)


def _decided(incident_id: str, body, gate, decision: ApprovalDecision, *, created: bool, stores):
    """Ring the gate's doorbell and build the answer for a decision that stands."""
    number = stores.doorbells.ring(gate.policy.instance_id)
    return {
        "status": 202,
        "instance_id": gate.policy.instance_id,
        "doorbell": number,
        "body": {
            "incidentId": incident_id,
            "gate": body.gate.value,
            "decision": decision.decision.value,
            "approver": decision.approver.name,
            "recorded": created,
            "repeated": not created,
        },
    }


async def _answer(client: df.DurableOrchestrationClient, result: dict) -> func.HttpResponse:
    if result["status"] != 202:
        return error(result["status"], result["error"])
    try:
        await client.raise_event(result["instance_id"], doorbell_event(result["doorbell"]), None)
    except Exception as exc:  # recorded already; the gate re-reads the store within a minute
        log.warning("doorbell of %s not rung: %s", result["instance_id"], exc)
    return answer(202, result["body"])


@bp.route(route="incidents/{id}/approvals", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def approve(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """An approver decides an open gate (bearer token with the gate's role)."""
    try:
        principal, body = await caller_and_body(req, DecisionBody)
    except Refusal as refused:
        return refused.response
    incident_id = req.route_params.get("id", "")
    try:
        result = await in_thread(decide, incident_id, principal, body, "http")
    except (StoreError, AuditError, AzureError) as exc:
        return _storage_failed(exc)
    return await _answer(client, result)


def _storage_failed(exc: Exception) -> func.HttpResponse:
    """503 with Retry-After: the decision may not be recorded, and sending it again is safe (a
    decision already recorded is answered as repeated)."""
    log.error("decision not recorded, storage failed: %s", exc)
    return storage_failed("the decision", exc)


def _signer() -> ActionTokenSigner:
    return ActionTokenSigner.from_settings()


def relay(body: CardBody) -> dict:
    """Decide as the responder the card answer names, spending the token for them only when
    their decision is recorded (the rest of the group can still use the card)."""
    try:
        signer = _signer()
    except AuthConfigError as exc:
        return {"status": 503, "error": str(exc)}
    try:
        claims = signer.verify(body.action_token)
    except Unauthenticated as exc:
        return {"status": 401, "error": str(exc)}
    stores = runtime.stores()
    gate = stores.gates.current(claims.incident_id, claims.gate.value)
    if gate is None:
        return {"status": 409, "error": f"the '{claims.gate.value}' gate is not open"}
    member = next(
        (g for g in gate.policy.groups if body.responder.lower() in {m.lower() for m in g.members}),
        None,
    )
    if member is None:
        return {
            "status": 403,
            "error": f"{body.responder} is not an approver of the '{claims.gate.value}' gate",
        }
    if not body.responder_id and gate.policy.declared_by not in ("", "system"):
        return _unidentified(claims, body)
    principal = Principal(
        subject=body.responder_id or body.responder, name=body.responder, roles=(member.role,)
    )
    return decide(
        claims.incident_id,
        principal,
        DecisionBody(gate=claims.gate, decision=claims.decision, comment=body.comment),
        "card",
        CardPress(stores.stores.action_tokens, claims, body.responder),
    )


def _unidentified(claims: ActionClaims, body: CardBody) -> dict:
    """Refuse a card answer that names its responder by UPN only, at an incident a person declared.

    The declarer is known by the object id of the token they declared with, so a responder
    without one could be the declarer: four-eyes cannot be checked, and is not assumed.
    """
    why = (
        f"the card answer names no object id for {body.responder}, and incident "
        f"{claims.incident_id} was declared by a person: four-eyes needs the responder's object "
        "id (decide through the approvals endpoint instead)"
    )
    return _refused(claims.incident_id, body.responder, why, claims.gate, claims.decision, "card")


def _refused(
    incident_id: str, actor: str, why: str, gate: Gate, decision: Decision, via: str
) -> dict:
    """Audit a refused decision and answer it 403."""
    runtime.audit().append(
        incident_id,
        "approval.refused",
        actor=actor,
        reason=why,
        detail={"gate": gate.value, "decision": decision.value, "via": via},
    )
    return {"status": 403, "error": why}


@bp.route(route="approvals/card", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def card_relay(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """The Logic App relays a Teams card answer (its own identity holds DR.ApprovalRelay)."""
    try:
        _relay, body = await caller_and_body(req, CardBody, RELAY_ROLE)
    except Refusal as refused:
        return refused.response
    try:
        result = await in_thread(relay, body)
    except (StoreError, AuditError, AzureError) as exc:
        return _storage_failed(exc)
    return await _answer(client, result)
