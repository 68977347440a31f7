"""Signal intake: Azure Monitor alerts over HTTP and Event Grid events, folded into incidents.

Each signal is parsed into a ``Signal``, de-duplicated (Azure Monitor retries a webhook up to
five times, Event Grid delivers at least once), folded into the incident of its correlation
key, and recorded with its disposition. Only the request that wins the conditional insert into
the incident index starts the orchestration. Bad input is answered 4xx and starts nothing.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import AzureError

from shared import runtime
from shared.audit import AuditError
from shared.config import ConfigError
from shared.folding import INLINE_RAW_BYTES, DispositionBatch, Intake, doorbell_event, fold
from shared.incident import IncidentStart
from shared.models import MonitorCondition, ScenarioFamily, Signal
from shared.signals import MAX_ALERT_BYTES, SignalError, parse_alert, parse_event
from shared.stores import StoreError
from triggers._http import answer, error, in_thread, storage_failed

log = logging.getLogger(__name__)

bp = df.Blueprint()

INTAKE_TRAIL = "intake"
# A signal that finds its incident without an orchestration starts it only after this long:
# until then the request that won the index insert is presumably still starting it.
# Limitation: an incident whose first request died waits for a signal after this to start.
RESCUE_AFTER = timedelta(seconds=30)


def record_dispositions(folded: list[tuple[Signal, Intake, bytes | None]]) -> None:
    """Keep the raw payloads and append the dispositions of signals answered together.

    Each disposition goes to its incident's trail, or the day's intake trail when it joined
    none; the entries of one trail are one audit write.

    A small payload of a folded signal is already in the signal's row (``intake.raw_kept``);
    a small payload of a signal that joined no incident goes into its disposition entry (the
    exact bytes as text when they are UTF-8, else base64); larger ones are saved as blobs
    under their ``RawRef``.
    """
    stores = runtime.stores()
    day = f"{INTAKE_TRAIL}.{datetime.now(UTC):%Y%m%d}"
    by_trail: dict[str, list[dict]] = {}
    for signal, intake, raw in folded:
        detail = {
            "dedupe_key": signal.dedupe_key,
            "kind": signal.kind.value,
            "condition": signal.condition.value,
            "resource_id": signal.resource_id,
            "severity": signal.severity,
            "duplicate": intake.duplicate,
            "raw_sha256": signal.raw.sha256 if signal.raw else None,
        }
        needed = raw is not None and signal.raw is not None
        needed = needed and not intake.duplicate and not intake.raw_kept
        if needed and intake.incident_id is None and len(raw) <= INLINE_RAW_BYTES:
            try:
                detail["raw"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                detail["raw_base64"] = base64.b64encode(raw).decode("ascii")
        elif needed:
            try:
                stores.stores.raw.save(signal.raw, raw)
            except Exception as exc:  # the payload copy is evidence, not a reason to drop it
                log.warning("raw payload of %s not kept: %s", signal.dedupe_key, exc)
        by_trail.setdefault(intake.incident_id or day, []).append(
            {
                "action": f"signal.{intake.disposition}",
                "actor": signal.rule_name or signal.source.value,
                "reason": intake.reason,
                "detail": detail,
            }
        )
    for trail, entries in by_trail.items():
        _DISPOSITIONS.record_many(trail, entries)


def _audit_append(*args: Any, **kwargs: Any) -> object:
    return runtime.audit().append(*args, **kwargs)


# Concurrent signals of one incident share audit records instead of racing for its trail.
_DISPOSITIONS = DispositionBatch(_audit_append)


def fold_and_record(
    signal: Signal,
    raw: bytes | None,
    declared_by: str = "system",
    family: ScenarioFamily | None = None,
) -> Intake:
    """Fold the signal with the app's configuration and stores, recording its disposition."""
    return fold(
        signal,
        config=runtime.config(),
        stores=runtime.stores(),
        declared_by=declared_by,
        family=family,
        raw=raw,
        record=record_dispositions,
    )


def incident_start(signal: Signal, intake: Intake, **extra: Any) -> dict:
    return IncidentStart(
        incident_id=intake.incident_id,
        correlation_key=intake.correlation_key,
        environment=signal.environment,
        family=intake.family.value,
        declared_by=extra.pop("declared_by", "system"),
        declared_at=datetime.now(UTC),
        first_signal=signal,
        **extra,
    ).model_dump(mode="json")


async def _start(client: df.DurableOrchestrationClient, instance_id: str, start: dict) -> bool:
    """Start the incident orchestration; False when an instance with that id already runs.

    Two requests can both try (the winner and a rescuer), and the host refuses the second
    start of a running id: that refusal means the incident runs, which is what both wanted.
    """
    try:
        await client.start_new("incident", instance_id, start)
    except Exception as exc:
        if "already exists" not in str(exc):
            raise
        log.info("incident '%s' already runs: %s", instance_id, exc)
        return False
    return True


async def start_or_ring(
    client: df.DurableOrchestrationClient, signal: Signal, intake: Intake, **extra: Any
) -> None:
    """Start the incident's orchestration (winner) or ring its doorbell (news for it)."""
    if intake.incident_id is None:
        return
    if intake.started:
        if await _start(client, intake.incident_id, incident_start(signal, intake, **extra)):
            log.info("incident '%s' orchestration started", intake.incident_id)
        return
    if not (intake.notify or intake.duplicate):
        return
    status = await client.get_status(intake.incident_id)
    if not status or not getattr(status, "runtime_status", None):
        # The request that won the insert died before starting it: start it now (a start with
        # a running id is refused by the host, so two rescuers cannot start it twice).
        # Only once the winner has had time to start it: a storm's later signals usually
        # arrive while the winner is still on its way to start_new.
        summary = await in_thread(runtime.stores().stores.incidents.get, intake.incident_id)
        if summary is None or summary.ended_at is not None:
            return
        # The winner's own signal delivered again (its first delivery failed after the index
        # insert and was answered 503) starts it at once: that delivery is the one that won.
        own = summary.first_signal == signal.dedupe_key
        if not own and datetime.now(UTC) - summary.started_at < RESCUE_AFTER:
            return
        recovered = intake.model_copy(
            update={"correlation_key": summary.correlation_key, "family": summary.family}
        )
        start = incident_start(signal, recovered, **extra)
        if await _start(client, intake.incident_id, start):
            log.warning("incident '%s' had no orchestration: started it", intake.incident_id)
        return
    if intake.notify:
        if signal.condition == MonitorCondition.RESOLVED:
            await ring_recovery_gate(client, intake.incident_id)
        number = await in_thread(runtime.stores().doorbells.ring, intake.incident_id)
        await client.raise_event(intake.incident_id, doorbell_event(number), None)


async def ring_recovery_gate(client: df.DurableOrchestrationClient, incident_id: str) -> None:
    """Wake the incident's open recovery gate for a resolved signal: it decides the stand-down.

    The gate reads every signal when it wakes, so while an earlier ring is pending this one
    is not rung: a storm of resolved signals raises an event per look of the gate, not per
    signal. Whatever fails here only delays the stand-down to the gate's own poll.
    """
    stores = runtime.stores()
    try:
        gate = await in_thread(stores.gates.current, incident_id, "recovery")
        if gate is None:
            return
        instance_id = gate.policy.instance_id
        number = await in_thread(stores.doorbells.ring_unless_pending, instance_id)
        if number is not None:
            await client.raise_event(instance_id, doorbell_event(number), None)
    except Exception as exc:  # the signal is recorded; the gate re-reads it within a minute
        log.warning("recovery gate of '%s' not rung: %s", incident_id, exc)


def intake_answer(intake: Intake, client: df.DurableOrchestrationClient | None) -> dict:
    uri = None
    if intake.incident_id and client is not None:
        uri = client.create_http_management_payload(intake.incident_id)["statusQueryGetUri"]
    return {
        "incidentId": intake.incident_id,
        "disposition": intake.disposition,
        "reason": intake.reason,
        "statusQueryGetUri": uri,
        "duplicate": intake.duplicate,
    }


@bp.route(route="alerts", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def alerts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Azure Monitor action group webhook (common alert schema; older schemas mapped)."""
    body = req.get_body() or b""
    if len(body) > MAX_ALERT_BYTES:
        return error(413, f"alert is {len(body)} bytes; the limit is {MAX_ALERT_BYTES}")
    try:
        config = runtime.config()
    except ConfigError as exc:
        log.error("configuration cannot be loaded: %s", exc)
        return error(503, f"the configuration cannot be loaded: {exc}")
    try:
        signal = parse_alert(body, config=config)
    except SignalError as exc:
        return error(400, str(exc))
    except Exception as exc:  # parsing is pure: what fails once fails on every resend
        log.exception("alert payload could not be parsed")
        return error(400, f"payload could not be read as an alert ({type(exc).__name__})")
    try:
        intake = await in_thread(fold_and_record, signal, body)
    except (StoreError, AuditError, AzureError) as exc:
        return storage_unavailable(signal, exc)
    await start_or_ring(client, signal, intake)
    log.info("alert %s: %s (%s)", signal.dedupe_key, intake.disposition, intake.incident_id)
    return answer(202, intake_answer(intake, client))


def storage_unavailable(signal: Signal, exc: Exception) -> func.HttpResponse:
    """503 with Retry-After: Azure Monitor retries a webhook on 503 (not on a plain 500).

    Whatever was written before storage failed is safe to repeat: the retry is a repeated
    delivery, recognised by its dedupe key, and folded if the first never got that far.
    """
    log.error("signal %s not recorded, storage failed: %s", signal.dedupe_key, exc)
    return storage_failed("the signal", exc)


def _event_document(event: Any) -> Any:
    """The event as the JSON document Event Grid delivered (either schema), with its data.

    Azure's Python worker, and devhost as it does, hands the function a ``func.EventGridEvent``
    for the Event Grid schema and a ``func.CloudEvent`` for CloudEvents 1.0; both keep the
    event's data behind ``get_json()``. The Azure SDK's own types (``azure.core.messaging``'s
    ``CloudEvent``, ``azure.eventgrid.EventGridEvent``) keep it in ``data``.

    Limitation: the worker hands over the event's time parsed; the copy spells it back in ISO
    8601, which may write the time zone differently from the delivery (``+00:00`` for ``Z``).
    """
    if isinstance(event, dict):
        return event
    if isinstance(event, func.CloudEvent) or hasattr(event, "specversion"):
        extensions = getattr(event, "extension_attrs", None) or getattr(event, "extensions", None)
        optional = {
            "subject": getattr(event, "subject", None),
            "time": _iso(getattr(event, "time", None)),
            "datacontenttype": getattr(event, "datacontenttype", None),
            "dataschema": getattr(event, "dataschema", None),
            **(extensions or {}),
            "data": _event_data(event),
        }
        return {
            "id": getattr(event, "id", None),
            "source": getattr(event, "source", None),
            "type": getattr(event, "type", None),
            "specversion": getattr(event, "specversion", None) or "1.0",
            **{name: value for name, value in optional.items() if value is not None},
        }
    if isinstance(event, func.EventGridEvent):
        return {
            "id": event.id,
            "topic": event.topic,
            "subject": event.subject,
            "eventType": event.event_type,
            "eventTime": _iso(event.event_time),
            "dataVersion": event.data_version,
            "data": _event_data(event),
        }
    to_dict = getattr(event, "_to_dict", None) or getattr(event, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return event


def _event_data(event: Any) -> Any:
    """The event's data: ``get_json()`` on the Functions types, ``data`` on the SDK's."""
    get_json = getattr(event, "get_json", None)
    if callable(get_json):
        try:
            return get_json()
        except (ValueError, TypeError):
            return None
    return getattr(event, "data", None)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def eventgrid_signals(event: func.EventGridEvent, client: df.DurableOrchestrationClient):
    """Event Grid subscription (Event Grid schema or CloudEvents 1.0); never raises on garbage."""
    try:
        document = _event_document(event)
        raw = json.dumps(document, default=str, sort_keys=True).encode()
        signal = parse_event(document, config=runtime.config())
    except Exception as exc:  # parsing is pure: what fails once fails on every redelivery
        # Event Grid would retry an exception for a day; an unusable event is recorded instead.
        log.warning("event not usable, recorded and dropped: %s", exc)
        await in_thread(_record_unusable, event, str(exc))
        return
    intake = await in_thread(fold_and_record, signal, raw)
    await start_or_ring(client, signal, intake)
    log.info("event %s: %s (%s)", signal.dedupe_key, intake.disposition, intake.incident_id)


def _record_unusable(event: Any, why: str) -> None:
    event_id = getattr(event, "id", None)
    _DISPOSITIONS.record(
        f"{INTAKE_TRAIL}.{datetime.now(UTC):%Y%m%d}",
        "signal.unusable",
        actor="event-grid",
        reason=_writable(why),
        detail={"event_id": None if event_id is None else _writable(str(event_id))},
    )


def _writable(text: str) -> str:
    """Text the audit trail can write: a lone surrogate from a JSON escape is spelled out."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
