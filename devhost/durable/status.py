"""The status object of an instance, as the management API and the in-process API give it."""

from __future__ import annotations

import json

from pydantic import BaseModel

from devhost.durable import history as h
from devhost.durable.store import InstanceRow


class InstanceStatus(BaseModel):
    """The status object of the management API."""

    name: str
    instanceId: str
    runtimeStatus: str
    input: object = None
    customStatus: object = None
    output: object = None
    createdTime: str
    lastUpdatedTime: str
    historyEvents: list[dict] | None = None


def _history_view(history: list[dict], with_output: bool) -> list[dict]:
    """History as the status API shows it: named event types, no episode markers."""
    out = []
    for ev in history:
        t = ev["EventType"]
        if t in (h.ORCHESTRATOR_STARTED, h.ORCHESTRATOR_COMPLETED):
            continue
        item = {"EventType": h.EVENT_NAMES.get(t, str(t)), "Timestamp": ev["Timestamp"]}
        for key in ("Name", "TaskScheduledId", "TimerId", "FireAt", "InstanceId", "Reason"):
            if ev.get(key) is not None:
                item["FunctionName" if key == "Name" else key] = ev[key]
        if ev["EventId"] >= 0:
            item["EventId"] = ev["EventId"]
        if with_output:
            for key in ("Result", "Input", "Details"):
                if ev.get(key) is not None:
                    item[key] = ev[key]
        out.append(item)
    return out


def status_of(row: InstanceRow, show_input=True, show_history=False, with_output=False):
    """The management API's status object for one instance."""
    return InstanceStatus(
        name=row.name,
        instanceId=row.instance_id,
        runtimeStatus=row.status,
        input=json.loads(row.input) if (show_input and row.input is not None) else None,
        customStatus=json.loads(row.custom_status) if row.custom_status else None,
        output=json.loads(row.output) if row.output is not None else None,
        createdTime=h.fmt_status_time(row.created_time),
        lastUpdatedTime=h.fmt_status_time(row.last_updated_time),
        historyEvents=_history_view(row.history, with_output) if show_history else None,
    )
