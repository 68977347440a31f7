"""Signal parsing: Azure Monitor alerts and Event Grid events become one typed ``Signal``.

Published payloads are loose: any field may be null, numbers arrive as strings, enums as
numbers, JSON documents inside strings, key names in two casings (and with stray spaces).
So every field is read defensively and only the envelope decides whether a payload is usable:
an alert needs a ``data.essentials`` object (or one of the older, recognised schemas), an
event needs an event type. Anything else is a ``SignalError`` whose message says what was
wrong; no other exception leaves this module for any JSON input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from shared.config import DrConfig
from shared.models import (
    AlertCondition,
    MonitorCondition,
    RawRef,
    Signal,
    SignalKind,
    SignalSource,
)

log = logging.getLogger(__name__)

# Action groups cap embedded log search results at 256 KB; Event Grid batches can be larger.
MAX_ALERT_BYTES = 1024 * 1024
# A signal is stored as one JSON text in a table row, whose string properties hold at most
# 32K UTF-16 code units; the identifiers are also row keys and index values.
MAX_STORED_SIGNAL_CHARS = 30_000
MAX_IDENTIFIER_CHARS = {"dedupe_key": 1024, "rule_name": 1024, "rule_id": 2048,
                        "resource_id": 2048, "resource_ids": 2048}  # fmt: skip
# Shortening steps for a signal too large for its row, tried in turn: free text cut to so many
# characters, lists and maps to so many entries (the raw payload keeps them all).
SHORTENING_STEPS = ((4000, 100), (500, 20), (100, 5))
MAX_EVENT_BATCH_BYTES = 8 * 1024 * 1024
COMMON_SCHEMA_ID = "azureMonitorCommonAlertSchema"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"


class SignalError(ValueError):
    """The payload cannot be used as a signal; the message names what was wrong."""


# ---------------------------------------------------------------------------------------
# Defensive readers: each returns None for anything that is not what it reads.


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _str(value: Any) -> str | None:
    """A trimmed string; numbers become their text; empty, bools and containers are None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def _num(value: Any) -> float | None:
    """A finite number from a number or a numeric string ("25", " 1e3 ")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _maybe_json(value: Any) -> Any:
    """Decode a JSON document carried inside a string (claims, impactedServices)."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


_US_TIME = re.compile(r"^\d{1,2}/\d{1,2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _time(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (up to 7 fraction digits) or the log alert's
    ``3/22/2019 1:36:31 PM``; unix seconds when given a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    text = _str(value)
    if text is None:
        return None
    try:
        if _US_TIME.match(text):
            parsed = datetime.strptime(text, "%m/%d/%Y %I:%M:%S %p")
        else:
            parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _severity(value: Any) -> int | None:
    """``Sev0``..``Sev4``, ``"3"`` or ``3`` as 0..4; anything else None."""
    text = _str(value)
    if text is None:
        return None
    text = text.lower().removeprefix("sev").strip()
    # Only ASCII digits: "²" is a digit to str.isdigit() but not to int().
    if text in ("0", "1", "2", "3", "4"):
        return int(text)
    return None


def _key(text: Any) -> str:
    """Normalise an enum-like string: lower case, no spaces, hyphens or underscores."""
    return re.sub(r"[\s_-]+", "", text.lower()) if isinstance(text, str) else ""


def _region(name: Any) -> str | None:
    """``"East US"`` -> ``eastus``, the ARM spelling of a region."""
    text = _str(name)
    return re.sub(r"\s+", "", text.lower()) if text else None


def _str_list(value: Any) -> list[str]:
    value = _maybe_json(value)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [s for s in (_str(v) for v in value) if s]


def _str_dict(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): s for k, v in value.items() if (s := _str(v)) is not None}


def _ci_dict(value: Any) -> dict[str, Any]:
    """Keys lower-cased and trimmed: Key Vault data comes PascalCase, camelCase, even
    ``"ObjectName "`` with a trailing space."""
    if not isinstance(value, dict):
        return {}
    return {str(k).strip().lower(): v for k, v in value.items()}


# ---------------------------------------------------------------------------------------
# Envelopes.


def decode_body(body: bytes | bytearray | str | Any, limit: int) -> tuple[Any, bytes]:
    """Decode a request body (bytes or text) or accept an already-decoded document.

    Returns the document and the bytes its raw reference is computed over.
    """
    if isinstance(body, bytes | bytearray | str):
        raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
        if len(raw) > limit:
            raise SignalError(f"body is {len(raw)} bytes, above the limit of {limit}")
        try:
            return json.loads(raw, parse_constant=_not_json_constant), raw
        except RecursionError:
            raise SignalError("body is not JSON: nested too deeply") from None
        except ValueError as exc:
            raise SignalError(f"body is not JSON: {exc}") from None
    return body, canonical_bytes(body)


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def canonical_bytes(document: Any) -> bytes:
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise SignalError(f"payload is not a JSON document: {exc}") from None
    return text.encode("utf-8", "surrogatepass")


def raw_ref(raw: bytes) -> RawRef:
    """The reference a signal keeps to its exact bytes: sha256 and the blob they are saved to."""
    digest = hashlib.sha256(raw).hexdigest()
    return RawRef(sha256=digest, blob=f"signals/{digest[:2]}/{digest}.json", size=len(raw))


def _finish(fields: dict[str, Any], config: DrConfig | None) -> Signal:
    """Resolve environment, component and region from configuration, then build the model."""
    ids = [r for r in fields.get("resource_ids", []) if r]
    if config is not None and ids:
        match = config.locate_any(ids)
        if match is not None:
            fields["environment"] = match.environment
            fields["component"] = match.component
            fields["region"] = match.region or fields.get("region")
    if fields.get("resource_id") is None and ids:
        fields["resource_id"] = ids[0]
    try:
        signal = Signal(**fields)
    except ValidationError as exc:
        # A field this module failed to normalise; the payload is still what was wrong.
        raise SignalError(f"payload has a field that cannot be used: {exc.errors()[0]}") from None
    return fit_for_storage(signal)


def _utf16_units(text: str) -> int:
    """Length in UTF-16 code units (what Table storage counts): astral characters count two."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def fit_for_storage(signal: Signal) -> Signal:
    """The signal as it can be stored: valid Unicode, identifiers of a storable length, and
    free text shortened (saying so in ``facts["shortened"]``) until the whole fits one row.

    :raises SignalError: naming the field, for text that is not valid Unicode, an identifier
        longer than any real one, or a signal that still does not fit.
    """
    try:
        # JSON may escape half of a UTF-16 pair ("\ud800"), which decodes to a lone surrogate
        # that no UTF-8 writer takes: the signal could be neither stored nor audited.
        text = signal.model_dump_json()
    except (ValueError, PydanticSerializationError):
        raise SignalError(
            "payload has text that is not valid Unicode (a lone surrogate escape such as \\ud800)"
        ) from None
    for name, limit in MAX_IDENTIFIER_CHARS.items():
        value = getattr(signal, name)
        for one in value if isinstance(value, list) else [value]:
            if one is not None and len(one) > limit:
                raise SignalError(
                    f"{_FIELD_NAMES.get(name, name)} is {len(one)} characters long; at most "
                    f"{limit} can be stored"
                )
    if _utf16_units(text) <= MAX_STORED_SIGNAL_CHARS:
        return signal
    shortened: set[str] = set()
    for limit, entries in SHORTENING_STEPS:
        signal = _shortened(signal, limit, entries, shortened)
        text = signal.model_dump_json()
        if _utf16_units(text) <= MAX_STORED_SIGNAL_CHARS:
            return signal
    raise SignalError(
        f"payload makes a signal of {_utf16_units(text)} characters even with its free text "
        f"shortened ({', '.join(sorted(shortened))}); at most {MAX_STORED_SIGNAL_CHARS} can be "
        "stored"
    )


_FIELD_NAMES = {
    "dedupe_key": "the alert or event id",
    "rule_name": "the alert rule name",
    "rule_id": "the alert rule id",
    "resource_id": "the target resource id",
    "resource_ids": "a target resource id",
}


def _shortened(signal: Signal, limit: int, entries: int, shortened: set[str]) -> Signal:
    def cut(value: Any, field: str) -> Any:
        if isinstance(value, str) and len(value) > limit:
            shortened.add(field)
            return value[:limit] + f"... [{len(value) - limit} more characters in the raw payload]"
        return value

    def few(items: list, field: str) -> list:
        if len(items) > entries:
            shortened.add(field)
        return items[:entries]

    def mapping(items: dict, field: str) -> dict:
        return {k[:200]: cut(v, field) for k, v in few(list(items.items()), field)}

    conditions = [
        c.model_copy(
            update={
                "search_query": cut(c.search_query, "conditions"),
                "dimensions": mapping(c.dimensions, "conditions"),
            }
        )
        for c in few(signal.conditions, "conditions")
    ]
    update = {
        "description": cut(signal.description, "description"),
        "resource_ids": few(signal.resource_ids, "resource_ids"),
        "conditions": conditions,
        "custom_properties": mapping(signal.custom_properties, "custom_properties"),
        "facts": mapping({k: v for k, v in signal.facts.items() if k != "shortened"}, "facts"),
    }
    update["facts"]["shortened"] = ", ".join(sorted(shortened))
    return signal.model_copy(update=update)


# ---------------------------------------------------------------------------------------
# Azure Monitor alerts.


def parse_alert(
    body: bytes | str | Any,
    *,
    config: DrConfig | None = None,
    allow_legacy: bool = True,
) -> Signal:
    """Parse one action-group payload: the common alert schema, or a recognised older one.

    ``allow_legacy=False`` refuses the older schemas, so only a ``data.essentials`` object
    makes a payload an alert.

    :raises SignalError: not JSON, not an object, or no ``data.essentials`` object.
    """
    document, raw = decode_body(body, MAX_ALERT_BYTES)
    if not isinstance(document, dict):
        raise SignalError(f"alert must be a JSON object, not {_type_name(document)}")
    ref = raw_ref(raw)
    data = document.get("data")
    essentials = _get(data, "essentials")
    if isinstance(essentials, dict):
        return _common_alert(document, data, essentials, ref, config)
    if allow_legacy:
        legacy = _legacy_alert(document, ref, config)
        if legacy is not None:
            return legacy
    if not isinstance(data, dict):
        raise SignalError("alert has no 'data' object (common alert schema: data.essentials)")
    if "essentials" not in data:
        raise SignalError("alert has no 'data.essentials' object (common alert schema)")
    raise SignalError(f"'data.essentials' must be an object, not {_type_name(essentials)}")


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


_MONITORING_SERVICE_KINDS = {
    "platform": SignalKind.METRIC,
    "loganalytics": SignalKind.LOG_SEARCH,
    "applicationinsights": SignalKind.LOG_SEARCH,
    "logalertsv2": SignalKind.LOG_SEARCH,
    "activitylogadministrative": SignalKind.ACTIVITY_ADMINISTRATIVE,
    "activitylogsecurity": SignalKind.ACTIVITY_SECURITY,
    "activitylogpolicy": SignalKind.ACTIVITY_OTHER,
    "activitylogautoscale": SignalKind.ACTIVITY_OTHER,
    "activitylogrecommendation": SignalKind.ACTIVITY_OTHER,
    "servicehealth": SignalKind.SERVICE_HEALTH,
    "resourcehealth": SignalKind.RESOURCE_HEALTH,
    "smartdetector": SignalKind.SMART_DETECTOR,
}
_SIGNAL_TYPE_KINDS = {
    "metric": SignalKind.METRIC,
    "log": SignalKind.LOG_SEARCH,
    "activitylog": SignalKind.ACTIVITY_OTHER,
}


def _alert_kind(essentials: dict, context: Any) -> SignalKind:
    kind = _MONITORING_SERVICE_KINDS.get(_key(essentials.get("monitoringService")))
    if kind is None:
        kind = _SIGNAL_TYPE_KINDS.get(_key(essentials.get("signalType")), SignalKind.ALERT_OTHER)
    if (
        kind == SignalKind.METRIC
        and _key(_get(context, "conditionType")) == "dynamicthresholdcriteria"
    ):
        return SignalKind.METRIC_DYNAMIC
    return kind


def _common_alert(
    document: dict, data: dict, essentials: dict, ref: RawRef, config: DrConfig | None
) -> Signal:
    context = _maybe_json(data.get("alertContext"))
    kind = _alert_kind(essentials, context)
    condition = (
        MonitorCondition.RESOLVED
        if _key(essentials.get("monitorCondition")) == "resolved"
        else MonitorCondition.FIRED
    )
    fired_at = _time(essentials.get("firedDateTime"))
    resolved_at = _time(essentials.get("resolvedDateTime"))
    fields: dict[str, Any] = {
        "source": SignalSource.AZURE_MONITOR,
        "kind": kind,
        "schema_id": _str(document.get("schemaId")),
        "monitoring_service": _str(essentials.get("monitoringService")),
        "signal_type": _normal_signal_type(essentials.get("signalType")),
        "rule_name": _str(essentials.get("alertRule")),
        "rule_id": _str(essentials.get("alertRuleId")),
        "description": _str(essentials.get("description")),
        "resource_ids": _str_list(essentials.get("alertTargetIDs")),
        "severity": _severity(essentials.get("severity")),
        "raw": ref,
        "custom_properties": _custom_properties(kind, data, context),
        "facts": {},
    }
    items = _str_list(essentials.get("configurationItems"))
    if items:
        fields["facts"]["configuration_items"] = ", ".join(items)
    _read_context(kind, context, fields)
    if fields["facts"].get("health_resolved"):
        condition = MonitorCondition.RESOLVED
    fields["condition"] = condition
    fields["occurred_at"] = (resolved_at or fired_at) if condition == "resolved" else fired_at
    fields["dedupe_key"] = _alert_dedupe_key(essentials, condition, ref)
    return _finish(fields, config)


def _custom_properties(kind: SignalKind, data: dict, context: Any) -> dict[str, str]:
    """The rule's custom properties: ``data.customProperties``, or for metric and log alerts
    ``alertContext.properties`` (in activity log contexts that key holds the event instead)."""
    custom = _str_dict(data.get("customProperties"))
    if custom or kind not in (SignalKind.METRIC, SignalKind.METRIC_DYNAMIC, SignalKind.LOG_SEARCH):
        return custom
    return _str_dict(_get(context, "properties"))


def _normal_signal_type(value: Any) -> str | None:
    # The service health test payload says "ActivityLog"; the others "Activity Log".
    return {"metric": "Metric", "log": "Log", "activitylog": "Activity Log"}.get(
        _key(value), _str(value)
    )


def _alert_dedupe_key(essentials: dict, condition: MonitorCondition, ref: RawRef) -> str:
    """Alert instance id plus condition: a retried delivery folds, a Resolved is new."""
    alert_id = _str(essentials.get("alertId"))
    if alert_id:
        return f"alert:{alert_id.lower()}:{condition.value}"
    origin = _str(essentials.get("originAlertId"))
    if origin:
        return f"alert-origin:{origin.lower()}:{condition.value}"
    return f"raw:{ref.sha256}"


def _read_context(kind: SignalKind, context: Any, fields: dict[str, Any]) -> None:
    if not isinstance(context, dict):
        return
    if kind in (SignalKind.METRIC, SignalKind.METRIC_DYNAMIC) or "condition" in context:
        _read_criteria(context, fields)
    if "SearchQuery" in context or "searchQuery" in context:
        _read_log_v1(context, fields)
    if kind in (
        SignalKind.ACTIVITY_ADMINISTRATIVE,
        SignalKind.ACTIVITY_SECURITY,
        SignalKind.ACTIVITY_OTHER,
        SignalKind.RESOURCE_HEALTH,
        SignalKind.SERVICE_HEALTH,
    ):
        _read_activity(context, fields["facts"])
    if kind == SignalKind.RESOURCE_HEALTH:
        _read_resource_health(context, fields["facts"])
    if kind == SignalKind.SERVICE_HEALTH:
        _read_service_health(context, fields)


def _read_criteria(context: dict, fields: dict[str, Any]) -> None:
    """Metric (static, dynamic) and Log Alerts V2 criteria: ``condition.allOf[]``."""
    facts = fields["facts"]
    condition = _maybe_json(context.get("condition"))
    facts["condition_type"] = _str(context.get("conditionType"))
    facts["window_size"] = _str(_get(condition, "windowSize"))
    for name in ("windowStartTime", "windowEndTime"):
        moment = _time(_get(condition, name))
        facts[_snake(name)] = moment.isoformat() if moment else None
    criteria = _get(condition, "allOf")
    if not isinstance(criteria, list):
        return
    for item in criteria:
        if isinstance(item, dict):
            fields.setdefault("conditions", []).append(_criterion(item))
    _flatten_first(fields)


def _criterion(item: dict) -> AlertCondition:
    threshold_text = _str(item.get("threshold"))
    dims = item.get("dimensions")
    dimensions = {}
    if isinstance(dims, list):
        for d in dims:
            name, value = _str(_get(d, "name")), _str(_get(d, "value"))
            if name is not None:
                dimensions[name] = value or ""
    return AlertCondition(
        metric_name=_str(item.get("metricName")) or _str(item.get("metricMeasureColumn")),
        metric_namespace=_str(item.get("metricNamespace")),
        operator=_str(item.get("operator")),
        threshold=_num(item.get("threshold")),
        threshold_text=threshold_text,
        metric_value=_num(item.get("metricValue")),
        time_aggregation=_str(item.get("timeAggregation")),
        dimensions=dimensions,
        search_query=_str(item.get("searchQuery")),
    )


def _flatten_first(fields: dict[str, Any]) -> None:
    """The first criterion's numbers as flat facts, for rules and cards."""
    if not fields.get("conditions"):
        return
    first: AlertCondition = fields["conditions"][0]
    facts = fields["facts"]
    facts["metric_name"] = first.metric_name
    facts["metric_value"] = first.metric_value
    facts["threshold"] = first.threshold
    facts["operator"] = first.operator
    if first.search_query:
        facts["search_query"] = first.search_query


def _read_log_v1(context: dict, fields: dict[str, Any]) -> None:
    """Log Analytics (V1) context: query, result count and threshold at the top level."""
    facts = fields["facts"]
    count = _num(context.get("ResultCount"))
    fields.setdefault("conditions", []).append(
        AlertCondition(
            search_query=_str(context.get("SearchQuery")) or _str(context.get("searchQuery")),
            operator=_str(context.get("Operator")),
            threshold=_num(context.get("Threshold")),
            threshold_text=_str(context.get("Threshold")),
            metric_value=count,
        )
    )
    facts["result_count"] = count
    facts["alert_type"] = _str(context.get("AlertType"))
    facts["included_search_results"] = _key(context.get("IncludedSearchResults")) == "true"
    _flatten_first(fields)


def _read_activity(context: dict, facts: dict[str, Any]) -> None:
    facts["operation_name"] = _str(context.get("operationName"))
    facts["status"] = _str(context.get("status"))
    facts["sub_status"] = _str(context.get("subStatus"))
    facts["caller"] = _str(context.get("caller"))
    facts["event_source"] = _str(context.get("eventSource"))
    facts["level"] = _str(context.get("level"))
    facts["correlation_id"] = _str(context.get("correlationId"))
    facts["event_data_id"] = _str(context.get("eventDataId"))
    facts["authorization_action"] = _str(_get(context, "authorization", "action"))
    claims = _maybe_json(context.get("claims"))
    if isinstance(claims, dict) and not facts["caller"]:
        facts["caller"] = _str(claims.get("name")) or _str(claims.get("appid"))


def _read_resource_health(context: dict, facts: dict[str, Any]) -> None:
    props = _maybe_json(context.get("properties"))
    current = _str(_get(props, "currentHealthStatus"))
    facts["current_health_status"] = current
    facts["previous_health_status"] = _str(_get(props, "previousHealthStatus"))
    facts["health_event_type"] = _str(_get(props, "type"))
    facts["cause"] = _str(_get(props, "cause"))
    facts["title"] = _str(_get(props, "title"))
    # Back to Available, or a health event marked Resolved, clears the condition.
    facts["health_resolved"] = _key(current) == "available" or _key(facts["status"]) == "resolved"


def _read_service_health(context: dict, fields: dict[str, Any]) -> None:
    facts = fields["facts"]
    props = _maybe_json(context.get("properties"))
    facts["incident_type"] = _str(_get(props, "incidentType"))
    facts["stage"] = _str(_get(props, "stage"))
    facts["tracking_id"] = _str(_get(props, "trackingId"))
    facts["title"] = _str(_get(props, "title"))
    facts["service"] = _str(_get(props, "service"))
    for name in ("impactStartTime", "impactMitigationTime"):
        moment = _time(_get(props, name))
        facts[_snake(name)] = moment.isoformat() if moment else None
    regions = _impacted_regions(_get(props, "impactedServices"))
    single = _region(_get(props, "region"))
    if single and single not in regions:
        regions.insert(0, single)
    facts["impacted_regions"] = ", ".join(regions) or None
    fields["region"] = regions[0] if regions else None
    facts["health_resolved"] = _key(facts["stage"]) in ("resolved", "complete")


def _impacted_regions(value: Any) -> list[str]:
    """``impactedServices`` is a JSON string in one published sample and an array in another."""
    services = _maybe_json(value)
    out: list[str] = []
    if not isinstance(services, list):
        return out
    for service in services:
        regions = _get(service, "ImpactedRegions")
        if isinstance(regions, list):
            for region in regions:
                name = _region(_get(region, "RegionName"))
                if name and name not in out:
                    out.append(name)
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _legacy_alert(document: dict, ref: RawRef, config: DrConfig | None) -> Signal | None:
    """The schemas an action group sends when the common schema is off, or None."""
    schema = _key(document.get("schemaId"))
    data = document.get("data")
    if schema == "azuremonitormetricalert" and isinstance(_get(data, "context"), dict):
        return _legacy_metric(document, data, ref, config)
    if schema == "microsoft.insights/activitylogs" and isinstance(
        _get(data, "context", "activityLog"), dict
    ):
        return _legacy_activity(document, data, ref, config)
    if "AlertRuleName" in document and ("SearchQuery" in document or "WorkspaceId" in document):
        return _legacy_log(document, ref, config)
    return None


def _legacy_condition(status: Any) -> MonitorCondition:
    return (
        MonitorCondition.RESOLVED
        if _key(status) in ("resolved", "deactivated")
        else MonitorCondition.FIRED
    )


def _legacy_metric(document: dict, data: dict, ref: RawRef, config: DrConfig | None) -> Signal:
    context = data["context"]
    condition = _legacy_condition(data.get("status"))
    resource = _str(context.get("resourceId"))
    rule_id = _str(context.get("id"))
    fields: dict[str, Any] = {
        "source": SignalSource.AZURE_MONITOR,
        "kind": SignalKind.METRIC,
        "schema_id": _str(document.get("schemaId")),
        "signal_type": "Metric",
        "rule_name": _str(context.get("name")),
        "rule_id": rule_id,
        "description": _str(context.get("description")),
        "resource_ids": [resource] if resource else [],
        "severity": _severity(context.get("severity")),
        "condition": condition,
        "occurred_at": _time(context.get("timestamp")),
        "raw": ref,
        "custom_properties": _str_dict(data.get("properties")),
        "facts": {},
    }
    if _key(context.get("conditionType")) == "dynamicthresholdcriteria":
        fields["kind"] = SignalKind.METRIC_DYNAMIC
    _read_criteria(context, fields)
    stamp = _str(context.get("timestamp"))
    if rule_id and stamp:
        key = f"alert-legacy:{rule_id.lower()}:{(resource or '').lower()}:{stamp}:{condition.value}"
    else:
        key = f"raw:{ref.sha256}"
    fields["dedupe_key"] = key
    return _finish(fields, config)


def _legacy_activity(document: dict, data: dict, ref: RawRef, config: DrConfig | None) -> Signal:
    activity = data["context"]["activityLog"]
    condition = _legacy_condition(data.get("status"))
    resource = _str(activity.get("resourceId"))
    source = _key(activity.get("eventSource"))
    kind = {
        "administrative": SignalKind.ACTIVITY_ADMINISTRATIVE,
        "security": SignalKind.ACTIVITY_SECURITY,
        "servicehealth": SignalKind.SERVICE_HEALTH,
        "resourcehealth": SignalKind.RESOURCE_HEALTH,
    }.get(source, SignalKind.ACTIVITY_OTHER)
    fields: dict[str, Any] = {
        "source": SignalSource.AZURE_MONITOR,
        "kind": kind,
        "schema_id": _str(document.get("schemaId")),
        "signal_type": "Activity Log",
        "rule_name": None,
        "description": _str(activity.get("description")),
        "resource_ids": [resource] if resource else [],
        "severity": _activity_level_severity(activity.get("level")),
        "condition": condition,
        "occurred_at": _time(activity.get("eventTimestamp")),
        "raw": ref,
        "custom_properties": _str_dict(data.get("properties")),
        "facts": {},
    }
    _read_activity(activity, fields["facts"])
    if kind == SignalKind.RESOURCE_HEALTH:
        _read_resource_health(activity, fields["facts"])
    if kind == SignalKind.SERVICE_HEALTH:
        _read_service_health(activity, fields)
    event_id = _str(activity.get("eventDataId"))
    fields["dedupe_key"] = (
        f"alert-legacy:{event_id.lower()}:{condition.value}" if event_id else f"raw:{ref.sha256}"
    )
    return _finish(fields, config)


def _activity_level_severity(level: Any) -> int | None:
    return {"critical": 0, "error": 1, "warning": 2, "informational": 3, "verbose": 4}.get(
        _key(level)
    )


def _legacy_log(document: dict, ref: RawRef, config: DrConfig | None) -> Signal:
    """Log alert V1 without the common schema: the fields sit at the top level."""
    fields: dict[str, Any] = {
        "source": SignalSource.AZURE_MONITOR,
        "kind": SignalKind.LOG_SEARCH,
        "schema_id": None,
        "signal_type": "Log",
        "rule_name": _str(document.get("AlertRuleName")),
        "description": _str(document.get("Description")),
        "resource_ids": _str_list(document.get("ResourceId")),
        "severity": _severity(document.get("Severity")),
        "occurred_at": _time(document.get("SearchIntervalEndtimeUtc")),
        "raw": ref,
        "facts": {},
    }
    _read_log_v1(document, fields)
    fields["dedupe_key"] = f"raw:{ref.sha256}"
    return _finish(fields, config)


# ---------------------------------------------------------------------------------------
# Event Grid events (Event Grid schema and CloudEvents 1.0).


def split_events(body: bytes | str | Any) -> list[Any]:
    """The events of a delivery: Event Grid sends an array, CloudEvents one object or an array.

    :raises SignalError: not JSON, or neither an object nor an array.
    """
    document, _ = decode_body(body, MAX_EVENT_BATCH_BYTES)
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        return document
    raise SignalError(f"events must be a JSON object or array, not {_type_name(document)}")


def is_subscription_validation(event: Any) -> bool:
    """The Event Grid handshake event, which the host answers and is never a signal."""
    kind = _str(_get(event, "eventType")) or _str(_get(event, "type"))
    return kind is not None and kind.lower() == VALIDATION_EVENT_TYPE.lower()


def parse_events(
    body: bytes | str | Any, *, config: DrConfig | None = None
) -> list[Signal | SignalError]:
    """Parse every event of a delivery; an unusable event yields its ``SignalError`` in place,
    so one bad event never loses the others."""
    out: list[Signal | SignalError] = []
    for index, event in enumerate(split_events(body)):
        try:
            out.append(parse_event(event, config=config))
        except SignalError as exc:
            out.append(SignalError(f"event {index}: {exc}"))
    return out


def parse_event(event: Any, *, config: DrConfig | None = None) -> Signal:
    """Parse one event in the Event Grid schema or CloudEvents 1.0.

    :raises SignalError: not an object, no event type, or a subscription validation event.
    """
    if isinstance(event, bytes | bytearray | str):
        event, _ = decode_body(event, MAX_EVENT_BATCH_BYTES)
    if not isinstance(event, dict):
        raise SignalError(f"event must be a JSON object, not {_type_name(event)}")
    cloud = "specversion" in event
    event_type = _str(event.get("type" if cloud else "eventType"))
    if event_type is None:
        event_type = _str(event.get("eventType")) or _str(event.get("type"))
    if event_type is None:
        raise SignalError("event has no 'eventType' (Event Grid schema) or 'type' (CloudEvents)")
    if event_type.lower() == VALIDATION_EVENT_TYPE.lower():
        raise SignalError("subscription validation events are answered by the host, not signals")
    ref = raw_ref(canonical_bytes(event))
    data = _maybe_json(event.get("data"))
    topic = _str(event.get("source" if cloud else "topic")) or _str(event.get("topic"))
    event_id = _str(event.get("id"))
    fields: dict[str, Any] = {
        "source": SignalSource.EVENT_GRID,
        "kind": SignalKind.EVENT_OTHER,
        "schema_id": "CloudEvents" if cloud else "EventGrid",
        "event_type": event_type,
        "rule_name": event_type,
        "description": None,
        "resource_ids": [],
        "severity": 4,
        "occurred_at": _time(event.get("time" if cloud else "eventTime")),
        "raw": ref,
        "dedupe_key": f"event:{event_id}" if event_id else f"raw:{ref.sha256}",
        "facts": {"subject": _str(event.get("subject")), "topic": topic},
    }
    family = event_type.lower()
    if family.startswith("microsoft.resourcenotifications.healthresources."):
        _health_resources(family, data, event, fields)
    elif family.startswith("microsoft.resources.resource"):
        _resource_operation(family, data, event, fields)
    elif family.startswith("microsoft.keyvault."):
        _key_vault(family, data, topic, fields)
    else:
        subject = _str(event.get("subject"))
        fields["resource_ids"] = [r for r in (subject, topic) if r and r.startswith("/")]
    return _finish(fields, config)


_AVAILABILITY_SEVERITY = {"unavailable": 1, "degraded": 2, "unknown": 3, "available": 4}


def _health_resources(family: str, data: Any, event: dict, fields: dict[str, Any]) -> None:
    props = _get(data, "resourceInfo", "properties")
    facts = fields["facts"]
    target = _str(_get(props, "targetResourceId")) or _str(event.get("subject"))
    fields["resource_ids"] = [target] if target else []
    facts["target_resource_type"] = _str(_get(props, "targetResourceType"))
    occurred = _time(_get(props, "occurredTime")) or _time(
        _get(data, "operationalInfo", "resourceEventTime")
    )
    fields["occurred_at"] = fields["occurred_at"] or occurred
    if family.endswith(".availabilitystatuschanged"):
        fields["kind"] = SignalKind.AVAILABILITY_STATUS_CHANGED
        state = _str(_get(props, "availabilityState"))
        facts["availability_state"] = state
        facts["previous_availability_state"] = _str(_get(props, "previousAvailabilityState"))
        fields["severity"] = _AVAILABILITY_SEVERITY.get(_key(state), 3)
        if _key(state) == "available":
            fields["condition"] = MonitorCondition.RESOLVED
    elif family.endswith(".resourceannotated"):
        fields["kind"] = SignalKind.RESOURCE_ANNOTATED
        fields["severity"] = 3
        for name in ("annotationName", "reason", "summary", "context", "category"):
            facts[_snake(name)] = _str(_get(props, name))


_RESOURCE_OP = re.compile(
    r"^microsoft\.resources\.resource(write|delete|action)(success|failure|cancel)$"
)


def _resource_operation(family: str, data: Any, event: dict, fields: dict[str, Any]) -> None:
    facts = fields["facts"]
    match = _RESOURCE_OP.match(family)
    verb, outcome = match.groups() if match else ("other", None)
    fields["kind"] = {
        "write": SignalKind.RESOURCE_WRITE,
        "delete": SignalKind.RESOURCE_DELETE,
        "action": SignalKind.RESOURCE_ACTION,
    }.get(verb, SignalKind.EVENT_OTHER)
    facts["outcome"] = outcome
    fields["severity"] = {"failure": 2, "cancel": 3}.get(outcome or "", 4)
    if verb == "delete" and outcome == "success":
        fields["severity"] = 3
    target = _str(_get(data, "resourceUri")) or _str(event.get("subject"))
    fields["resource_ids"] = [target] if target else []
    facts["operation_name"] = _str(_get(data, "operationName"))
    facts["status"] = _str(_get(data, "status"))
    facts["resource_provider"] = _str(_get(data, "resourceProvider"))
    facts["correlation_id"] = _str(_get(data, "correlationId"))
    facts["http_method"] = _str(_get(data, "httpRequest", "method"))
    claims = _maybe_json(_get(data, "claims"))
    facts["caller"] = _str(_get(claims, "name")) or _str(_get(claims, "appid"))


def _key_vault(family: str, data: Any, topic: str | None, fields: dict[str, Any]) -> None:
    facts = fields["facts"]
    values = _ci_dict(data)
    if family.endswith("nearexpiry"):
        fields["kind"], fields["severity"] = SignalKind.KEYVAULT_NEAR_EXPIRY, 3
    elif family.endswith("expired"):
        fields["kind"], fields["severity"] = SignalKind.KEYVAULT_EXPIRED, 1
    else:
        fields["kind"], fields["severity"] = SignalKind.KEYVAULT_OTHER, 4
    fields["resource_ids"] = [topic] if topic and topic.startswith("/") else []
    facts["vault_name"] = _str(values.get("vaultname"))
    facts["object_type"] = _str(values.get("objecttype"))
    facts["object_name"] = _str(values.get("objectname")) or facts.get("subject")
    facts["version"] = _str(values.get("version"))
    expires = _unix_time(values.get("exp"))
    facts["expires_at"] = expires.isoformat() if expires else None
    not_before = _unix_time(values.get("nbf"))
    facts["not_before"] = not_before.isoformat() if not_before else None


def _unix_time(value: Any) -> datetime | None:
    """NBF/EXP are unix seconds, typed as numbers but written as strings in the samples."""
    seconds = _num(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Declarations by an operator.


def declaration_signal(
    *,
    environment: str,
    declared_by: str,
    reason: str,
    request_id: str,
    suspected_path: str | None = None,
    occurred_at: datetime | None = None,
) -> Signal:
    """The signal behind an incident an operator declares by hand (``POST /api/incidents``)."""
    signal = Signal(
        source=SignalSource.OPERATOR,
        kind=SignalKind.DECLARATION,
        rule_name=f"declared by {declared_by}",
        description=reason,
        environment=environment,
        severity=1,
        occurred_at=occurred_at or datetime.now(UTC),
        dedupe_key=f"declaration:{request_id}",
        facts={"declared_by": declared_by, "suspected_path": suspected_path, "reason": reason},
    )
    return fit_for_storage(signal)


def describe(signals: Iterable[Signal]) -> list[str]:
    """One line per signal, for logs and the timeline."""
    return [
        f"{s.kind.value} {s.condition.value}: {s.rule_name or s.event_type or '?'} "
        f"on {s.component or s.resource_id or 'unknown resource'}"
        for s in signals
    ]
